"""LLP's forward pass on one shard of a sequence split along its length (context parallelism).

LLP's only cross-segment dependency is on the previous k segments, so a long sequence can be cut
into contiguous runs of segments, one run per device. Per layer, a device needs only the keys and
values of the last k segments of its left neighbour, which `jax.lax.ppermute` passes one step to
the right (XLA's collective-permute): communication per layer is O(k * s), whatever n is, and no
device ever holds the whole sequence. Device 0 receives zeros, and gives them negative positions,
which `MaskSpec` never attends.

Everything here runs *inside* `shard_map`, manual over the sequence axis: the input is the local
run of tokens, and positions (for RoPE, the mask and the segment-0 output projection) are
absolute, computed from `jax.lax.axis_index`. The layers go through `LanguageModel.run_layers`,
so the scan over layers 2..L and its remat policy are the ones of the single-device model.
With `document_mask`, each device numbers its documents on from the end-of-document tokens of
the devices to its left (one all-gathered count per row), and the left neighbour's last k
segments of document ids come in one more neighbour exchange, before the layers.
`llp_jax/training/sequence_parallel.py` wraps this in `shard_map` for training and evaluation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from llp_jax.errors import ConfigError
from llp_jax.models.attention import attend_windows
from llp_jax.models.block import Block
from llp_jax.models.llp import LLP
from llp_jax.models.masks import Windows

if TYPE_CHECKING:
    from llp_jax.models.config import ModelConfig


def check_split(cfg: ModelConfig, seq_len: int, num_shards: int) -> int:
    """Validates splitting `seq_len` tokens over `num_shards` devices; returns the local length.

    Raises:
      ConfigError: a non-llp model, a local length that is not whole segments, or fewer local
        segments than the k previous segments a device must receive from one neighbour.
    """
    if cfg.name != "llp":
        raise ConfigError(f"sequence parallelism needs model.name='llp', not {cfg.name!r}")
    s, k = cfg.segment_len, cfg.prev_segments
    if seq_len % (num_shards * s):
        raise ConfigError(
            f"sequence length {seq_len} must split into whole segments (segment_len={s}) over "
            f"mesh.sequence={num_shards} devices"
        )
    local_segments = seq_len // (num_shards * s)
    if local_segments < k:
        raise ConfigError(
            f"each of mesh.sequence={num_shards} devices holds {local_segments} segment(s) of "
            f"sequence length {seq_len} but needs >= prev_segments={k}"
        )
    return seq_len // num_shards


def _from_left_neighbour(x: jax.Array, axis: str, num_shards: int) -> jax.Array:
    """Device i gets device i-1's `x`; device 0 gets zeros."""
    return jax.lax.ppermute(x, axis, perm=[(i, i + 1) for i in range(num_shards - 1)])


def _document_ids(model: LLP, tokens_BxT: jax.Array, axis: str, num_shards: int):
    """int32 [B, T]: the single-device `document_ids` of this device's positions (None when
    `document_mask` is off): the end-of-document tokens of the devices to the left, all-gathered
    as one count per row, offset the local running count."""
    if not model.cfg.document_mask:
        return None
    is_eod_BxT = (tokens_BxT == model.cfg.eod_id).astype(jnp.int32)
    counts_NxB = jax.lax.all_gather(is_eod_BxT.sum(axis=1), axis)
    left_B = jnp.where(jnp.arange(num_shards) < jax.lax.axis_index(axis), counts_NxB.T, 0).sum(1)
    return left_B[:, None] + jnp.cumsum(is_eod_BxT, axis=1) - is_eod_BxT


def _window_attention(model: LLP, q, k, v, k_left, v_left, offset, rng, docs=None):
    """Each local segment's queries against [its k previous segments ; itself].

    The windows are those of the extended local sequence [the k received segments ; the c local
    ones] (`Windows` over its static relative positions), so cost and memory are the
    single-device blocked path's: O(T * (k + 1) * s), never O(T^2). The mask is that layout's
    static block mask, except that device 0's received keys (absolute position < 0) are hidden.

    Args:
      q, k, v: local queries, keys, values [B, T, H, D] at positions offset..offset+T-1.
      k_left, v_left: the left neighbour's last k segments [B, k*s, H, D].
      offset: absolute position of the first local token (traced).
      docs: (local document ids [B, T], the neighbour's last k segments' [B, k*s]), or None:
        a query then sees only the keys of its own document, as in the single-device model.
    """
    cfg = model.cfg
    s, back = cfg.segment_len, cfg.prev_segments
    B, T, H, D = q.shape
    mask = model.attention_mask(T)
    w = Windows.make(mask, 0, back * s + T)  # the extended sequence, whole segments
    window = lambda left, local: w.window(jnp.concatenate([left.astype(local.dtype), local], 1))
    k_BxCxWxHxD = window(k_left, k)[:, back:]
    v_BxCxWxHxD = k_BxCxWxHxD if v is k else window(v_left, v)[:, back:]
    static_CxSxW = w.block_masks(mask)[back:]
    received_CxW = jnp.asarray(w.k_pos_NbxW[back:]) + (offset - back * s) >= 0
    allowed = jnp.asarray(static_CxSxW) & received_CxW[:, None, :]
    if docs is not None:
        local_BxT, left_BxKs = docs
        k_doc_BxCxW = window(left_BxKs[..., None, None], local_BxT[..., None, None])[
            :, back:, :, 0, 0
        ]
        q_doc_BxCxS = local_BxT.reshape(B, T // s, s)
        allowed = allowed & (q_doc_BxCxS[..., :, None] == k_doc_BxCxW[..., None, :])
    o = attend_windows(
        q.reshape(B, T // s, s, H, D), k_BxCxWxHxD, v_BxCxWxHxD, allowed,
        impl=cfg.attention_impl, dropout_rate=cfg.dropout, rng=rng,
    )  # fmt: skip
    return o.reshape(B, T, H, D)


def _layer(model: LLP, first: bool, offset, axis: str, num_shards: int, docs=None):
    """A `run_layers` layer function: the model's own block with the neighbour exchange as its
    attention (keys/values are computed locally, then the last k segments move one device right).
    Positions are absolute, so segment 0's output projection (code-faithful) is device 0's."""
    s, back = model.cfg.segment_len, model.cfg.prev_segments

    def exchange_and_attend(q, k, v, rng):
        T = k.shape[1]
        k_left = _from_left_neighbour(k[:, T - back * s :], axis, num_shards)
        # Shared K = V (the authors' code): one exchange serves both.
        v_left = k_left if v is k else _from_left_neighbour(v[:, T - back * s :], axis, num_shards)
        return _window_attention(model, q, k, v, k_left, v_left, offset, rng, docs)

    def fn(block: Block, x_BxTxD, _aux, rng):
        pos_T = offset + jnp.arange(x_BxTxD.shape[1], dtype=jnp.int32)
        y, _ = block(
            x_BxTxD,
            model.attention_mask(x_BxTxD.shape[1]),
            q_pos=pos_T,
            k_pos=pos_T,
            use_rope=model.rope_in(first),
            rng=rng,
            attention=exchange_and_attend,
        )
        return y, None

    return fn


def hidden_local(model: LLP, x_BxTxD: jax.Array, rng, *, axis: str, num_shards: int,
                 docs_BxT=None):  # fmt: skip
    """The last layer's output for this device's run of positions (call inside `shard_map`).

    Args:
      model: the LLP model (parameters replicated over `axis`).
      x_BxTxD: embeddings of the local tokens, T = n / num_shards positions.
      rng: dropout key or None; each device folds in its index so masks differ across devices.
      axis: the manual mesh axis the sequence is split over.
      num_shards: its size.
      docs_BxT: the local positions' document ids (`_document_ids`), or None.
    """
    index = jax.lax.axis_index(axis)
    T = x_BxTxD.shape[1]
    offset = index * T
    rng = None if rng is None else jax.random.fold_in(rng, index)
    docs = None
    if docs_BxT is not None:  # the same for every layer: exchanged once
        back = model.cfg.prev_segments * model.cfg.segment_len
        docs = (docs_BxT, _from_left_neighbour(docs_BxT[:, T - back :], axis, num_shards))
    first = _layer(model, True, offset, axis, num_shards, docs)
    rest = _layer(model, False, offset, axis, num_shards, docs)
    x, _ = model.run_layers(x_BxTxD, first, rest, rng)
    return x


def logits_local(model: LLP, tokens_BxT: jax.Array, rng=None, *, axis: str, num_shards: int):
    """Logits [B, T, V] for this device's run of T = n / num_shards tokens (inside `shard_map`)."""
    x = model.embed_tokens(tokens_BxT)
    docs_BxT = _document_ids(model, tokens_BxT, axis, num_shards)
    h = hidden_local(model, x, rng, axis=axis, num_shards=num_shards, docs_BxT=docs_BxT)
    return model.logits(h)
