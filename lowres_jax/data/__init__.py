"""Data: offline TFDS sources, k-shot split manifests, in-jit augmentation."""
