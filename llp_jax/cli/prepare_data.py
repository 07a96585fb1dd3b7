"""Prepares a config's dataset once: builds a tfds dataset, trains its tokenizer and tokenises every
split, so that the processes of a multi-host run (or later runs) find everything ready.

  python -m experiments.prepare_data --config=llp_jax/configs/paper_wikitext103.py:llp18 \
      --config.data.manual_dir=$HOME/data/wikitext-103 --config.data.data_dir=$HOME/tfds
  llp-prepare-data --config=...          # the console script of an installed llp_jax

Run it on one host (or once on a shared filesystem) before launching the run on all hosts. For
text-file corpora it only checks that the data loads and prints its summary.
"""

from ml_collections import config_flags

from llp_jax.cli import common
from llp_jax.data import build_datasets
from llp_jax.models import ModelConfig

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")


def main(argv):
    common.start(argv, devices=False)
    with common.one_line_errors():
        config = _CONFIG.value
        if config is None:
            raise common.UsageError("--config is required")
        model = ModelConfig.from_any({**dict(config.model), "vocab_size": 1 << 20})
        data = build_datasets(config.data, model.seq_len, process_index=0, process_count=1)
    print(data.summary())
    print("ready: every process of a run with this config.data reads it as it is")


def entry():
    """The `llp-prepare-data` console script."""
    common.run(main)


if __name__ == "__main__":
    entry()
