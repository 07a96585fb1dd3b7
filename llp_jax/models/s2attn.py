"""LongLoRA's shifted sparse attention, S^2-Attn (Chen et al. 2023, arXiv 2309.12307).

Tokens are cut into groups of G (default n / 4) with causal attention inside each group; half of
the heads use groups shifted by G / 2, so information crosses group boundaries. Loss on all
positions. LongLoRA implements the shift with a roll that wraps the last half-group around to the
front, which under a causal mask lets the first tokens see the last ones; here shifted groups do
not wrap (the first and last shifted groups have G / 2 tokens), which keeps the model causal.
"""

from __future__ import annotations

from llp_jax.models.attention import MaskSpec
from llp_jax.models.base import LanguageModel


class S2Attn(LanguageModel):
    @property
    def masks(self) -> tuple[MaskSpec, MaskSpec]:
        G = self.cfg.group
        return MaskSpec(causal=True, block=G), MaskSpec(causal=True, block=G, block_shift=G // 2)

    def hidden(self, x_BxTxD, rng):
        return self.run_self_attention(x_BxTxD, self.masks, rng)
