"""Trains a zoo model from a config file.

  python -m experiments.train --config=llp_jax/configs/demo.py --workdir=workdir/demo
  python -m experiments.train --config=llp_jax/configs/tiny.py:transformer \
      --config.train.num_steps=100 --workdir=workdir/tiny_transformer

Rerunning with the same --workdir resumes from its newest intact checkpoint; --noresume starts
a fresh run (the previous one is kept in <workdir>/previous_runs/). Ctrl-C or SIGTERM saves the
step in progress and exits (130 / 0); a second Ctrl-C aborts at once.
"""

import sys

from absl import flags
from ml_collections import config_flags

from llp_jax.cli import common
from llp_jax.studies import train_and_evaluate
from llp_jax.training.distributed import initialize_distributed
from llp_jax.training.interruptions import EXIT_CODES, TrainingInterrupted

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics and plots go here.")
_RESUME = flags.DEFINE_bool(
    "resume", True, "Resume from the newest checkpoint (--noresume: a fresh run, the old one kept)."
)
_ALLOW = flags.DEFINE_bool(
    "allow_data_change", False, "Resume on data other than the workdir's (its tokenizer kept)."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-host: host:port of process 0 (see WORKSPACE.md)."
)
_NUM_PROCESSES = common.count_flag(
    "num_processes", None, "Multi-host: number of processes.", lower_bound=None
)
_PROCESS_ID = common.count_flag(
    "process_id", None, "Multi-host: this process' index.", lower_bound=None
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Multi-host with auto-detected cluster (TPU pod, SLURM, ...)."
)
_TIMEOUT = common.count_flag(
    "distributed_timeout",
    300,
    "Multi-host: seconds to wait for every process to join.",
    lower_bound=1,
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    common.start(argv, devices=False)
    with common.one_line_errors():
        if _COORDINATOR.value or _DISTRIBUTED.value:
            initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                   timeout_s=_TIMEOUT.value)  # fmt: skip
        elif _NUM_PROCESSES.present or _PROCESS_ID.present or _TIMEOUT.present:
            raise common.UsageError(
                "--num_processes, --process_id and --distributed_timeout start a multi-host run "
                "only with --coordinator_address=host:port (or --distributed where a cluster "
                "supplies it); without either this would train as one process"
            )
        try:
            result = train_and_evaluate(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value,
                                        allow_data_change=_ALLOW.value)  # fmt: skip
        except TrainingInterrupted:  # saved, and the loop said so
            sys.exit(EXIT_CODES["SIGINT"])
    if result.get("interrupted") in EXIT_CODES:
        sys.exit(EXIT_CODES[result["interrupted"]])  # saved; the shell's code for the signal


def entry():
    """The `llp-train` console script."""
    common.run(main)


if __name__ == "__main__":
    entry()
