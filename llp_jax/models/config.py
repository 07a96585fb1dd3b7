"""One model configuration for the whole zoo, its validation, and the code-faithful presets.

Every knob of the knob table in docs/models.md is a field here. Defaults are the *clean*
behaviour; `code_faithful(cfg)` switches each knob to what the authors' PyTorch code does, so the
paper's numbers (parameter counts, perplexities) can be reproduced exactly. Checks that concern
one model live in its class (`check_config`), its code knobs in `faithful_knobs`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from llp_jax import schema
from llp_jax.errors import ConfigError
from llp_jax.models.attention import IMPLEMENTATIONS
from llp_jax.models.base import LanguageModel, need
from llp_jax.models.dropout import LEVELS, quantised
from llp_jax.models.registry import MODEL_NAMES, model_class
from llp_jax.models.rotary import finite_frequencies

__all__ = ["ConfigError", "ModelConfig", "as_dict", "code_faithful"]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one zoo model (notation of docs/models.md in brackets).

    Attributes:
      name: one of MODEL_NAMES.
      vocab_size: V.
      seq_len: n, tokens in one training window.
      num_layers: L.
      d_model: d.
      num_heads: H (d_h = d / H).
      mlp_ratio: FF width is mlp_ratio * d (4 in the paper).
      dropout: rate on attention probabilities and inside the FF (0.05 in the authors' code).
      latent_len: l, trailing query positions of perceiver_ar / enhanced_v1..v3.
      history_segments: S_h, history split of enhanced_v2.
      compressed_len: c, compressed history length of enhanced_v3 (0 = n / 4 as in the code).
      segment_len: s, LLP segment length (n / S).
      prev_segments: k, previous LLP segments each segment sees (the paper: 1).
      group_len: G, S^2-Attn group length (0 = n / 4 as in LongLoRA).
      shared_kv: one projection serves as keys and values (authors' code) instead of separate K, V.
      kv_head_norm: 'off' | 'on' (LayerNorm over d_h applied to K/V) | 'unused' (LLP's code: the
        LayerNorm parameters exist but its output is discarded).
      rope_layers: 'all' | 'first' (RoPE only in layer 1, as most of the authors' models).
      rope_theta: RoPE base.
      history_mask: 'causal' | 'bidirectional' (history block of enhanced_v1..v3, authors' code).
        Bidirectional never leaks into scored outputs (history lies before every latent), but a
        history position's output then changes when later history tokens arrive, so these models
        cannot cache their history when decoding (their decoder recomputes the window).
      v3_residual: 'aligned' | 'code' (layer 1 adds x[:, :c+l], the authors' bug).
      v3_compress_every_layer: instantiate the (dead) compression matrix in every layer, as the code.
      llp_separate_first_out: segment 0 has its own output projection (`to_out_0` in the code).
      s2attn_inference: 'dense' | 'shifted': how s2attn evaluates and decodes. LongLoRA trains
        with S^2-Attn and evaluates with full causal attention ('dense', the default); 'shifted'
        keeps the training masks.
      document_mask: attention never crosses a document boundary: a window's positions belong to
        the document that `eod_id` tokens delimit (each document ends with one), and queries see
        keys of their own document only. For packed training on many short documents.
      eod_id: the end-of-document token (-1: the tokenizer's, set by the trainer).
      cross_attend_dropout: perceiver_ar only: the fraction of history positions dropped from
        layer 1's keys at each training step (the official Perceiver AR's regulariser; 0 in the
        authors' code). No effect at evaluation.
      attention_impl: 'xla' (fast: blocked where the mask allows), 'reference' (explicit full mask:
        O(n^2) memory, the ground truth the tests compare against), 'cudnn' (GPU), 'splash' (TPU),
        'auto' (the backend's kernel; see models/attention.py). The kernels fall back to 'xla',
        with a logged reason, where a mask or attention dropout is beyond them.
      compute_dtype: 'float32' | 'bfloat16' for activations and matmuls (parameters stay float32).
        bfloat16 halves activation memory and uses the accelerators' fast units; on CPU it is
        usually slower than float32.
      remat: 'auto' | 'none' | 'full' | 'dots' | 'dots_all' rematerialisation of the scanned
        layers 2..L. 'none' keeps every activation (most memory); 'full' keeps only each layer's
        input and recomputes the layer in the backward pass (~1/3 more compute, least memory);
        'dots' also keeps the matmul outputs that have no batch dimension (jax's
        `dots_with_no_batch_dims_saveable`), 'dots_all' every matmul output, attention scores
        included (`dots_saveable`): both recompute the elementwise work, which on CPU is cheaper
        than writing its outputs and reading them back. 'auto' (the default): 'dots_all' on CPU,
        'none' on accelerators. On CPU the LLP step at the authors' small config was 1.07x faster
        with 'dots_all' than with 'none' on an earlier machine, 1.00x on the Zen 4 EPYC of
        experiments/results/step_benchmark.md (llp_faithful vs llp_faithful_saveall, alternated
        in one run; in bfloat16 0.96x), for a smaller memory plan; 'dots' instead made the dense
        transformer at n = 16k ~20% slower in side-by-side probes (it recomputes the n x n
        scores), where 'dots_all' was as fast as 'none'.
    """

    name: str = "llp"
    vocab_size: int = 256
    seq_len: int = 256
    num_layers: int = 2
    d_model: int = 64
    num_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    latent_len: int = 0
    history_segments: int = 1
    compressed_len: int = 0
    segment_len: int = 0
    prev_segments: int = 1
    group_len: int = 0
    shared_kv: bool = False
    kv_head_norm: str = "off"
    rope_layers: str = "all"
    rope_theta: float = 10000.0
    history_mask: str = "causal"
    v3_residual: str = "aligned"
    v3_compress_every_layer: bool = False
    llp_separate_first_out: bool = False
    s2attn_inference: str = "dense"
    document_mask: bool = False
    eod_id: int = -1
    cross_attend_dropout: float = 0.0
    attention_impl: str = "xla"
    compute_dtype: str = "float32"
    remat: str = "auto"

    def __post_init__(self):
        # numpy scalars (a width computed with numpy) become Python numbers: the config is
        # written as JSON into every checkpoint. Other wrong types are left for validate().
        for field in dataclasses.fields(self):
            value, kind = getattr(self, field.name), schema.field_kind(field)
            if isinstance(value, np.generic) and kind in ("int", "float", "bool", "str"):
                object.__setattr__(self, field.name, value.item())
            elif kind == "float":
                object.__setattr__(self, field.name, schema.float_value(value))

    # ----------------------------------------------------------------- derived sizes
    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def history_len(self) -> int:
        """m = n - l."""
        return self.seq_len - self.latent_len

    @property
    def compressed(self) -> int:
        return self.compressed_len or self.seq_len // 4

    @property
    def group(self) -> int:
        return self.group_len or self.seq_len // 4

    @property
    def model_class(self) -> type[LanguageModel]:
        return model_class(self.name)

    @property
    def scores_latents(self) -> bool:
        """The model scores only its last `latent_len` positions."""
        return self.model_class.scores_latents

    @property
    def scored_len(self) -> int:
        """Positions of a training window whose next-token loss counts."""
        return self.latent_len if self.scores_latents else self.seq_len

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with `changes` (a field it does not have: one-line ConfigError)."""
        schema.check_known(changes, _FIELDS, "model")
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_any(cls, config: Any) -> "ModelConfig":
        """Accepts a ModelConfig, a mapping or an ml_collections.ConfigDict (e.g. `config.model`)."""
        if isinstance(config, ModelConfig):
            return config.validate()
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        if not isinstance(config, Mapping):
            hint = f"; e.g. llp_jax.models.tiny({config!r})" if isinstance(config, str) else ""
            raise ConfigError(
                f"a model config is a ModelConfig or a mapping of its fields, not a "
                f"{type(config).__name__}{hint}"
            )
        data = dict(config)
        schema.check_known(data, _FIELDS, "model")
        return cls(**data).validate()

    # ----------------------------------------------------------------- validation
    def validate(self) -> "ModelConfig":
        """Checks every constraint; raises ConfigError with a one-line message. Returns self."""
        schema.check_types(self, "model")

        need(
            self.name in MODEL_NAMES, f"name={self.name!r} is unknown; choose one of {MODEL_NAMES}"
        )
        # Sizes become array dimensions and positions, ids are looked up: all count in int32
        # (past it, a traceback from numpy or jit's lowering, or a table of 2**62 entries).
        for field in _INT_FIELDS:
            value = getattr(self, field)
            need(value < 2**31, f"{field}={value} must be below 2**31 (sizes and ids are int32)")
        for field in ("vocab_size", "seq_len", "num_layers", "d_model", "num_heads", "mlp_ratio"):
            need(getattr(self, field) >= 1, f"{field}={getattr(self, field)} must be >= 1")
        need(
            self.d_model % self.num_heads == 0,
            f"num_heads={self.num_heads} must divide d_model={self.d_model}",
        )
        need(0.0 <= self.dropout < 1.0, f"dropout={self.dropout} must be in [0, 1)")
        need(quantised(self.dropout) < 1.0, f"dropout={self.dropout} is 1 at the masks' "
             f"resolution of 1/{LEVELS} (every value dropped: a NaN step); at most 0.99998")  # fmt: skip
        need(self.dropout == 0.0 or quantised(self.dropout) > 0.0, f"dropout={self.dropout} is "
             f"0 at the masks' resolution of 1/{LEVELS} (nothing dropped, at dropout's cost); "
             f"0, or at least {1 / LEVELS:.3g}")  # fmt: skip
        need(finite_frequencies(self.head_dim, self.rope_theta), f"rope_theta={self.rope_theta} "
             "gives RoPE frequencies past float32 (a NaN step); the usual base is 10000")  # fmt: skip
        need(
            0.0 <= self.cross_attend_dropout < 1.0,
            f"cross_attend_dropout={self.cross_attend_dropout} must be in [0, 1)",
        )
        choices = {
            "kv_head_norm": ("off", "on", "unused"),
            "rope_layers": ("all", "first"),
            "history_mask": ("causal", "bidirectional"),
            "v3_residual": ("aligned", "code"),
            "s2attn_inference": ("dense", "shifted"),
            "attention_impl": IMPLEMENTATIONS,
            "compute_dtype": ("float32", "bfloat16"),
            "remat": ("auto", "none", "full", "dots", "dots_all"),
        }
        for field, allowed in choices.items():
            value = getattr(self, field)
            need(value in allowed, f"{field}={value!r} must be one of {allowed}")
        need(
            self.head_dim % 2 == 0,
            f"num_heads={self.num_heads}: head_dim = d_model/num_heads = {self.head_dim} must be "
            "even for RoPE (layer 1 always rotates)",
        )
        need(
            self.cross_attend_dropout == 0.0 or self.model_class.has_cross_attention,
            f"cross_attend_dropout={self.cross_attend_dropout} applies only to models whose "
            f"first layer cross-attends, not to {self.name}",
        )
        need(self.eod_id >= -1, f"eod_id={self.eod_id} must be a token id (or -1: the tokenizer's)")
        need(
            self.eod_id < self.vocab_size,
            f"eod_id={self.eod_id} must be < vocab_size={self.vocab_size}",
        )
        self.model_class.check_config(self)
        return self


_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelConfig))
_INT_FIELDS = tuple(
    f.name for f in dataclasses.fields(ModelConfig) if schema.field_kind(f) == "int"
)


def code_faithful(cfg: Any) -> ModelConfig:
    """Switches every knob to the behaviour of the authors' released code for `cfg.name`: the
    knobs all their models share, then the model's own (`faithful_knobs`). `cfg` is anything
    `ModelConfig.from_any` takes."""
    cfg = ModelConfig.from_any(cfg)
    changes: dict[str, Any] = dict(
        shared_kv=True,
        kv_head_norm="on",
        rope_layers="first",
        history_mask="bidirectional",
        dropout=0.05,
    )
    changes.update(model_class(cfg.name).faithful_knobs)
    return cfg.replace(**changes).validate()


def as_dict(cfg: ModelConfig) -> Mapping[str, Any]:
    return dataclasses.asdict(cfg)


# How a model runs, not what it computes: a checkpoint's weights serve any of these (a run
# resumed with remat='full' after running out of memory, or on a GPU with attention_impl='cudnn').
EXECUTION_FIELDS = ("attention_impl", "compute_dtype", "remat")
# Regularisation of training alone: the weights, the optimizer state and inference are the same
# with any value, so a resume may change them (dropout added once a run starts to overfit).
TRAINING_FIELDS = ("dropout", "cross_attend_dropout")


def differences(saved: ModelConfig, given: ModelConfig, *, ignore=()) -> list[str]:
    """ "field=saved (checkpoint) vs given (config)" for each field that differs, but `ignore`."""
    return [
        f"{f.name}={getattr(saved, f.name)!r} (checkpoint) vs {getattr(given, f.name)!r} (config)"
        for f in dataclasses.fields(ModelConfig)
        if f.name not in ignore and getattr(saved, f.name) != getattr(given, f.name)
    ]
