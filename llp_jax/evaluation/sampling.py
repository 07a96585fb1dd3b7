"""Token sampling (temperature, top-k, top-p) and the jitted generation loop over any decoder.

`generate` runs the whole generation (prompt feeding, sampling, the stop token) as one compiled
`lax.while_loop` over a decoder's steps (see `decoders.py`: LLP's streaming segment cache, the
transformer's KV cache, PerceiverAR's latent cache, or recomputing the window); it exits early once
every row has emitted the stop token. `decode_logits` feeds a known sequence through the same steps
(teacher forcing) and returns every step's logits: what the tests compare against the parallel
forward. The sampling key of token i is `fold_in(rng, i)` (i = its position in the text), so
decoders that agree on the logits agree on the samples, whatever their buffer layout.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from llp_jax.backend import memory_fix
from llp_jax.evaluation import decoders as dec
from llp_jax.evaluation.errors import EvaluationError
from llp_jax.evaluation.sample_settings import check_sampling
from llp_jax.models.inputs import as_model, as_rng, as_tokens


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


@dataclasses.dataclass(frozen=True)
class Sampler:
    """How a token is drawn from the logits (hashable: a static argument of the jitted loop).

    Attributes:
      temperature: 0 = greedy (argmax).
      top_k: keep the k most likely tokens (0 = all).
      top_p: keep the smallest set of tokens whose probability reaches p (1 = all).
      stop_id: once a row samples this token it is finished and keeps emitting it (None = never).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    stop_id: int | None = None

    def __call__(self, logits_BxV: jax.Array, rng: jax.Array) -> jax.Array:
        return sample_logits(
            logits_BxV, rng, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p
        )


def _place(tokens_BxT: jax.Array, decoder, extra: int, pad_id: int) -> jax.Array:
    """The decoder's buffer: `offset` pads, the tokens, then `extra + tail` pads."""
    B, T = tokens_BxT.shape
    buf = jnp.full((B, decoder.offset + T + extra + decoder.tail), pad_id, jnp.int32)
    return jax.lax.dynamic_update_slice(buf, tokens_BxT.astype(jnp.int32), (0, decoder.offset))


@functools.partial(jax.jit, static_argnames=("graphdef", "decoder", "num_new", "sampler", "pad_id"))
def _generate(graphdef, params, prompt_BxP, rng, *, decoder, num_new, sampler, pad_id):
    model = nnx.merge(graphdef, params)
    B, P = prompt_BxP.shape
    off = decoder.offset
    buf = _place(prompt_BxP, decoder, num_new, pad_id)
    end = off + P + num_new - 1  # the last token is sampled, never fed
    c0 = decoder.first_fed(P)
    state = decoder.init(model, buf, c0)

    def cond(carry):
        c, _, _, done = carry
        return (c < end) & ~jnp.all(done)

    def body(carry):
        c, buf, state, done = carry
        logits_BxV, state = decoder.step(model, state, buf, c)
        tok = sampler(logits_BxV, jax.random.fold_in(rng, c + 1 - off))
        if sampler.stop_id is not None:
            tok = jnp.where(done, sampler.stop_id, tok)
        sampling = c + 1 >= off + P  # otherwise c + 1 is a prompt token: keep it
        tok = jnp.where(sampling, tok, _column(buf, c + 1))
        if sampler.stop_id is not None:
            done = done | (sampling & (tok == sampler.stop_id))
        buf = jax.lax.dynamic_update_slice(buf, tok[:, None], (0, c + 1))
        return c + 1, buf, state, done

    carry = (jnp.asarray(c0, jnp.int32), buf, state, jnp.zeros((B,), bool))
    _, buf, _, _ = jax.lax.while_loop(cond, body, carry)
    out = buf[:, off : off + P + num_new]
    if sampler.stop_id is not None:  # rows (and an early exit) leave pads after the stop token
        gen = out[:, P:]
        after = jnp.cumsum(gen == sampler.stop_id, axis=1) > 0
        out = out.at[:, P:].set(jnp.where(after, sampler.stop_id, gen))
    return out


def _column(buf_BxN: jax.Array, c) -> jax.Array:
    return jax.lax.dynamic_slice_in_dim(buf_BxN, c, 1, axis=1)[:, 0]


def generate(
    model: nnx.Module,
    prompt_BxP: jax.Array,
    num_new: int,
    rng: jax.Array | int = 0,
    *,
    method: str = "auto",
    decoder: dec.Decoder | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop_id: int | None = None,
    pad_id: int = 0,
    window: int | None = None,
    slide: int | None = None,
) -> jax.Array:
    """Generates num_new tokens after each prompt (all rows share its length P); [B, P + num_new].

    Args:
      model: a zoo model, or `load_model`'s result.
      prompt_BxP: prompt tokens, int [B, P >= 1] (an array or a list of equal-length rows).
      num_new: tokens to generate.
      rng: a PRNG key or an integer seed.
      method: 'auto' (the model's cached decoder if it has one), 'cached' or 'recompute'.
      decoder: an explicit decoder (overrides method / window / slide).
      temperature, top_k, top_p: see `sample_logits`.
      stop_id: a row that samples it stops; its remaining tokens are stop_id; the loop ends early
        when all rows have stopped.
      pad_id: fills padding (left padding of windowed decoders).
      window: recompute / PerceiverAR window (default model.cfg.seq_len).
      slide: PerceiverAR window advance when full (default latent_len).
    """
    model = as_model(model)
    check_sampling(num_new=num_new, temperature=temperature, top_k=top_k, top_p=top_p,
                   stop_id=stop_id, vocab_size=model.cfg.vocab_size)  # fmt: skip
    prompt_BxP = as_tokens(prompt_BxP, model.cfg.vocab_size, what="prompt")
    model = model.for_inference()
    if decoder is None:
        decoder = dec.make_decoder(model.cfg, method, window=window, slide=slide)
    rng = as_rng(rng)
    if prompt_BxP.shape[1] < 1:
        raise EvaluationError(f"prompt must be [batch, length >= 1], got shape {prompt_BxP.shape}")
    graphdef, params = nnx.split(model)
    sampler = Sampler(float(temperature), int(top_k), float(top_p), stop_id)
    rows = prompt_BxP.shape[0]
    with memory_fix(f"generate fewer rows at once (the prompt has {rows}; sample: --num_samples)"):
        out = _generate(
            graphdef,
            params,
            jnp.asarray(prompt_BxP, jnp.int32),
            rng,
            decoder=decoder,
            num_new=int(num_new),
            sampler=sampler,
            pad_id=int(pad_id),
        )
        return jax.block_until_ready(out)  # a failed allocation surfaces here, not in a reader


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


def decode_logits(
    model: nnx.Module,
    tokens_BxT: jax.Array,
    *,
    prompt_len: int = 1,
    method: str = "auto",
    decoder: dec.Decoder | None = None,
    pad_id: int = 0,
    window: int | None = None,
    slide: int | None = None,
) -> jax.Array:
    """Teacher-forced decoding: the logits after feeding each of tokens[prompt_len - 1:].

    Returns [B, T - prompt_len + 1, V]; row j holds the logits that predict token prompt_len + j,
    computed exactly as `generate` would (same decoder, same steps).
    """
    model = as_model(model)
    tokens_BxT = as_tokens(tokens_BxT, model.cfg.vocab_size)
    model = model.for_inference()
    if decoder is None:
        decoder = dec.make_decoder(model.cfg, method, window=window, slide=slide)
    graphdef, params = nnx.split(model)
    return _decode_logits(
        graphdef,
        params,
        jnp.asarray(tokens_BxT, jnp.int32),
        decoder=decoder,
        prompt_len=int(prompt_len),
        pad_id=int(pad_id),
    )


def generate_recompute(
    model: nnx.Module,
    prompt_BxP: jax.Array,
    num_new: int,
    rng: jax.Array | int,
    *,
    window: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    pad_id: int = 0,
    stop_id: int | None = None,
    align: str = "auto",
) -> jax.Array:
    """Generates by re-running the model on the last `window` tokens for every new token.

    The model-agnostic decoder, what the authors' code does, and the reference the cached decoders
    are checked against. `align` is the recompute alignment of `decoders.make_decoder`.
    """
    model = as_model(model)
    decoder = dec.make_decoder(model.cfg, "recompute", window=window, align=align)
    return generate(
        model,
        prompt_BxP,
        num_new,
        rng,
        decoder=decoder,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        pad_id=pad_id,
        stop_id=stop_id,
    )
