"""What a study runs: its runs (`RunKey`), budgets and measurements (`StudySpec`), the studies.

`study` trains and measures them; its module docstring says what the budgets mean.
"""

from __future__ import annotations

import dataclasses

from llp_jax.studies import compare_spec, workdirs

KINDS = ("tokens", "targets", "targets_short", "long", "subword", "depth", "recipe")


@dataclasses.dataclass(frozen=True)
class RunKey:
    label: str  # a compare variant label
    seed: int
    budget: str = "tokens"  # 'tokens' | 'targets' | 'targets_short' | 'long' | 'recipe'
    tokenizer: str = "byte"  # 'byte' | 'sentencepiece'
    num_layers: int | None = None  # None: the study's depth

    @property
    def kind(self) -> str:
        """One of KINDS (`run_study`'s `kinds`): the budget, or for the 'tokens' budget what
        else differs ('subword', 'depth')."""
        if self.budget != "tokens":
            return self.budget
        return "subword" if self.tokenizer != "byte" else "depth" if self.num_layers else "tokens"

    @property
    def dirname(self) -> str:
        depth = f"_L{self.num_layers}" if self.num_layers else ""
        name = workdirs.workdir_name(self.label)
        return f"{self.budget}_{self.tokenizer}/{name}{depth}_seed{self.seed}"


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """What one study trains and measures (see `STUDIES`)."""

    name: str
    base: compare_spec.CompareSpec
    variants: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    equal_targets: tuple[str, ...] = ()  # latent variants also trained n / l times longer
    short_targets: tuple[str, ...] = ()  # full-scoring variants also trained l / n times as long
    long: tuple[str, ...] = ()  # variants also trained long_factor times longer, seed 0
    long_factor: int = 5
    subword: tuple[str, ...] = ()  # variants also trained with SentencePiece
    depths: tuple[int, ...] = ()  # extra LLP depths (context use)
    recipe: compare_spec.CompareSpec | None = None  # the paper's recipe, scaled down
    recipe_variants: tuple[str, ...] = ("llp (code)", "transformer")
    bucket: int = 32  # loss-by-position bucket width
    position_windows: int = 128
    context_targets: int = 256  # target segments of the context curves
    domain_tokens: int = 65_536  # held-out domain tokens evaluated

    def runs(self) -> list[RunKey]:
        keys = [RunKey(v, s) for v in self.variants for s in self.seeds]
        keys += [RunKey(v, s, "targets") for v in self.equal_targets for s in self.seeds]
        keys += [RunKey(v, s, "targets_short") for v in self.short_targets for s in self.seeds]
        keys += [RunKey(v, self.seeds[0], "long") for v in self.long]
        keys += [RunKey(v, s, tokenizer="sentencepiece") for v in self.subword for s in self.seeds]
        keys += [RunKey("llp", s, num_layers=L) for L in self.depths for s in self.seeds]
        if self.recipe is not None:
            keys += [RunKey(v, 0, "recipe", "sentencepiece") for v in self.recipe_variants]
        return keys

    def run_spec(self, key: RunKey) -> compare_spec.CompareSpec:
        """The compare spec of one run: its seed, tokenizer, depth and number of steps."""
        spec = self.recipe if key.budget == "recipe" else self.base
        spec = dataclasses.replace(spec, seed=key.seed, tokenizer=key.tokenizer)
        if key.num_layers:
            spec = dataclasses.replace(spec, num_layers=key.num_layers)
        if key.budget in ("targets", "targets_short", "long"):
            spec = scaled(spec, self.budget_factor(key))
        return spec

    def budget_factor(self, key: RunKey) -> float:
        """The run's steps over the 'tokens' budget's."""
        if key.budget == "long":
            return float(self.long_factor)
        if key.budget not in ("targets", "targets_short"):
            return 1.0
        cfg = compare_spec.model_config(self.base, compare_spec.VARIANTS_BY_LABEL[key.label])
        if key.budget == "targets":
            return self.base.seq_len / cfg.scored_len  # n / l for latent models, 1 otherwise
        return 1.0 / self.base.latent_div if cfg.scored_len == self.base.seq_len else 1.0

    def measure_settings(self) -> dict:
        """What `measure` depends on besides the run: a cached row measured otherwise is stale."""
        return {f: getattr(self, f) for f in ("bucket", "position_windows", "context_targets",
                                              "domain_tokens")}  # fmt: skip


def scaled(spec: compare_spec.CompareSpec, factor: float) -> compare_spec.CompareSpec:
    """`spec` with `factor` times the steps, the schedule's shape kept (warm-up and evaluation
    interval scaled alike)."""
    return dataclasses.replace(
        spec, num_steps=max(1, round(spec.num_steps * factor)),
        warmup_steps=round(spec.warmup_steps * factor),
        eval_every=max(1, round(spec.eval_every * factor)),
    )  # fmt: skip


# The committed study: n = 256, d = 128, L = 4, H = 4 (LLP s = 64, k = 1: receptive field
# L * k * s = 256 = n), 400 steps of 8 x 256 byte tokens, 3 seeds; 5x that for the 'long' check.
# Sized for this 2-core CPU (`compare --estimate`; step times 0.06 s perceiver_ar to 0.3 s
# enhanced_v2 (code)): about two hours for the whole study without the recipe, whose two runs
# take about half an hour each (the largest LLP this CPU trains in that time: d = 256, n = 512).
SMALL = StudySpec(
    name="small",
    base=compare_spec.CompareSpec(
        seq_len=256,
        d_model=128,
        num_layers=4,
        num_heads=4,
        segments=4,
        latent_div=4,
        history_segments=3,
        batch_size=8,
        num_steps=400,
        learning_rate=2e-3,
        warmup_steps=30,
        eval_every=50,
        eval_batches=4,
        eval_tokens=65_536,
    ),  # fmt: skip
    variants=tuple(v.label for v in compare_spec.VARIANTS if "(" not in v.label)
    + tuple(v.label for v in compare_spec.CODE_VARIANTS),
    equal_targets=("perceiver_ar",),
    short_targets=("llp", "transformer", "s2attn", "llp (code)"),
    long=("llp", "transformer", "perceiver_ar", "enhanced_v3"),
    subword=("llp", "transformer", "perceiver_ar"),
    depths=(2,),
    bucket=64,
    recipe=compare_spec.CompareSpec(
        seq_len=512,
        d_model=256,
        num_layers=4,
        num_heads=4,
        segments=8,
        latent_div=4,
        batch_size=8,
        num_steps=1500,
        learning_rate=2e-4,
        warmup_steps=0,
        schedule="step_halving",
        halve_every=500,
        eval_every=250,
        eval_batches=4,
        eval_tokens=65_536,
        vocab_size=4096,
    ),  # fmt: skip
)
# Seconds, for tests and `--study=quick`.
QUICK = StudySpec(
    name="quick",
    base=dataclasses.replace(compare_spec.QUICK, num_steps=4, eval_tokens=2048),
    variants=("transformer", "llp", "perceiver_ar"),
    seeds=(0, 1),
    equal_targets=("perceiver_ar",),
    short_targets=("llp",),
    long=("transformer",),
    long_factor=2,
    subword=("llp",),
    depths=(1,),
    bucket=16,
    position_windows=4,
    context_targets=8,
    domain_tokens=2048,
)
STUDIES = {s.name: s for s in (SMALL, QUICK)}
