"""What the latent models (perceiver_ar, enhanced_v1..v3) share: they score only the last
l = latent_len positions of a window, so a window shorter than l is one they cannot run on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llp_jax.models.base import LanguageModel, StructuralSizes, need

if TYPE_CHECKING:
    from llp_jax.models.config import ModelConfig


class LatentModel(LanguageModel):
    """What perceiver_ar and enhanced_v1..v3 share: they score their last l = latent_len
    positions, whose queries see the m = n - l history positions before them."""

    scores_latents = True

    @classmethod
    def check_config(cls, cfg: ModelConfig) -> None:
        need(
            1 <= cfg.latent_len <= cfg.seq_len,
            f"latent_len={cfg.latent_len} must be in [1, seq_len={cfg.seq_len}]",
        )

    @classmethod
    def check_history(cls, cfg: ModelConfig) -> None:
        """For the models that need a history block (m = n - l >= 1)."""
        need(
            cfg.latent_len < cfg.seq_len,
            f"latent_len={cfg.latent_len} must be < seq_len={cfg.seq_len} (no history)",
        )

    @classmethod
    def structural_sizes(cls, seq_len: int, sizes: StructuralSizes) -> dict[str, int]:
        latent = min(sizes.latent_len, seq_len) if sizes.latent_len else seq_len // sizes.latent_div
        return {"latent_len": max(latent, 1)}

    @classmethod
    def window_problem(cls, cfg: ModelConfig, window: int) -> str | None:
        problem = super().window_problem(cfg, window)
        if problem is None and window < cfg.latent_len:
            problem = (
                f"window={window} is shorter than {cfg.name}'s latent_len={cfg.latent_len}; its "
                "windows score their last latent_len positions, so give at least that many"
            )
        return problem
