"""LongLoRA's shifted sparse attention, S^2-Attn (Chen et al. 2023, arXiv 2309.12307).

Tokens are cut into groups of G (default n / 4) with causal attention inside each group; half of
the heads use groups shifted by G / 2, so information crosses group boundaries. Loss on all
positions. LongLoRA implements the shift with a roll that wraps the last half-group around to the
front, which under a causal mask lets the first tokens see the last ones; here shifted groups do
not wrap (the first and last shifted groups have G / 2 tokens), which keeps the model causal.
LongLoRA evaluates and generates with full causal attention (the same parameters): so does the
`for_inference()` copy of this model, unless `s2attn_inference='shifted'`.
"""

from __future__ import annotations

from llp_jax.models.base import LanguageModel, need
from llp_jax.models.masks import MaskSpec


class S2Attn(LanguageModel):
    name = "s2attn"
    cache = "ring"
    faithful_knobs = {"rope_layers": "all"}  # a baseline: not part of the authors' zoo
    inference_alternatives = {"shifted at evaluation": {"s2attn_inference": "shifted"}}

    @classmethod
    def check_config(cls, cfg) -> None:
        need(
            cfg.group >= 2 and cfg.seq_len % cfg.group == 0,
            f"group_len={cfg.group} must be >= 2 and divide seq_len={cfg.seq_len}",
        )
        need(cfg.num_heads % 2 == 0, f"num_heads={cfg.num_heads} must be even for s2attn")

    @classmethod
    def structural_sizes(cls, seq_len, sizes):
        return {"group_len": sizes.group_len}

    @classmethod
    def ring_slots(cls, cfg) -> int:
        # Decoding is inference: dense attention keeps every position; shifted groups let a
        # position see at most the G - 1 before it.
        return 0 if cfg.s2attn_inference == "dense" else cfg.group

    def attention_mask(self, seq_len: int) -> MaskSpec | tuple[MaskSpec, MaskSpec]:
        if self.inference and self.cfg.s2attn_inference == "dense":
            return MaskSpec(causal=True)
        G = self.cfg.group
        return MaskSpec(causal=True, block=G), MaskSpec(causal=True, block=G, block_shift=G // 2)

    def hidden(self, x_BxTxD, rng, segments=None):
        return self.run_self_attention(x_BxTxD, rng, segments)
