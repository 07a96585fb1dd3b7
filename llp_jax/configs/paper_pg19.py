"""The paper's PG-19 run: LLP with 24 layers, 6 heads (214.65M), n = 2048, S = 8.

The argument picks the model: llp24 (default; the paper's PG-19 model), llp18, perceiver_ar,
enhanced_v1, enhanced_v2, enhanced_v3. The data: a local copy of PG-19 (train/, validation/,
test/ folders of <book_id>.txt and metadata.csv, e.g. `gsutil -m cp -r gs://deepmind-gutenberg/*
$HOME/data/pg19`), prepared once into `data_dir` (~11 GB of text, so tokenising it is a long
one-time pass) with the 28996-piece SentencePiece stand-in for BERT's
WordPiece. With TensorFlow installed, `--config.data.corpus=tfds-catalog:pg19` reads the
bucket through tfds' own builder instead of a manual copy.

GPU:
  python -m experiments.train --config=llp_jax/configs/paper_pg19.py \
    --config.data.manual_dir=$HOME/data/pg19 --config.data.data_dir=$HOME/tfds \
    --workdir=runs/pg19_llp24

TPU VM / Colab TPU (`pip install -e . "jax[tpu]"`):
  python -m experiments.train --config=llp_jax/configs/paper_pg19.py:llp24 \
    --config.data.manual_dir=$HOME/data/pg19 --config.data.data_dir=$HOME/tfds \
    --config.model.compute_dtype=bfloat16 --workdir=runs/pg19_llp24
"""

from llp_jax.configs.paper_recipe import paper_config, paper_model, sentencepiece_stand_in


def get_config(arg: str | None = None):
    arg = arg or "llp24"  # None: a config file of yours passing its own default on
    return sentencepiece_stand_in(paper_config(paper_model(arg), "tfds:pg19"))
