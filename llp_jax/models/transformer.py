"""Dense causal Transformer: every position attends to every earlier one in every layer.

The quality reference and the O(n^2) cost to beat. Loss on all n positions.
"""

from __future__ import annotations

from llp_jax.models.attention import MaskSpec
from llp_jax.models.base import LanguageModel


class Transformer(LanguageModel):
    def hidden(self, x_BxTxD, rng):
        return self.run_self_attention(x_BxTxD, MaskSpec(causal=True), rng)
