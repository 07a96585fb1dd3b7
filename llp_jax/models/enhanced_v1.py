"""Enhanced PerceiverAR V1, "history in every layer" (arXiv 2412.06106 Sec. 3).

All n positions are kept in every layer. History positions (< m = n - l) attend among themselves;
latents attend to history + latents, causally. Loss on the last l positions. Pairs per layer:
l*n + m^2 (causal history: about half). The authors' code leaves the history block bidirectional
(`history_mask='bidirectional'`): not a leak, since every history position precedes every scored
position, and applies RoPE in every layer.
"""

from __future__ import annotations

from llp_jax.models.latent import LatentModel
from llp_jax.models.masks import MaskSpec


class EnhancedV1(LatentModel):
    name = "enhanced_v1"
    faithful_knobs = {"rope_layers": "all"}

    def history_block(self, history_len: int) -> int | None:
        """Length of the independent history blocks (None: one block, the whole history)."""
        return None

    def attention_mask(self, seq_len: int) -> MaskSpec:
        m = seq_len - self.cfg.latent_len
        return MaskSpec(
            causal=True,
            prefix=m,
            prefix_block=self.history_block(m),
            prefix_causal=self.cfg.history_mask == "causal",
        )

    def hidden(self, x_BxTxD, rng, segments=None):
        m = x_BxTxD.shape[1] - self.cfg.latent_len
        return self.run_self_attention(x_BxTxD, rng, segments)[:, m:]
