"""Decoders: how a model turns "feed token c" into the logits of token c + 1, cached or not.

Generation and teacher-forced decoding (`sampling.generate`, `sampling.decode_logits`) work on one
token buffer `buf_BxN`; a decoder says where the prompt sits in it (`offset`: pads before it), which
token is fed first, what state it carries, and how one step runs. Decoders are frozen dataclasses,
so they are static arguments of the jitted loops (one compile per scheme and shape).

Three schemes, all built from the models' public pieces (`embed_tokens`, `first_block`, the stacked
`blocks` via `run_layers`, `logits`) and the unchanged `Block.__call__` with a `kv_prefix`:

  * `RingCache` (models with `cache = 'ring'`: llp, transformer, s2attn): per layer a fixed number of key/value slots plus one
    array of their absolute positions (-1 = empty). Position p lives in slot p % slots; the
    attention mask is the model's own position-based `MaskSpec`, so a slot whose position the mask
    rejects (a segment too far back) is simply never attended. For LLP, slots = (k + 1) * s: the
    previous k segments and the current partial one; writing position p overwrites p - (k+1)s,
    which is exactly "shift current -> previous at each segment boundary" without moving memory.
    Memory per step is independent of how many tokens came before, and decoding never stops at n.
    The transformer keeps every position (slots = buffer length: a standard KV cache, positions
    past the training length use RoPE beyond n); S^2-Attn needs only the last G positions.
    Logits equal the parallel forward's on the same prefix (the models are causal and absolute).
  * `LatentCache` (`cache = 'latent'`: perceiver_ar, as in the Perceiver AR paper): a window of n tokens whose latent
    block (the last l positions) is filled one token at a time: layer 1's keys/values of the whole
    window and the upper layers' keys/values of the filled latents are cached. When the window is
    full it slides by `slide` tokens and is refilled with one full forward (which also recomputes
    the latents that stay). Logits equal the full forward of the current window; slide = l costs
    one window forward per l tokens, slide = 1 is exactly the recompute decoder.
  * `Recompute` (any model; the only one for enhanced_v1..v3, whose bidirectional history in the
    code-faithful preset changes with every new token): re-runs the model on the last n tokens for
    every token. 'right' alignment (causal all-position models) runs on the unpadded prefix while
    it is shorter than n, as the authors' code does; 'left' left-pads to n (latent models, whose
    scored block must end at the newest token).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from llp_jax.evaluation import cached_layers as cached
from llp_jax.evaluation.errors import EvaluationError, check_counts
from llp_jax.models import MaskSpec, ModelConfig
from llp_jax.models.masks import ExampleMask


@dataclasses.dataclass(frozen=True)
class RingCache:
    """Key/value ring of `slots` positions per layer (0 = one slot per buffer position).

    Attributes:
      slots: cache size W; LLP (k + 1) * s, S^2-Attn G, transformer 0 (= everything).
      prefill: fill the caches with the prompt's keys/values in one parallel forward pass (the
        ring models' `self_attention_with_kv`), then feed only its last token; False feeds the
        prompt token by token (the same caches to float rounding, P decode steps instead of one
        forward: time to first token 3.0 s -> 0.1 s for a 1024-token LLP prompt).
    """

    slots: int = 0
    prefill: bool = True

    offset = 0  # buffer index of the first prompt token
    tail = 0  # buffer slots needed after the last token

    def first_fed(self, prompt_len: int) -> int:
        # Prefilled: positions 0..P-2 are cached by `init`, the prompt's last token is fed first.
        return prompt_len - 1 if self.prefill else 0

    def init(self, model, buf_BxN: jax.Array, c0):
        B, W = buf_BxN.shape[0], self.slots or buf_BxN.shape[1]
        caches = cached.empty_caches(model, B, W, model.dtype)
        # Per slot its position (-1 = empty) and its document; and the next token's document.
        slot_pos_W = jnp.full((W,), -1, jnp.int32)
        docs = (jnp.zeros((B, W), jnp.int32), jnp.zeros((B,), jnp.int32))
        if not self.prefill or int(c0) == 0:
            return caches, slot_pos_W, docs
        return self._prefill(model, buf_BxN[:, : int(c0)], caches, slot_pos_W, docs)

    def _prefill(self, model, tokens_BxP, caches, slot_pos_W, docs):
        """The caches after positions 0..P-1: one forward, the last min(P, W) positions kept."""
        P, W = tokens_BxP.shape[1], slot_pos_W.shape[0]
        segments = model.document_ids(tokens_BxP)
        _, kv = model.self_attention_with_kv(model.embed_tokens(tokens_BxP), None, segments)
        keep = np.arange(max(P - W, 0), P)  # static: the positions the ring still holds
        slots = keep % W

        def put(cache, new, axis):
            index = (slice(None),) * axis + (slots,)
            return cache.at[index].set(new[(slice(None),) * axis + (keep,)].astype(cache.dtype))

        first = tuple(put(c, n, 1) for c, n in zip(caches[0], kv[0]))
        rest = None if caches[1] is None else tuple(
            put(c, n, 2) for c, n in zip(caches[1], kv[1])
        )  # fmt: skip
        slot_doc_BxW, doc_B = docs
        if segments is not None:  # the next token's document follows the prompt's last
            slot_doc_BxW = slot_doc_BxW.at[:, slots].set(segments[:, keep])
            last = tokens_BxP[:, -1]
            doc_B = segments[:, -1] + (last == model.cfg.eod_id).astype(jnp.int32)
        slot_pos_W = slot_pos_W.at[slots].set(jnp.asarray(keep, jnp.int32))
        return (first, rest), slot_pos_W, (slot_doc_BxW, doc_B)

    def step(self, model, state, buf_BxN: jax.Array, c):
        caches, slot_pos_W, (slot_doc_BxW, doc_B) = state
        W = slot_pos_W.shape[0]
        p = jnp.asarray(c, jnp.int32)
        slot = p % W
        # The slot about to be overwritten holds p - W: never visible, but say so explicitly.
        visible_W = jnp.where(jnp.arange(W) == slot, -1, slot_pos_W)
        q_pos = p[None]
        k_pos = jnp.concatenate([visible_W, q_pos])
        masks = model.attention_mask(model.cfg.seq_len)
        token_Bx1 = cached.token_at(buf_BxN, c)
        example = None
        if model.cfg.document_mask:  # the fed token belongs to the current document
            example = ExampleMask(None, doc_B[:, None],
                                  jnp.concatenate([slot_doc_BxW, doc_B[:, None]], axis=1))  # fmt: skip
            slot_doc_BxW = slot_doc_BxW.at[:, slot].set(doc_B)
            doc_B = doc_B + (token_Bx1[:, 0] == model.cfg.eod_id).astype(jnp.int32)
        h, caches = cached.cached_layers(
            model,
            model.embed_tokens(token_Bx1),
            (masks, masks),
            q_pos,
            (k_pos, k_pos),
            (slot, slot),
            caches,
            example,
        )
        docs = (slot_doc_BxW, doc_B)
        return model.logits(h)[:, 0], (caches, slot_pos_W.at[slot].set(p), docs)


@dataclasses.dataclass(frozen=True)
class LatentCache:
    """PerceiverAR decoding with a cached window whose latent block fills token by token.

    The window always starts so that the first fed token is its last position; whenever the window
    is full it advances by `slide` (1 <= slide <= l) and is refilled by one forward pass.

    Attributes:
      window: n, the model's input length.
      latent_len: l.
      slide: tokens the window advances when full (l: one refill per l tokens).
    """

    window: int
    latent_len: int
    slide: int

    @property
    def offset(self) -> int:
        return self.window  # n pads before the prompt, like the recompute decoder's left padding

    @property
    def tail(self) -> int:
        return self.window  # a refilled window reaches up to l - 1 tokens past the fed one

    def first_fed(self, prompt_len: int) -> int:
        return self.offset + prompt_len - 1

    def refill(self, model, buf_BxN: jax.Array, start):
        """Caches of every layer for the window buf[start : start + n] (one full forward)."""
        x = model.embed_tokens(jax.lax.dynamic_slice_in_dim(buf_BxN, start, self.window, axis=1))
        return model.run_with_kv(x, None)[1]

    def init(self, model, buf_BxN: jax.Array, c0):
        start = jnp.asarray(c0 - (self.window - 1), jnp.int32)
        return start, self.refill(model, buf_BxN, start)

    def step(self, model, state, buf_BxN: jax.Array, c):
        start, caches = state
        n, l = self.window, self.latent_len
        m = n - l
        full = c - start >= n
        start = jnp.where(full, start + self.slide, start)
        caches = jax.lax.cond(full, lambda: self.refill(model, buf_BxN, start), lambda: caches)
        r = jnp.asarray(c - start, jnp.int32)  # window position of the fed token, in [m, n)
        q_pos = r[None]
        all_pos, latent_pos = jnp.arange(n, dtype=jnp.int32), jnp.arange(m, n, dtype=jnp.int32)
        k_pos = (
            jnp.concatenate([jnp.where(all_pos < r, all_pos, -1), q_pos]),
            jnp.concatenate([jnp.where(latent_pos < r, latent_pos, -1), q_pos]),
        )
        mask = MaskSpec(causal=True)
        h, caches = cached.cached_layers(
            model,
            model.embed_tokens(cached.token_at(buf_BxN, c)),
            (mask, mask),
            q_pos,
            k_pos,
            (r, r - m),
            caches,
        )
        return model.logits(h)[:, 0], (start, caches)


@dataclasses.dataclass(frozen=True)
class Recompute:
    """Re-runs the model on the last `window` tokens for every token (what the authors' code does).

    Attributes:
      window: n.
      align: 'right' = the unpadded prefix while shorter than n (models scoring every position);
        'left' = left-padded to n, the newest token always last (any model).
    """

    window: int
    align: str = "left"

    @property
    def offset(self) -> int:
        return self.window if self.align == "left" else 0

    @property
    def tail(self) -> int:
        return self.window if self.align == "right" else 0  # the first windows reach past c

    def first_fed(self, prompt_len: int) -> int:
        return self.offset + prompt_len - 1

    def init(self, model, buf_BxN: jax.Array, c0):
        del model, buf_BxN, c0
        return ()

    def step(self, model, state, buf_BxN: jax.Array, c):
        n = self.window
        start = jnp.maximum(c - (n - 1), 0)
        ctx_BxN = jax.lax.dynamic_slice_in_dim(buf_BxN, start, n, axis=1)
        h_BxPxD = model.hidden(model.embed_tokens(ctx_BxN), None, model.document_ids(ctx_BxN))
        # Hidden states cover positions loss_start(n)..n-1; the fed token is at c - start.
        index = c - start - model.loss_start(n)
        h_Bx1xD = jax.lax.dynamic_slice_in_dim(h_BxPxD, index, 1, axis=1)
        return model.logits(h_Bx1xD)[:, 0], state


Decoder = RingCache | LatentCache | Recompute


def make_decoder(
    cfg: ModelConfig,
    method: str = "auto",
    *,
    window: int | None = None,
    slide: int | None = None,
    align: str = "auto",
) -> Decoder:
    """The decoder for a model config.

    Args:
      cfg: the model's config.
      method: 'auto' (cached where the model has a cache, else recompute), 'cached', 'recompute'.
      window: recompute / PerceiverAR window (default cfg.seq_len).
      slide: PerceiverAR window advance when full (default latent_len).
      align: recompute alignment: 'auto' (right for models that score every position), 'left',
        'right'.

    Raises:
      ValueError: an impossible combination (one line).
    """
    check_counts((("window", window, 1), ("slide", slide, 1)), default=" (None: the default)")
    n = window or cfg.seq_len
    problem = cfg.model_class.window_problem(cfg, n)
    if problem:
        raise EvaluationError(problem)
    cache = cfg.model_class.cache
    if method == "auto":
        method = "cached" if cache else "recompute"
    if method == "recompute":
        scores_all = not cfg.scores_latents
        if align == "auto":
            align = "right" if scores_all else "left"
        if align not in ("left", "right"):
            raise EvaluationError(f"align={align!r} must be 'auto', 'left' or 'right'")
        if align == "right" and not scores_all:
            raise EvaluationError(
                f"align='right' needs a model scoring every position, not {cfg.name}"
            )
        return Recompute(window=n, align=align)
    if method != "cached":
        raise EvaluationError(f"method={method!r} must be 'auto', 'cached' or 'recompute'")
    if cache == "ring":
        return RingCache(slots=cfg.model_class.ring_slots(cfg))
    if cache == "latent" and cfg.document_mask:  # its refill has no document bookkeeping
        return Recompute(window=n, align="left")
    if cache == "latent":
        l = cfg.latent_len
        slide = l if slide is None else slide
        if not 1 <= slide <= l:
            raise EvaluationError(f"slide={slide} must be in [1, latent_len={l}]")
        return LatentCache(window=n, latent_len=l, slide=slide)
    raise EvaluationError(
        f"{cfg.name} has no cached decoder (its history block is recomputed for every new token); "
        "use method='recompute'"
    )
