"""Training: typed train/mesh sections, device mesh and logical-axis table, sharded train step,
the trainer loop. (`train_and_evaluate`, which also evaluates, is in llp_jax.studies.)

train(config, workdir) -> (run, progress)     setup + the whole loop
setup(config, workdir) -> Run; train_loop(run)  the same in two steps (notebooks, tests)
"""

from llp_jax.training.config import (
    MeshConfig,
    TrainConfig,
    default_mesh_config,
    default_train_config,
)
from llp_jax.training.interruptions import TrainingInterrupted
from llp_jax.training.mesh import LOGICAL_AXIS_RULES, make_mesh
from llp_jax.training.optimizer import make_optimizer, make_schedule
from llp_jax.training.trainer import NonFiniteError, Run, setup, train, train_loop

__all__ = [
    "LOGICAL_AXIS_RULES",
    "MeshConfig",
    "NonFiniteError",
    "Run",
    "TrainConfig",
    "TrainingInterrupted",
    "default_mesh_config",
    "default_train_config",
    "make_mesh",
    "make_optimizer",
    "make_schedule",
    "setup",
    "train",
    "train_loop",
]
