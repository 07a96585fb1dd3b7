"""The experiment config every file in llp_jax/configs starts from.

An experiment config is an `ml_collections.ConfigDict` with sections, each the ConfigDict form of
a typed dataclass that holds its defaults and checks (see each class for every field):
  model  - `llp_jax.models.ModelConfig` (vocab_size 0 = the tokenizer's);
  data   - `llp_jax.data.DataConfig`;
  train  - `llp_jax.training.TrainConfig`;
  mesh   - `llp_jax.training.MeshConfig`: (data, fsdp, sequence, tensor), -1 = remaining devices;
  sample - `llp_jax.evaluation.SampleConfig`: the end-of-run sample.
Any field can be overridden on the command line: `--config.train.num_steps=100`.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from llp_jax import schema
from llp_jax.data import default_data_config
from llp_jax.evaluation.sample_settings import SampleConfig
from llp_jax.models import ModelConfig
from llp_jax.training import default_mesh_config, default_train_config


def model_section(cfg: ModelConfig) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dataclasses.asdict(cfg))


def get_base_config(model: ModelConfig) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = model_section(model)
    config.model.vocab_size = 0
    config.data = default_data_config()
    config.train = default_train_config()
    config.mesh = default_mesh_config()
    config.sample = schema.to_configdict(SampleConfig())
    return config
