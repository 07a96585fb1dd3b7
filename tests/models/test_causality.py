"""Causality of every zoo model: an output never depends on a later token, and does depend on
its own token (and, for the latent models, on the history).

For each configuration one jitted forward runs a batch holding the base sequence and, for every
probe position p, (a) the sequence with *every* token after p changed and (b) the sequence with
token p changed. Output index i is the input position loss_start + i.
"""

from __future__ import annotations

import numpy as np
import pytest

from llp_jax import models
from tests.helpers.models import changed, jit_forward, make_config, random_tokens

ATOL = 1e-5


def _variants():
    out = []
    for name in models.MODEL_NAMES:
        for faithful in (False, True):
            out.append(
                pytest.param(name, faithful, {}, id=f"{name}-{'code' if faithful else 'clean'}")
            )
    extra = [
        # history mask, both values, for V1..V3 (clean is causal, code is bidirectional)
        ("enhanced_v1", False, {"history_mask": "bidirectional"}),
        ("enhanced_v2", False, {"history_mask": "bidirectional"}),
        ("enhanced_v3", False, {"history_mask": "bidirectional"}),
        ("enhanced_v2", True, {"history_mask": "causal"}),
        # LLP with two previous segments visible
        ("llp", False, {"prev_segments": 2}),
        ("llp", True, {"prev_segments": 2}),
        # RoPE in the first layer only / in every layer, against each preset's default
        ("transformer", False, {"rope_layers": "first"}),
        ("perceiver_ar", False, {"rope_layers": "first"}),
        ("enhanced_v1", True, {"rope_layers": "first"}),
        ("enhanced_v3", True, {"rope_layers": "all"}),
        ("llp", True, {"rope_layers": "all"}),
        ("s2attn", False, {"rope_layers": "first"}),
    ]
    for name, faithful, ov in extra:
        tag = "-".join(f"{k}={v}" for k, v in ov.items())
        out.append(
            pytest.param(name, faithful, ov, id=f"{name}-{'code' if faithful else 'clean'}-{tag}")
        )
    return out


def _probe_positions(cfg: models.ModelConfig, off: int) -> list[int]:
    T = cfg.seq_len
    if off:  # latent models: inside the latent block
        return [off, off + 1, off + cfg.latent_len // 2, T - 2]
    # segment / group boundaries of llp and s2attn (32 in the tiny presets) and a few others
    return [0, 31, 32, 47, 80, T - 2]


@pytest.mark.parametrize("name,faithful,overrides", _variants())
def test_no_output_depends_on_a_later_token(name, faithful, overrides):
    cfg = make_config(name, faithful, **overrides)
    model = models.build(cfg, seed=0)
    T, V = cfg.seq_len, cfg.vocab_size
    off = model.loss_start(T)
    assert off == (T - cfg.latent_len if name in models.LATENT_MODELS else 0)
    ps = _probe_positions(cfg, off)

    base = random_tokens(0, (T,), V)
    rows = [base]
    for j, p in enumerate(ps):
        rows.append(changed(base, np.arange(T) > p, V, seed=10 + j))  # every token after p
        rows.append(changed(base, np.arange(T) == p, V, seed=50 + j))  # token p itself
    if off:  # the first and the last history token
        rows.append(changed(base, np.arange(T) == 0, V, seed=98))
        rows.append(changed(base, np.arange(T) == off - 1, V, seed=99))
    logits = np.asarray(jit_forward(model)(np.stack(rows)))
    assert logits.shape == (len(rows), T - off, V)
    assert np.isfinite(logits).all()
    ref = logits[0]

    for j, p in enumerate(ps):
        after, at = logits[1 + 2 * j], logits[2 + 2 * j]
        i = p - off  # output index of position p
        np.testing.assert_allclose(
            after[: i + 1],
            ref[: i + 1],
            atol=ATOL,
            rtol=0,
            err_msg=f"{name}: changing tokens > {p} changed an output at a position <= {p}",
        )
        # the perturbation is real: the next position (which sees token p+1) does change
        assert np.abs(after[i + 1] - ref[i + 1]).max() > 1e-4, (name, p)
        assert np.abs(at[i] - ref[i]).max() > 1e-4, f"{name}: output at {p} ignores token {p}"
        np.testing.assert_allclose(at[:i], ref[:i], atol=ATOL, rtol=0)
    if off:
        # PerceiverAR / V1..V3: the whole history is visible to every latent (a top-left aligned
        # causal triangle would hide the last history tokens from the first latents)
        for row, h in ((-2, 0), (-1, off - 1)):
            diff = np.abs(logits[row] - ref).max(axis=-1)
            assert (diff > 1e-5).all(), (
                f"{name}: some latent does not see history token {h}: {diff}"
            )
