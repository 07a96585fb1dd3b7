"""Shared helpers for the model-zoo tests: jitted functional forwards and token batches."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from llp_jax import models

# The tiny test models spend far more time in XLA's CPU compiler than running; skipping LLVM's
# backend optimisations roughly halves compile time without changing IEEE float semantics.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def jit(fn, **kwargs):
    """`jax.jit` with the fast-compile options above."""
    return jax.jit(fn, compiler_options=FAST_COMPILE, **kwargs)


def jit_forward(model):
    """A jitted `tokens -> logits` for `model` (deterministic: no dropout rng)."""
    graphdef, state = nnx.split(model)
    fn = jit(lambda st, t: nnx.merge(graphdef, st)(t))
    return lambda tokens: fn(state, jnp.asarray(tokens, jnp.int32))


def jit_stream(model):
    """A jitted `(tokens, state) -> (logits, state)` for an LLP model."""
    graphdef, params = nnx.split(model)
    fn = jit(lambda st, t, s: nnx.merge(graphdef, st).stream(t, s))
    return lambda tokens, state=None: fn(params, jnp.asarray(tokens, jnp.int32), state)


def random_tokens(seed: int, shape, vocab: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=shape).astype(np.int32)


def changed(tokens: np.ndarray, where, vocab: int, seed: int = 1) -> np.ndarray:
    """A copy of 1-D `tokens` with every position in `where` replaced by a *different* token."""
    out = np.array(tokens, copy=True)
    idx = np.arange(len(out))[where]
    shift = np.random.default_rng(seed).integers(1, vocab, size=len(idx))
    out[idx] = (out[idx] + shift) % vocab
    assert np.all(out[idx] != tokens[idx])
    return out


def make_config(name: str, faithful: bool = False, **overrides) -> models.ModelConfig:
    """`models.tiny(name)`, code-faithful if asked, then `overrides` applied on top (after the
    code-faithful switch, so an override really takes effect)."""
    cfg = models.tiny(name, faithful=faithful)
    return cfg.replace(**overrides).validate() if overrides else cfg


def compiled_dot_operand_types(compiled_text: str) -> list[list[str]]:
    """For each computation of a compiled XLA program that holds a dot: its parameters' element
    types (XLA wraps each matmul in a fusion whose parameters are the dot's operands)."""
    found = []
    for computation in compiled_text.split("\n\n"):
        header = computation.strip().splitlines()[0] if computation.strip() else ""
        if " dot(" in computation and "ENTRY" not in header:
            found.append(re.findall(r"param_[\d.]+: (\w+)\[", header))
    return found
