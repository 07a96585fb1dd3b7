"""Token sampling (temperature, top-k, top-p) and a recompute-the-window generator for any model.

`generate_recompute` is the simple, model-agnostic decoder: every new token re-runs the model on
the last n tokens (left-padded while the text is shorter than n), inside one `lax.fori_loop`, so
the whole generation is a single compiled program. It is what the authors' code does, and the
reference that cached decoders are checked against.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def sample_logits(
    logits_BxV: jax.Array,
    rng: jax.Array,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> jax.Array:
    """Draws one token per row. temperature 0 = greedy; top_k 0 / top_p 1 = no truncation."""
    if temperature == 0.0:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    logits = logits_BxV.astype(jnp.float32) / temperature
    neg_inf = jnp.finfo(jnp.float32).min
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, neg_inf, logits)
    if top_p < 1.0:
        sorted_desc = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(sorted_desc, axis=-1)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        keep = jnp.cumsum(probs, axis=-1) - probs < top_p
        cutoff = jnp.min(jnp.where(keep, sorted_desc, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, neg_inf, logits)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def generate_recompute(
    model: nnx.Module,
    prompt_BxP: jax.Array,
    num_new: int,
    rng: jax.Array,
    *,
    window: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    pad_id: int = 0,
    stop_id: int | None = None,
) -> jax.Array:
    """Generates num_new tokens after each prompt; returns [B, P + num_new].

    Args:
      model: a zoo model; its last output position always predicts the next token.
      prompt_BxP: prompt tokens (P >= 1).
      num_new: tokens to generate.
      rng: sampling key.
      window: model input length n (the model runs on the last n tokens).
      pad_id: token used to left-pad while fewer than n tokens exist.
      stop_id: once a row samples this token, it keeps emitting it.
    """
    graphdef, state = nnx.split(model)
    B, P = prompt_BxP.shape

    @jax.jit
    def run(state, prompt, rng):
        buf = jnp.full((B, window + P + num_new), pad_id, jnp.int32)
        buf = jax.lax.dynamic_update_slice(buf, prompt.astype(jnp.int32), (0, window))
        done = jnp.zeros((B,), bool)

        def body(i, carry):
            buf, done = carry
            end = window + P + i  # first empty slot
            ctx = jax.lax.dynamic_slice(buf, (0, end - window), (B, window))
            logits = nnx.merge(graphdef, state)(ctx)[:, -1]
            tok = sample_logits(
                logits,
                jax.random.fold_in(rng, i),
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
            )
            if stop_id is not None:
                tok = jnp.where(done, stop_id, tok)
                done = done | (tok == stop_id)
            buf = jax.lax.dynamic_update_slice(buf, tok[:, None], (0, end))
            return buf, done

        buf, _ = jax.lax.fori_loop(0, num_new, body, (buf, done))
        return buf[:, window:]

    return run(state, prompt_BxP, rng)
