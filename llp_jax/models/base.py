"""What every zoo model shares: embedding, a first block, a scanned stack of the other blocks, the
final LayerNorm and an untied output head; and the facts each model declares about itself.

Layer 1 is a separate module because in most models it differs from the rest (PerceiverAR's
cross-attention, V3's compression, first-layer-only RoPE). Layers 2..L are created stacked (one
leading 'layers' axis) and run with an explicit `nnx.split` -> `jax.lax.scan` -> `nnx.merge`, so
compile time does not grow with depth, with `jax.checkpoint` under the configured remat policy.

A model owns its facts (class attributes and class methods below): what it scores, which cached
decoder it supports, its config checks, its code-faithful knobs and its structural sizes. The rest
of the code asks the model class (through `models.registry`) instead of switching on its name.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from llp_jax.errors import ConfigError
from llp_jax.models import losses
from llp_jax.models.block import Block
from llp_jax.models.inputs import as_rng, check_targets, check_tokens
from llp_jax.models.layers import DTYPES, LayerNorm, dense, logical_param, uniform_param
from llp_jax.models.masks import ExampleMask, MaskSpec
from llp_jax.models.remat import REMAT_POLICIES, resolve_remat

if TYPE_CHECKING:
    from llp_jax.models.config import ModelConfig

# fn(block, x, aux_in, rng) -> (x, aux_out): aux_in is this layer's slice of `run_layers`'s
# `layer_aux` (e.g. its streaming cache), aux_out anything per layer (e.g. its new keys/values).
LayerFn = Callable[[Block, jax.Array, object, jax.Array | None], tuple[jax.Array, object]]


@dataclasses.dataclass(frozen=True)
class StructuralSizes:
    """How a study sizes the model-specific structure at a window of n tokens; each model takes
    the fields it uses (`LanguageModel.structural_sizes`). A length of 0 means "n / divisor".

    Attributes:
      segments: LLP segments per window (s = n / segments) unless `segment_len` is set.
      segment_len: a fixed LLP segment length (capped at n).
      latent_div: latent models use l = n / latent_div unless `latent_len` is set.
      latent_len: a fixed latent length (capped at n).
      history_segments: enhanced_v2's S_h.
      group_len: S^2-Attn's G (0 = n / 4, LongLoRA's).
    """

    segments: int = 8
    segment_len: int = 0
    latent_div: int = 4
    latent_len: int = 0
    history_segments: int = 2
    group_len: int = 0


def need(ok: bool, message: str) -> None:
    """Raises `ConfigError('model.<message>')` unless `ok`: the form of every model check."""
    if not ok:
        raise ConfigError(f"model.{message}")


def stack_blocks(make: Callable[[nnx.Rngs], Block], count: int, rngs: nnx.Rngs) -> Block:
    """Creates `count` blocks with stacked parameters (leading logical axis 'layers')."""

    @nnx.split_rngs(splits=count)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def create(r: nnx.Rngs) -> Block:
        return make(r)

    return create(rngs)


def layer_rng(rng: jax.Array | None, index) -> jax.Array | None:
    return None if rng is None else jax.random.fold_in(rng, index)


class LanguageModel(nnx.Module):
    """Base class: subclasses implement `hidden(x_BxTxD, rng) -> h_BxPxD` at the scored positions
    and `attention_mask(seq_len)`, and declare the facts below."""

    # ------------------------------------------------------------------ the model's facts
    name: ClassVar[str]
    # Scores only its last `latent_len` positions (PerceiverAR-style), else every position.
    scores_latents: ClassVar[bool] = False
    # Cached decoder it supports: 'ring' (a key/value ring of `ring_slots`), 'latent'
    # (PerceiverAR's latent-block cache), or None (the window is recomputed for every token).
    cache: ClassVar[str | None] = None
    # Has the streaming scan form `stream(tokens, state)` (unbounded context).
    can_stream: ClassVar[bool] = False
    # Its parameters are sized by seq_len, so it runs on windows of exactly seq_len tokens.
    fixed_window: ClassVar[bool] = False
    # Layer 1 cross-attends (takes `cross_attend_dropout`).
    has_cross_attention: ClassVar[bool] = False
    # Other ways to evaluate the same trained model, worth reporting: name -> config changes.
    inference_alternatives: ClassVar[dict[str, dict[str, Any]]] = {}
    # `code_faithful(cfg)`'s changes for this model, on top of the ones every model shares.
    faithful_knobs: ClassVar[dict[str, Any]] = {}
    # Set on the copy `for_inference()` returns: evaluation and decoding, not training.
    inference: bool = False

    @classmethod
    def check_config(cls, cfg: ModelConfig) -> None:
        """This model's constraints on `cfg` (the shared ones are in `ModelConfig.validate`);
        raises `ConfigError` via `need`."""

    @classmethod
    def structural_sizes(cls, seq_len: int, sizes: StructuralSizes) -> dict[str, int]:
        """The ModelConfig fields of this model's own structure at a window of `seq_len`."""
        del seq_len, sizes
        return {}

    @classmethod
    def window_problem(cls, cfg: ModelConfig, window: int) -> str | None:
        """Why this model cannot be evaluated or decoded on windows of `window` tokens (None: it
        can); what the perplexity protocols and decoders check a `window` argument against."""
        if cls.fixed_window and window != cfg.seq_len:
            return f"{cfg.name} runs only on windows of seq_len={cfg.seq_len}, not {window}"
        return None

    @classmethod
    def ring_slots(cls, cfg: ModelConfig) -> int:
        """Key/value slots per layer of the ring cache (0 = one per position); cache='ring'."""
        raise NotImplementedError(f"{cls.name} has no ring cache")

    # ------------------------------------------------------------------ construction
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        cfg = cfg.validate()
        if cfg.document_mask and cfg.eod_id < 0:
            raise ConfigError(
                "model.document_mask needs model.eod_id, the end-of-document token (the trainer "
                "sets it from the tokenizer; set it when you build a model yourself)"
            )
        self.cfg = cfg
        V, d = cfg.vocab_size, cfg.d_model
        self.embed = logical_param(
            jax.random.normal(rngs.params(), (V, d), jnp.float32), ("vocab", "embed")
        )
        self.first_block = self.make_block(rngs, first=True)
        rest = cfg.num_layers - 1
        self.blocks = (
            stack_blocks(lambda r: self.make_block(r, first=False), rest, rngs) if rest else None
        )
        self.final_norm = LayerNorm(d)
        self.head_w = uniform_param(rngs, (d, V), d, ("embed", "vocab"))
        self.head_b = uniform_param(rngs, (V,), d, ("vocab",))

    def for_inference(self) -> LanguageModel:
        """The model as evaluation and decoding run it, on these same parameters: for most
        models the same function; S^2-Attn attends densely (LongLoRA's protocol) unless
        `s2attn_inference='shifted'`. Training never uses this copy."""
        if self.inference:
            return self
        model = nnx.merge(*nnx.split(self))
        model.inference = True
        return model

    # ------------------------------------------------------------------ hooks for subclasses
    def make_block(self, rngs: nnx.Rngs, *, first: bool) -> Block:
        return Block(self.cfg, rngs=rngs)

    def hidden(self, x_BxTxD: jax.Array, rng: jax.Array | None, segments=None) -> jax.Array:
        """The last layer's output at the scored positions. `segments` (int [B, T]): each
        position's document (`document_ids`), or None."""
        raise NotImplementedError

    def attention_mask(self, seq_len: int) -> MaskSpec | tuple[MaskSpec, ...]:
        """The mask of the model's attention over a window of `seq_len` (one MaskSpec, or one per
        equal group of heads), over the positions its layers use."""
        raise NotImplementedError

    def loss_start(self, seq_len: int) -> int:
        """First input position whose output is scored (outputs cover loss_start..T-1)."""
        return seq_len - self.cfg.latent_len if self.scores_latents else 0

    # ------------------------------------------------------------------ shared pieces
    @property
    def dtype(self):
        return DTYPES[self.cfg.compute_dtype]

    def rope_in(self, first: bool) -> bool:
        return first or self.cfg.rope_layers == "all"

    def embed_tokens(self, tokens_BxT: jax.Array) -> jax.Array:
        check_tokens(tokens_BxT, self.cfg.vocab_size)  # jnp.take gathers NaN for a bad id
        return jnp.take(self.embed[...], tokens_BxT, axis=0).astype(self.dtype)

    def logits(self, h_BxPxD: jax.Array) -> jax.Array:
        h = self.final_norm(h_BxPxD)
        logits = dense(h, self.head_w[...].astype(h.dtype), bias=self.head_b[...])
        return logits.astype(jnp.float32)

    def nll_sum(self, tokens_BxT: jax.Array, targets_BxP: jax.Array, *, rng=None) -> jax.Array:
        """Sum of the next-token negative log-likelihoods of the scored positions (float32):
        `-log_softmax(self(tokens))[targets]` summed, with the head fused into a chunked
        cross-entropy (losses.py) that never holds the [B, P, V] logits. `rng` as in __call__."""
        rng = as_rng(rng, optional=True)
        x = self.embed_tokens(tokens_BxT)
        start = self.loss_start(tokens_BxT.shape[1])
        check_targets(targets_BxP, tokens_BxT.shape, start, self.cfg.vocab_size)
        h_BxPxD = self.final_norm(self.hidden(x, rng, self.document_ids(tokens_BxT)))
        B, P, D = h_BxPxD.shape
        return losses.head_nll_sum(
            h_BxPxD.reshape(B * P, D), self.head_w[...].astype(h_BxPxD.dtype),
            self.head_b[...].astype(h_BxPxD.dtype), targets_BxP.reshape(B * P),
        )  # fmt: skip

    def document_ids(self, tokens_BxT: jax.Array):
        """int32 [B, T]: the document of each position (an end-of-document token belongs to the
        document it ends), or None when `document_mask` is off."""
        if not self.cfg.document_mask:
            return None
        is_eod = (tokens_BxT == self.cfg.eod_id).astype(jnp.int32)
        return jnp.cumsum(is_eod, axis=1) - is_eod

    def __call__(self, tokens_BxT: jax.Array, *, rng: jax.Array | int | None = None) -> jax.Array:
        """Logits [B, P, V] for the scored positions loss_start(T)..T-1; rng (a PRNG key or an
        int seed) enables dropout."""
        rng = as_rng(rng, optional=True)
        x = self.embed_tokens(tokens_BxT)
        return self.logits(self.hidden(x, rng, self.document_ids(tokens_BxT)))

    def stream(self, tokens_BxT: jax.Array, state: Any = None):
        """The streaming scan form, defined by the models that declare `can_stream`; the others
        answer a caller who tries it (as the README's LLP example does) in one line."""
        del tokens_BxT, state
        raise ConfigError(
            f"{self.cfg.name} has no streaming form (can_stream is False; llp has one): run it on "
            f"windows of seq_len={self.cfg.seq_len} tokens with model(tokens)"
        )

    def run_self_attention(self, x_BxTxD: jax.Array, rng, segments=None) -> jax.Array:
        """Every layer: all T positions attend to each other under `attention_mask(T)` (and
        within their documents, given `segments`). The body of transformer, s2attn, llp and
        enhanced_v1/v2."""
        return self.self_attention_with_kv(x_BxTxD, rng, segments)[0]

    def self_attention_with_kv(self, x_BxTxD: jax.Array, rng, segments=None):
        """`run_self_attention` that also returns every layer's keys/values of the T positions:
        (h, ((k, v) of layer 1 [B, T, H, D], (k, v) of layers 2..L [L-1, B, T, H, D])) — what a
        ring-cache decoder stores, so a prompt fills the caches in one parallel pass."""
        T = x_BxTxD.shape[1]
        pos, mask = positions(0, T), self.attention_mask(T)
        example = None if segments is None else ExampleMask(None, segments, segments)

        def layer(first: bool) -> LayerFn:
            def fn(block, x, _, r):
                return block(x, mask, q_pos=pos, k_pos=pos, use_rope=self.rope_in(first), rng=r,
                             example=example)  # fmt: skip

            return fn

        return self.run_layers(x_BxTxD, layer(True), layer(False), rng)

    def run_layers(self, x, first_fn: LayerFn, rest_fn: LayerFn, rng, layer_aux=(None, None)):
        """Applies first_fn to layer 1 and rest_fn to layers 2..L (scanned).

        Args:
          layer_aux: (aux of layer 1, aux of layers 2..L stacked on a leading axis), e.g. the
            LLP streaming caches; the second is scanned together with the stacked parameters.

        Returns:
          (x, (aux_out of layer 1, aux_out of layers 2..L stacked)).

        Measured and not taken: unrolling this scan (`unroll=True`) made the step benchmark's
        train step 1.009-1.048x faster on a 2-core AMD EPYC (alternated in one process), but
        its compiled temporary memory 1.07 -> 1.50 GiB.
        """
        x, aux_first = first_fn(self.first_block, x, layer_aux[0], layer_rng(rng, 0))
        if self.blocks is None:
            return x, (aux_first, None)
        graphdef, state = nnx.split(self.blocks)
        count = self.cfg.num_layers - 1

        def body(h, xs):
            layer_state, index, aux_in = xs
            block = nnx.merge(graphdef, layer_state)
            return rest_fn(block, h, aux_in, layer_rng(rng, index))

        remat = resolve_remat(self.cfg.remat)
        if remat != "none":
            body = jax.checkpoint(body, policy=REMAT_POLICIES[remat])
        x, aux_rest = jax.lax.scan(body, x, (state, jnp.arange(1, count + 1), layer_aux[1]))
        return x, (aux_first, aux_rest)


def positions(start: int, length: int) -> np.ndarray:
    """Static positions start..start+length-1 (NumPy, so attention can pick its blocked path)."""
    return np.arange(start, start + length, dtype=np.int32)
