"""Dense causal Transformer: every position attends to every earlier one in every layer.

The quality reference and the O(n^2) cost to beat. Loss on all n positions; its decoder keeps a
key/value cache of every position.
"""

from __future__ import annotations

from llp_jax.models.base import LanguageModel
from llp_jax.models.masks import MaskSpec


class Transformer(LanguageModel):
    name = "transformer"
    cache = "ring"
    faithful_knobs = {"rope_layers": "all"}  # a baseline: not part of the authors' zoo

    @classmethod
    def ring_slots(cls, cfg) -> int:
        return 0  # one slot per position: a standard KV cache

    def attention_mask(self, seq_len: int) -> MaskSpec:
        return MaskSpec(causal=True)

    def hidden(self, x_BxTxD, rng, segments=None):
        return self.run_self_attention(x_BxTxD, rng, segments)
