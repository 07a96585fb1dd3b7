"""The experiment config every file in llp_jax/configs starts from.

An experiment config is an `ml_collections.ConfigDict` with sections:
  model  - fields of `llp_jax.models.ModelConfig` (vocab_size 0 = the tokenizer's);
  data   - `llp_jax.data.default_data_config()`;
  train  - `llp_jax.training.optimizer.default_train_config()`;
  mesh   - (data, fsdp, tensor) sizes, -1 = the remaining devices;
  sample - the prompt and sampling settings of the end-of-run sample.
Any field can be overridden on the command line: `--config.train.num_steps=100`.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from llp_jax.data import default_data_config
from llp_jax.models import ModelConfig
from llp_jax.training.mesh import default_mesh_config
from llp_jax.training.optimizer import default_train_config


def model_section(cfg: ModelConfig) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dataclasses.asdict(cfg))


def get_base_config(model: ModelConfig) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = model_section(model)
    config.model.vocab_size = 0
    config.data = default_data_config()
    config.train = default_train_config()
    config.mesh = default_mesh_config()
    config.sample = ml_collections.ConfigDict(
        dict(
            prompt="It is a truth universally acknowledged",
            num_tokens=200,
            temperature=0.8,
            top_k=40,
            seed=0,
        )
    )
    return config
