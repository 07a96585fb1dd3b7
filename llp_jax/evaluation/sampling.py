"""Token sampling (temperature, top-k, top-p) and generation over any decoder.

`generate` runs the whole generation (prompt feeding, sampling, the stop token) as one compiled
`lax.while_loop` over a decoder's steps (see `decoders.py`: LLP's streaming segment cache, the
transformer's KV cache, PerceiverAR's latent cache, or recomputing the window; the loops are in
`decode_loop.py`); it exits early once every row has emitted the stop token. `generate_stream`
yields the same tokens in blocks as they are made. `decode_logits` feeds a known sequence through
the same steps (teacher forcing) and returns every step's logits: what the tests compare against
the parallel forward. The sampling key of token i is `fold_in(rng, i)` (i = its position in the
text), so decoders that agree on the logits agree on the samples, whatever their buffer layout.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from llp_jax.backend import memory_fix
from llp_jax.evaluation import decode_loop as loop
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
    """Draws one token per row. temperature 0 = greedy; top_k 0 / top_p 1 = no truncation.

    Any positive temperature and top_p draw: a temperature of 1e-40 (a float32 subnormal, 0 on
    a CPU that flushes them) or a top_p of 1e-40 tends to greedy, where dividing the logits
    gave inf - inf = NaN and top_p compared with a flushed 0 kept no token: either drew token 0
    (or another fixed id) at every step."""
    if temperature == 0.0:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    logits = logits_BxV.astype(jnp.float32)
    # The best logit at 0, the rest <= 0: divided by any temperature, none is NaN or +inf.
    logits = logits - jnp.max(logits, axis=-1, keepdims=True)
    logits = logits / max(temperature, float(jnp.finfo(jnp.float32).tiny))
    neg_inf = jnp.finfo(jnp.float32).min
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, neg_inf, logits)
    if top_p < 1.0:
        sorted_desc = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(sorted_desc, axis=-1)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        keep = (jnp.cumsum(probs, axis=-1) - probs < top_p).at[:, 0].set(True)
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
    run = _Run.prepare(model, prompt_BxP, num_new, rng, method=method, decoder=decoder,
                       window=window, slide=slide, pad_id=pad_id,
                       temperature=temperature, top_k=top_k, top_p=top_p, stop_id=stop_id)  # fmt: skip
    with run.memory_fix():
        out = loop._generate(run.graphdef, run.params, run.prompt_BxP, run.rng, decoder=run.decoder,
                        num_new=run.num_new, sampler=run.sampler, pad_id=run.pad_id)  # fmt: skip
        return jax.block_until_ready(out)  # a failed allocation surfaces here, not in a reader


def generate_stream(
    model: nnx.Module,
    prompt_BxP: jax.Array,
    num_new: int,
    rng: jax.Array | int = 0,
    *,
    seconds: float = 0.25,
    **settings: Any,
) -> Iterator[np.ndarray]:
    """`generate`'s new tokens as they come: yields int32 [B, k] blocks (k >= 1) whose
    concatenation is exactly `generate(...)[:, P:]` (the same sampling keys), ending early once
    every row has stopped. `settings`: `generate`'s keywords (method, decoder, temperature,
    top_k, top_p, stop_id, pad_id, window, slide). Each block is one compiled call of about
    `seconds` (the first of 8 steps: the first tokens come at once); the calls share one
    compilation.

    Why: a long sample is one XLA call; streamed, a reader sees it grow, and an interruption
    keeps what was made.
    """
    unknown = sorted(set(settings) - set(inspect.signature(generate).parameters))
    if unknown:
        raise TypeError(f"generate_stream() got unexpected keyword arguments {unknown}")
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.number))
            or not 0 <= seconds < float("inf")):  # fmt: skip
        raise EvaluationError(f"seconds={seconds!r} must be a number >= 0 (about each "
                              "block's time)")  # fmt: skip
    run = _Run.prepare(model, prompt_BxP, num_new, rng, **settings)
    return _blocks(run, seconds)  # arguments checked now, not at the first block


def _blocks(run: _Run, seconds: float) -> Iterator[np.ndarray]:
    P, off = run.prompt_BxP.shape[1], run.decoder.offset
    static = dict(decoder=run.decoder, prompt_len=P, sampler=run.sampler)
    with run.memory_fix():
        carry = loop._start_jit(run.graphdef, run.params, run.prompt_BxP, decoder=run.decoder,
                           num_new=run.num_new, pad_id=run.pad_id)  # fmt: skip
        c, emitted, steps = _position(carry), 0, 8
        stopped_Bx1 = np.zeros((run.prompt_BxP.shape[0], 1), bool)
        while emitted < run.num_new:
            began = time.perf_counter()
            carry = loop._advance_jit(run.graphdef, run.params, carry, run.rng,
                                 jnp.asarray(c + steps, jnp.int32), **static)  # fmt: skip
            c = _position(carry)
            ready = max(min(c + 1 - off - P, run.num_new), emitted)  # new tokens in the buffer
            if bool(jnp.all(carry[3])):  # every row stopped: the rest is stop tokens
                ready = run.num_new
            # Sliced on the host: a device slice compiles anew for each block's bounds.
            block = np.asarray(carry[1])[:, off + P + emitted : off + P + ready].copy()
            if run.sampler.stop_id is not None:  # as _after_stop, across blocks
                stopped_BxK = stopped_Bx1 | (np.cumsum(block == run.sampler.stop_id, 1) > 0)
                block = np.where(stopped_BxK, run.sampler.stop_id, block).astype(np.int32)
                stopped_Bx1 = stopped_BxK[:, -1:] if block.shape[1] else stopped_Bx1
            if block.shape[1]:
                yield block
            emitted = ready
            took = time.perf_counter() - began
            steps = int(min(max(steps * seconds / max(took, 1e-6), 1), 4 * steps, 65536))


def _position(carry) -> int:
    """The carry's position, once the call is done. Waits for the whole carry: a call that ran
    out of memory raises here, while `int(carry[0])` alone waits for ever (jax 0.10)."""
    return int(jax.block_until_ready(carry)[0])


@dataclasses.dataclass(frozen=True)
class _Run:
    """A generation's checked arguments (what `generate` and `generate_stream` share)."""

    graphdef: Any
    params: Any
    prompt_BxP: jax.Array
    rng: jax.Array
    decoder: dec.Decoder
    num_new: int
    sampler: Sampler
    pad_id: int

    @classmethod
    def prepare(cls, model, prompt_BxP, num_new, rng, *, method="auto", decoder=None,
                window=None, slide=None, pad_id=0, temperature=1.0, top_k=0, top_p=1.0,
                stop_id=None):  # fmt: skip
        model = as_model(model)
        check_sampling(num_new=num_new, temperature=temperature, top_k=top_k, top_p=top_p,
                       stop_id=stop_id, vocab_size=model.cfg.vocab_size)  # fmt: skip
        sampler = Sampler(float(temperature), int(top_k), float(top_p), stop_id)
        prompt_BxP = as_tokens(prompt_BxP, model.cfg.vocab_size, what="prompt")
        model = model.for_inference()
        if decoder is None:
            decoder = dec.make_decoder(model.cfg, method, window=window, slide=slide)
        rng = as_rng(rng)
        if prompt_BxP.shape[1] < 1:
            raise EvaluationError(
                f"prompt must be [batch, length >= 1], got shape {prompt_BxP.shape}"
            )
        graphdef, params = nnx.split(model)
        return cls(graphdef, params, jnp.asarray(prompt_BxP, jnp.int32), rng, decoder,
                   int(num_new), sampler, int(pad_id))  # fmt: skip

    def memory_fix(self):
        rows = self.prompt_BxP.shape[0]
        return memory_fix(
            f"generate fewer rows at once (the prompt has {rows}; sample: --num_samples)"
        )


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
    return loop._decode_logits(
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
