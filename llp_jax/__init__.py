"""llp_jax: a JAX/Flax NNX zoo of efficient Perceiver-family autoregressive language models."""

__version__ = "0.1.0"
