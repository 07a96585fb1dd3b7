"""The compiled decoding loops behind `sampling.py`: the buffer a decoder reads (offset pads,
the tokens, room for the new ones), the loop's carry (position c, buffer, decoder state, rows
that stopped), `_advance` from c to a bound (sampling token c + 1 with the key
`fold_in(rng, c + 1 - offset)`, its position in the text), and their jitted forms: `_generate`
(start, advance to the end, stop tokens filled: one call), `_start_jit` / `_advance_jit` (the
same steps in as many calls as a stream wants: one compilation, the carry donated), and
`_decode_logits` (teacher forcing through the same steps).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx


def _place(tokens_BxT: jax.Array, decoder, extra: int, pad_id: int) -> jax.Array:
    """The decoder's buffer: `offset` pads, the tokens, then `extra + tail` pads."""
    B, T = tokens_BxT.shape
    buf = jnp.full((B, decoder.offset + T + extra + decoder.tail), pad_id, jnp.int32)
    return jax.lax.dynamic_update_slice(buf, tokens_BxT.astype(jnp.int32), (0, decoder.offset))


def _start(model, prompt_BxP, *, decoder, num_new, pad_id):
    """The loop's carry before its first step: (position c, buffer, decoder state, done rows)."""
    B, P = prompt_BxP.shape
    buf = _place(prompt_BxP, decoder, num_new, pad_id)
    c0 = decoder.first_fed(P)
    state = decoder.init(model, buf, c0)
    return jnp.asarray(c0, jnp.int32), buf, state, jnp.zeros((B,), bool)


def _advance(model, carry, rng, until, *, decoder, prompt_len, sampler):
    """Steps from the carry's position to `until` (or the end, or every row stopped)."""
    off = decoder.offset
    end = carry[1].shape[1] - decoder.tail - 1  # the last token is sampled, never fed
    until = jnp.minimum(until, end)

    def cond(carry):
        c, _, _, done = carry
        return (c < until) & ~jnp.all(done)

    def body(carry):
        c, buf, state, done = carry
        logits_BxV, state = decoder.step(model, state, buf, c)
        tok = sampler(logits_BxV, jax.random.fold_in(rng, c + 1 - off))
        if sampler.stop_id is not None:
            tok = jnp.where(done, sampler.stop_id, tok)
        sampling = c + 1 >= off + prompt_len  # otherwise c + 1 is a prompt token: keep it
        tok = jnp.where(sampling, tok, _column(buf, c + 1))
        if sampler.stop_id is not None:
            done = done | (sampling & (tok == sampler.stop_id))
        buf = jax.lax.dynamic_update_slice(buf, tok[:, None], (jnp.zeros_like(c), c + 1))
        return c + 1, buf, state, done

    return jax.lax.while_loop(cond, body, carry)


def _after_stop(tokens_BxT, stop_id):
    """Every token after a row's stop token is the stop token (rows, and an early exit, leave
    pads there)."""
    after = jnp.cumsum(tokens_BxT == stop_id, axis=1) > 0
    return jnp.where(after, stop_id, tokens_BxT)


@functools.partial(jax.jit, static_argnames=("graphdef", "decoder", "num_new", "sampler", "pad_id"))
def _generate(graphdef, params, prompt_BxP, rng, *, decoder, num_new, sampler, pad_id):
    model = nnx.merge(graphdef, params)
    P = prompt_BxP.shape[1]
    carry = _start(model, prompt_BxP, decoder=decoder, num_new=num_new, pad_id=pad_id)
    end = decoder.offset + P + num_new - 1
    _, buf, _, _ = _advance(model, carry, rng, end, decoder=decoder, prompt_len=P,
                            sampler=sampler)  # fmt: skip
    out = buf[:, decoder.offset : decoder.offset + P + num_new]
    if sampler.stop_id is not None:
        out = out.at[:, P:].set(_after_stop(out[:, P:], sampler.stop_id))
    return out


@functools.partial(jax.jit, static_argnames=("graphdef", "decoder", "num_new", "pad_id"))
def _start_jit(graphdef, params, prompt_BxP, *, decoder, num_new, pad_id):
    model = nnx.merge(graphdef, params)
    return _start(model, prompt_BxP, decoder=decoder, num_new=num_new, pad_id=pad_id)


@functools.partial(jax.jit, static_argnames=("graphdef", "decoder", "prompt_len", "sampler"),
                   donate_argnames=("carry",))  # fmt: skip
def _advance_jit(graphdef, params, carry, rng, until, *, decoder, prompt_len, sampler):
    model = nnx.merge(graphdef, params)
    return _advance(model, carry, rng, until, decoder=decoder, prompt_len=prompt_len,
                    sampler=sampler)  # fmt: skip


def _column(buf_BxN: jax.Array, c) -> jax.Array:
    return jax.lax.dynamic_slice_in_dim(buf_BxN, c, 1, axis=1)[:, 0]


@functools.partial(jax.jit, static_argnames=("graphdef", "decoder", "prompt_len", "pad_id"))
def _decode_logits(graphdef, params, tokens_BxT, *, decoder, prompt_len, pad_id):
    model = nnx.merge(graphdef, params)
    T = tokens_BxT.shape[1]
    buf = _place(tokens_BxT, decoder, 0, pad_id)
    c0 = decoder.first_fed(prompt_len)
    state = decoder.init(model, buf, c0)

    def body(state, c):
        logits_BxV, state = decoder.step(model, state, buf, c)
        return state, logits_BxV

    cs = jnp.arange(c0, decoder.offset + T, dtype=jnp.int32)
    _, logits_NxBxV = jax.lax.scan(body, state, cs)
    # A decoder that feeds the prompt token by token also returns the prompt's own predictions.
    skip = decoder.offset + prompt_len - 1 - c0
    return logits_NxBxV[skip:].transpose(1, 0, 2)
