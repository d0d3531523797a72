"""lowres_jax: low-resource fine-tuning in JAX."""
