"""vltbench: a benchmark harness for variable-length image tokenizers in latent diffusion."""

__version__ = "0.1.0"
