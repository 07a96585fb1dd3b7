"""Tiny CPU presets for every zoo model (d=64, 2 layers, n=128, byte tokens).

  python -m experiments.train --config=llp_jax/configs/tiny.py:llp --workdir=workdir/tiny_llp
  python -m experiments.train --config=llp_jax/configs/tiny.py:perceiver_ar,faithful ...

The argument is a model name (transformer, perceiver_ar, enhanced_v1, enhanced_v2, enhanced_v3,
llp, s2attn), optionally followed by ",faithful" for the authors' code-faithful knobs.
"""

from llp_jax.configs.base import get_base_config
from llp_jax.models import ConfigError, tiny


def get_config(arg: str | None = None):
    arg = arg or "llp"  # None: a config file of yours passing its own default on
    name, _, variant = arg.partition(",")
    if variant not in ("", "faithful"):
        raise ConfigError(
            f"tiny.py:{arg}: the variant after ',' must be 'faithful', not {variant!r}"
        )
    config = get_base_config(tiny(name, faithful=variant == "faithful"))
    config.train.update(
        batch_size=8,
        num_steps=200,
        learning_rate=2e-3,
        warmup_steps=20,
        eval_every=50,
        eval_batches=4,
        checkpoint_every=50,
        log_every=10,
    )
    return config
