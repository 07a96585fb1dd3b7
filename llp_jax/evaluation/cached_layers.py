"""One token through a model's layers against cached keys and values (the cached decoders' step).

`decoders.RingCache` and `decoders.LatentCache` keep, per layer, keys and values in fixed slots
(layer 1 as [B, W, H, D], layers 2..L stacked as [L-1, B, W, H, D], like the model's scanned
blocks); these helpers allocate them, read the token to feed, and run one position through every
layer with the unchanged `Block.__call__` (its `kv_prefix`), writing the position's own keys and
values into its slot.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def write_slot(cache: jax.Array, new: jax.Array, slot, axis: int) -> jax.Array:
    """Writes one position's keys or values (length 1 along `axis`) into slot `slot`."""
    return jax.lax.dynamic_update_slice_in_dim(cache, new.astype(cache.dtype), slot, axis=axis)


def token_at(buf_BxN: jax.Array, c) -> jax.Array:
    return jax.lax.dynamic_slice_in_dim(buf_BxN, c, 1, axis=1)  # [B, 1]


def empty_caches(model, batch: int, slots: int, dtype):
    """Zero (k, v) for layer 1 [B, W, H, D] and layers 2..L stacked [L-1, B, W, H, D]."""
    cfg = model.cfg
    shape = (batch, slots, cfg.num_heads, cfg.head_dim)
    first = (jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))
    rest = cfg.num_layers - 1
    stacked = jnp.zeros((rest, *shape), dtype) if rest else None
    return first, (stacked, stacked) if rest else None


def cached_layers(model, x_Bx1xD, masks, q_pos, k_pos, slot, caches, example=None):
    """Runs one token through every layer against cached keys/values and writes its own.

    `masks`, `k_pos` and `slot` are pairs: (layer 1, layers 2..L). The new keys/values leave the
    layer scan as small [.., 1, H, D] outputs and are written into the carried caches afterwards,
    so a step copies no cache (writing inside the scan would restack every layer's cache).
    Returns (h_Bx1xD, caches).
    """

    def layer(first: bool):
        def fn(block, x, kv, _):
            i = 0 if first else 1
            return block(
                x,
                masks[i],
                q_pos=q_pos,
                k_pos=k_pos[i],
                use_rope=model.rope_in(first),
                kv_prefix=kv,
                example=example,
            )

        return fn

    h, (new_first, new_rest) = model.run_layers(
        x_Bx1xD, layer(True), layer(False), None, layer_aux=caches
    )
    first = tuple(write_slot(c, n, slot[0], axis=1) for c, n in zip(caches[0], new_first))
    if caches[1] is None:
        return h, (first, None)
    rest = tuple(write_slot(c, n, slot[1], axis=2) for c, n in zip(caches[1], new_rest))
    return h, (first, rest)
