"""Making a fine-tuned model smaller and faster: distillation, pruning, int8 quantization."""
