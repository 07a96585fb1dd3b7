"""Dense causal Transformer: every position attends to every earlier one in every layer.

The quality reference and the O(n^2) cost to beat. Loss on all n positions.
"""

from __future__ import annotations

from llp_jax.models.attention import MaskSpec
from llp_jax.models.base import LanguageModel, positions


class Transformer(LanguageModel):
    def hidden(self, x_BxTxD, rng):
        pos = positions(0, x_BxTxD.shape[1])
        mask = MaskSpec(causal=True)

        def layer(first):
            def fn(block, x, _, r):
                return block(x, mask, q_pos=pos, k_pos=pos, use_rope=self.rope_in(first), rng=r)

            return fn

        x, _ = self.run_layers(x_BxTxD, layer(True), layer(False), rng)
        return x
