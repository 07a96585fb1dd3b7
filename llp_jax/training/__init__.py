"""Training: device mesh and logical-axis table, sharded train step, Orbax checkpoints, trainer.

train_and_evaluate(config, workdir)   what `experiments/train.py` runs
setup(config, workdir) -> Run; train_loop(run)   the same in two steps (notebooks, tests)
"""

from llp_jax.training.checkpoint import Checkpointer, CheckpointNotFoundError
from llp_jax.training.mesh import LOGICAL_AXIS_RULES, default_mesh_config, make_mesh
from llp_jax.training.optimizer import default_train_config, make_optimizer, make_schedule
from llp_jax.training.trainer import NonFiniteError, Run, setup, train_and_evaluate, train_loop

__all__ = [
    "LOGICAL_AXIS_RULES",
    "CheckpointNotFoundError",
    "Checkpointer",
    "NonFiniteError",
    "Run",
    "default_mesh_config",
    "default_train_config",
    "make_mesh",
    "make_optimizer",
    "make_schedule",
    "setup",
    "train_and_evaluate",
    "train_loop",
]
