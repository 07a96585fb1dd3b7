"""Which activations a layer keeps for the backward pass (`ModelConfig.remat`): the named
`jax.checkpoint` policies, and 'auto' resolved for the backend the program runs on."""

from __future__ import annotations

import jax

REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole layer in the backward pass
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_all": jax.checkpoint_policies.dots_saveable,  # attention's batched matmuls too
}


def resolve_remat(remat: str) -> str:
    """`ModelConfig.remat` with 'auto' resolved: 'dots_all' on CPU (measured there no slower than
    saving everything, and faster where attention is cheap: see `ModelConfig`), 'none' on
    accelerators (not measured there; the behaviour before 'auto')."""
    if remat != "auto":
        return remat
    return "dots_all" if jax.default_backend() == "cpu" else "none"
