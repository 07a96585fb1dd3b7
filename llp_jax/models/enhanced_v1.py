"""Enhanced PerceiverAR V1, "history in every layer" (arXiv 2412.06106 Sec. 3).

All n positions are kept in every layer. History positions (< m = n - l) attend among themselves;
latents attend to history + latents, causally. Loss on the last l positions. Pairs per layer:
l*n + m^2 (causal history: about half). The authors' code leaves the history block bidirectional
(`history_mask='bidirectional'`): not a leak, since every history position precedes every scored
position, and applies RoPE in every layer.
"""

from __future__ import annotations

from llp_jax.models.attention import MaskSpec
from llp_jax.models.base import LanguageModel


class EnhancedV1(LanguageModel):
    def history_mask(self, history_len: int) -> MaskSpec:
        return MaskSpec(
            causal=True, prefix=history_len, prefix_causal=self.cfg.history_mask == "causal"
        )

    def hidden(self, x_BxTxD, rng):
        m = x_BxTxD.shape[1] - self.cfg.latent_len
        return self.run_self_attention(x_BxTxD, self.history_mask(m), rng)[:, m:]
