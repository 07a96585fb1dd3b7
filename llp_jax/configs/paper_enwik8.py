"""Character-level enwik8 (90M / 5M / 5M bytes) with the paper's LLP layouts at byte level.

The argument picks the model: llp24 (default), llp18, perceiver_ar, enhanced_v1, enhanced_v2,
enhanced_v3, each with the 259-id byte vocabulary. The authors' code uses Transformer-XL's
enwik8 vocabulary, the 204 byte values other than the newline that occur in the file, numbered
by count: the same tokens but for the newlines, so bits per byte are comparable; our embedding
just has 55 rows that are never used. A `_txl` suffix (llp24_txl, perceiver_ar_txl, ...) uses
their numbering instead (data.tokenizer='txl_bytes', counted from the data; vocab_size 0: the
tokenizer's 204): their checkpoints, imported with experiments.convert, need it, and bits per
token are then their BPC (newlines are not in their stream).

GPU:
  python -m experiments.train --config=llp_jax/configs/paper_enwik8.py \
    --config.data.data_dir=$HOME/tfds --workdir=runs/enwik8_llp24

TPU VM / Colab TPU (`pip install -e . "jax[tpu]"`):
  python -m experiments.train --config=llp_jax/configs/paper_enwik8.py:llp24 \
    --config.data.data_dir=$HOME/tfds --config.model.compute_dtype=bfloat16 \
    --workdir=runs/enwik8_llp24

Offline, put enwik8 (or enwik8.zip) in a folder and add --config.data.manual_dir=FOLDER.
"""

from llp_jax.configs.paper_recipe import paper_config, paper_model
from llp_jax.data import ByteTokenizer


def get_config(arg: str | None = None):
    arg = arg or "llp24"  # None: a config file of yours passing its own default on
    name, txl = arg.removesuffix("_txl"), arg.endswith("_txl")
    config = paper_config(paper_model(name, vocab_size=ByteTokenizer.vocab_size), "tfds:enwik8")
    config.data.tokenizer = "txl_bytes" if txl else "byte"
    if txl:
        config.model.vocab_size = 0  # the tokenizer's: 204 on enwik8
    return config
