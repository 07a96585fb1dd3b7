"""An experiment config whose model and data sections are those of an existing workdir: to continue
training a converted authors' checkpoint, or any run, without restating its architecture.

  python -m experiments.train --config=llp_jax/configs/from_workdir.py:workdir/ecp \
      --workdir=workdir/ecp --config.train.num_steps=600000

The training section is the authors' recipe (AdamW 2e-4 halved every 100k steps, batch 8 x 2);
override any field with --config.train.<field>=...
"""

import os

from llp_jax.configs.paper_recipe import paper_config
from llp_jax.errors import ConfigError
from llp_jax.models import ModelConfig
from llp_jax.storage import committed_steps, newest_readable, read_meta


def get_config(workdir: str):
    directory = os.path.join(os.path.expanduser(workdir), "checkpoints")
    steps = committed_steps(directory)
    if not steps:
        raise ConfigError(f"from_workdir.py:{workdir}: no checkpoint in {directory}; name a "
                          "trained run's workdir, or one experiments.convert wrote")  # fmt: skip
    _, meta = newest_readable(directory, lambda step: read_meta(directory, step))
    config = paper_config(ModelConfig.from_any(meta["model"]), meta["data"]["corpus"])
    config.data.update(meta["data"])
    return config
