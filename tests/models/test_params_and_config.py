"""Parameter counts (the paper's LLP sizes, exactly, without allocating), logical-axis metadata
on every parameter, and one-line ConfigErrors for every bad configuration value."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from llp_jax import models
from llp_jax.models import rotary
from tests.helpers.models import make_config


def llp_formula(V, d, H, L, separate_first_out=True):
    """docs/models.md: 2*V*d + V + 2d + L*(12d^2 + 11d + 2*d_h) for the code-faithful LLP
    (11d^2 + 10d instead of 12d^2 + 11d without the segment-0 output projection)."""
    per_layer = 12 * d * d + 11 * d if separate_first_out else 11 * d * d + 10 * d
    return 2 * V * d + V + 2 * d + L * (per_layer + 2 * (d // H))


# ----------------------------------------------------------------------------- counts
def test_paper_llp_param_counts_without_allocation():
    cfg = models.paper_llp()
    assert (cfg.num_layers, cfg.num_heads, cfg.d_model, cfg.vocab_size) == (18, 12, 768, 28996)
    assert models.count_params(cfg) == 172_124_740
    assert models.count_params(models.paper_llp(24, 6)) == 214_646_596
    assert llp_formula(28996, 768, 12, 18) == 172_124_740
    assert llp_formula(28996, 768, 6, 24) == 214_646_596
    # counted from shapes only: the abstract model holds no arrays
    abstract = models.abstract_model(cfg)
    leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
    assert leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)


@pytest.mark.parametrize(
    "V,d,H,L,n,s", [(100, 32, 4, 3, 64, 16), (50, 48, 6, 1, 32, 8), (300, 16, 2, 5, 64, 32)]
)
@pytest.mark.parametrize("separate_first_out", [True, False])
def test_llp_param_formula(V, d, H, L, n, s, separate_first_out):
    cfg = models.code_faithful(
        models.ModelConfig(
            name="llp", vocab_size=V, seq_len=n, num_layers=L, d_model=d, num_heads=H, segment_len=s
        )
    ).replace(llp_separate_first_out=separate_first_out)
    assert models.count_params(cfg) == llp_formula(V, d, H, L, separate_first_out)


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_count_params_config_equals_built_model(name):
    cfg = make_config(name, True)
    assert models.count_params(cfg) == models.count_params(models.build(cfg))


def test_code_faithful_extra_parameters():
    """Shared K=V removes d^2 per layer; V3's dead compression matrices are counted in every
    layer; the code-faithful LLP's unused K/V LayerNorm adds 2*d_h per layer."""
    d, L = 64, 2
    for name in models.MODEL_NAMES:
        clean = make_config(name)
        n_clean = models.count_params(clean)
        n_shared = models.count_params(clean.replace(shared_kv=True))
        assert n_clean - n_shared == L * d * d, name
    v3 = make_config("enhanced_v3", True)
    m, c = v3.history_len, v3.compressed
    every = models.count_params(v3)
    once = models.count_params(v3.replace(v3_compress_every_layer=False))
    assert every - once == (L - 1) * (m * c + c)
    llp = make_config("llp", True)
    assert models.count_params(llp) - models.count_params(
        llp.replace(kv_head_norm="off")
    ) == L * 2 * (d // llp.num_heads)


# ----------------------------------------------------------------------------- logical axes
def _param_items(model):
    state = nnx.state(model, nnx.Param)
    return jax.tree.leaves_with_path(state, is_leaf=lambda x: isinstance(x, nnx.Variable))


@pytest.mark.parametrize("name", models.MODEL_NAMES)
@pytest.mark.parametrize("faithful", [False, True], ids=["clean", "code"])
def test_every_param_has_logical_axes(name, faithful):
    cfg = make_config(name, faithful, num_layers=3)
    model = models.abstract_model(cfg)
    items = _param_items(model)
    assert items
    stacked = 0
    for path, var in items:
        where = jax.tree_util.keystr(path)
        axes = var.get_metadata().get("out_sharding")
        assert axes is not None, f"{name}: {where} has no out_sharding"
        assert len(axes) == len(var.shape), f"{name}: {where} axes {axes} vs shape {var.shape}"
        assert all(a is None or isinstance(a, str) for a in axes), where
        if where.startswith("['blocks']"):
            stacked += 1
            assert axes[0] == "layers", f"{name}: {where} axes {axes}"
            assert var.shape[0] == cfg.num_layers - 1, where
            assert "layers" not in axes[1:], where
        else:
            assert "layers" not in axes, f"{name}: {where} axes {axes}"
    assert stacked > 0
    # the same names on a built (allocated) model
    built = {
        jax.tree_util.keystr(p): v.get_metadata()["out_sharding"]
        for p, v in _param_items(models.build(cfg))
    }
    assert built == {jax.tree_util.keystr(p): v.get_metadata()["out_sharding"] for p, v in items}


def test_single_layer_model_has_no_stack():
    model = models.build(make_config("llp", num_layers=1))
    assert model.blocks is None
    for path, var in _param_items(model):
        assert "layers" not in var.get_metadata()["out_sharding"]


# ----------------------------------------------------------------------------- validation
BAD_CONFIGS = [
    # (model name, overrides, field named in the message)
    ("llp", {"segment_len": 48}, "segment_len"),
    ("llp", {"segment_len": 0}, "segment_len"),
    ("llp", {"prev_segments": 0}, "prev_segments"),
    ("perceiver_ar", {"latent_len": 129}, "latent_len"),
    ("perceiver_ar", {"latent_len": 0}, "latent_len"),
    ("enhanced_v2", {"latent_len": 128}, "latent_len"),
    ("enhanced_v3", {"compressed_len": 96}, "compressed_len"),  # = history length 96
    ("enhanced_v3", {"compressed_len": 200}, "compressed_len"),
    ("enhanced_v2", {"history_segments": 5}, "history_segments"),
    ("enhanced_v2", {"history_segments": 0}, "history_segments"),
    ("transformer", {"num_heads": 5}, "num_heads"),
    ("transformer", {"name": "longformer"}, "name"),
    ("transformer", {"kv_head_norm": "yes"}, "kv_head_norm"),
    ("transformer", {"rope_layers": "last"}, "rope_layers"),
    ("enhanced_v1", {"history_mask": "full"}, "history_mask"),
    ("enhanced_v3", {"v3_residual": "misaligned"}, "v3_residual"),
    ("llp", {"attention_impl": "flash"}, "attention_impl"),
    ("llp", {"compute_dtype": "float16"}, "compute_dtype"),
    ("llp", {"remat": "some"}, "remat"),
    ("transformer", {"d_model": 12, "num_heads": 4}, "head_dim"),  # d_h = 3 with RoPE everywhere
    ("s2attn", {"group_len": 48}, "group_len"),
    ("s2attn", {"group_len": 1, "seq_len": 128}, "group_len"),
    ("s2attn", {"num_heads": 1}, "num_heads"),
    ("transformer", {"dropout": 1.0}, "dropout"),
    ("transformer", {"dropout": 1e-6}, "dropout=1e-06 is 0 at the masks' resolution"),
    ("transformer", {"dropout": 0.9999999999}, "dropout=0.9999999999 is 1 at the masks'"),
    ("transformer", {"vocab_size": 0}, "vocab_size"),
    ("transformer", {"num_layers": 0}, "num_layers"),
]


@pytest.mark.parametrize(
    "name,overrides,field",
    BAD_CONFIGS,
    ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o, _ in BAD_CONFIGS],
)
def test_bad_config_raises_one_line_error(name, overrides, field):
    base = dataclasses.asdict(make_config(name))
    base.update(overrides)
    for attempt in (
        lambda: models.ModelConfig(**base).validate(),
        lambda: models.build(base),  # a mapping, as from a ConfigDict
        lambda: models.count_params(models.ModelConfig(**base)),
    ):
        with pytest.raises(models.ConfigError) as info:
            attempt()
        msg = str(info.value)
        assert "\n" not in msg, msg
        assert field in msg, f"message does not name {field!r}: {msg}"


INT_FIELDS = [f.name for f in dataclasses.fields(models.ModelConfig) if f.type == "int"]


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("value", [2**31, 10**20])
def test_sizes_and_ids_past_int32_are_one_line(field, value):
    """Every size and id counts in int32: past it, d_model=1e20 was a numpy traceback from the
    RoPE check, seq_len and the rest tracebacks from numpy or jit's lowering."""
    cfg = dataclasses.replace(make_config("llp"), **{field: value})
    with pytest.raises(models.ConfigError, match=rf"^model.{field}={value} must be below 2\*\*31"):
        cfg.validate()


def test_a_huge_head_is_checked_without_building_its_frequency_table():
    """The RoPE check looks at the two ends of the frequencies only: validating a head of 2**30
    values built a 2 GB table (2**29 float32 frequencies, then their float64 powers)."""
    import tracemalloc  # noqa: PLC0415

    cfg = dataclasses.replace(make_config("llp"), d_model=2**31 - 2, num_heads=1, rope_theta=1e-50)
    tracemalloc.start()
    try:
        with pytest.raises(models.ConfigError, match="rope_theta=1e-50 gives RoPE frequencies"):
            cfg.validate()
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()
    with np.errstate(all="ignore"):  # the full tables of the cases below overflow on purpose
        for head_dim, theta in [(2, -5.0), (2, float("nan")), (64, 1e50), (64, float("inf"))]:
            assert np.all(np.isfinite(rotary.inv_freq(head_dim, theta)))
            assert rotary.finite_frequencies(head_dim, theta)
        for head_dim, theta in [(64, -5.0), (64, 0.0), (64, float("nan")), (64, 1e-50),
                                (4, 1e-90)]:  # fmt: skip
            assert not np.all(np.isfinite(rotary.inv_freq(head_dim, theta)))
            assert not rotary.finite_frequencies(head_dim, theta)


def test_odd_head_dim_rejected_even_with_first_layer_rope():
    """RoPE always runs in layer 1 (rope_layers='first' only drops it from layers 2..L), so an
    odd head_dim must be rejected for every rope_layers value, not crash inside apply_rope."""
    cfg = make_config("llp").replace(d_model=12, num_heads=4, rope_layers="first")
    with pytest.raises(models.ConfigError, match="head_dim"):
        cfg.validate()


def test_unknown_field_and_good_mapping():
    with pytest.raises(models.ConfigError, match="segment_length"):
        models.ModelConfig.from_any({"name": "llp", "segment_length": 32})
    good = dataclasses.asdict(make_config("llp"))
    assert models.ModelConfig.from_any(good) == make_config("llp")
    assert issubclass(models.ConfigError, ValueError)


def test_enhanced_v3_input_length_must_be_seq_len():
    cfg = make_config("enhanced_v3")
    model = models.build(cfg)
    with pytest.raises(models.ConfigError, match="seq_len"):
        model(jax.numpy.zeros((1, cfg.seq_len // 2), jax.numpy.int32))


def test_preset_overrides_win_over_code_faithful():
    """An explicit override passed to a preset must not be silently replaced by the
    code-faithful switch (e.g. dropout=0.0 for a deterministic run)."""
    assert models.tiny("llp", faithful=True, dropout=0.0).dropout == 0.0
    assert models.tiny("enhanced_v1", faithful=True, history_mask="causal").history_mask == "causal"
    assert models.tiny("llp", faithful=True, rope_layers="all").rope_layers == "all"
    assert models.paper_llp(dropout=0.1).dropout == 0.1


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_tiny_presets_are_valid_and_code_faithful_switches_knobs(name):
    clean, code = make_config(name), make_config(name, True)
    assert clean.validate() is clean
    assert (clean.shared_kv, clean.kv_head_norm, clean.history_mask) == (False, "off", "causal")
    assert code.shared_kv and code.dropout == 0.05
    assert code.kv_head_norm == ("unused" if name == "llp" else "on")
    assert code.rope_layers == (
        "all" if name in ("enhanced_v1", "transformer", "s2attn") else "first"
    )
    assert code.llp_separate_first_out == (name == "llp")
    assert (code.v3_residual == "code") == (name == "enhanced_v3")
