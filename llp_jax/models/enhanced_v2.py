"""Enhanced PerceiverAR V2, "split history": V1 with the history self-attention restricted to
S_h disjoint history segments of length m / S_h (bidirectional inside each in the authors' code).

Latents still see the whole history. Pairs per layer: l*n + m^2 / S_h. Code: RoPE in layer 1 only.
"""

from __future__ import annotations

from llp_jax.models.attention import MaskSpec
from llp_jax.models.enhanced_v1 import EnhancedV1


class EnhancedV2(EnhancedV1):
    def history_mask(self, history_len: int) -> MaskSpec:
        return MaskSpec(
            causal=True,
            prefix=history_len,
            prefix_block=history_len // self.cfg.history_segments,
            prefix_causal=self.cfg.history_mask == "causal",
        )
