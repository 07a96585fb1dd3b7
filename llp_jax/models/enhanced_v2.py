"""Enhanced PerceiverAR V2, "split history": V1 with the history self-attention restricted to
S_h disjoint history segments of length m / S_h (bidirectional inside each in the authors' code).

Latents still see the whole history. Pairs per layer: l*n + m^2 / S_h. Code: RoPE in layer 1 only.
"""

from __future__ import annotations

from llp_jax.models.base import need
from llp_jax.models.enhanced_v1 import EnhancedV1


class EnhancedV2(EnhancedV1):
    name = "enhanced_v2"
    faithful_knobs = {}

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        cls.check_history(cfg)
        need(
            cfg.history_segments >= 1 and cfg.history_len % cfg.history_segments == 0,
            f"history_segments={cfg.history_segments} must divide the history length "
            f"seq_len - latent_len = {cfg.history_len}",
        )

    @classmethod
    def structural_sizes(cls, seq_len, sizes):
        return {
            **super().structural_sizes(seq_len, sizes),
            "history_segments": sizes.history_segments,
        }

    def history_block(self, history_len: int) -> int | None:
        return history_len // self.cfg.history_segments
