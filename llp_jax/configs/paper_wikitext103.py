"""The paper's Wikitext-103 runs: LLP with 18 layers (172.12M) or 24 layers (214.65M), and the
PerceiverAR / V1 / V2 / V3 models they are compared with; n = 2048, LLP with S = 8 segments.

The argument picks the model: llp18 (default), llp24, perceiver_ar, enhanced_v1, enhanced_v2,
enhanced_v3. The data: `wiki.{train,valid,test}.tokens` in a manual folder (or downloaded when
online), prepared once into `data_dir` and tokenised there with a 28996-piece SentencePiece
stand-in for BERT's WordPiece (paper_recipe.sentencepiece_stand_in).

GPU (one device; see WORKSPACE.md for the CUDA jax install):
  python -m experiments.train --config=llp_jax/configs/paper_wikitext103.py:llp18 \
    --config.data.manual_dir=$HOME/data/wikitext-103 --config.data.data_dir=$HOME/tfds \
    --workdir=runs/wt103_llp18

TPU VM / Colab TPU (`pip install -e . "jax[tpu]"`; batch 16 = 8 cores x 2 micro-batches):
  python -m experiments.train --config=llp_jax/configs/paper_wikitext103.py:llp24 \
    --config.data.data_dir=$HOME/tfds --config.model.compute_dtype=bfloat16 \
    --workdir=runs/wt103_llp24
"""

from llp_jax.configs.paper_recipe import paper_config, paper_model, sentencepiece_stand_in


def get_config(arg: str | None = None):
    arg = arg or "llp18"  # None: a config file of yours passing its own default on
    return sentencepiece_stand_in(paper_config(paper_model(arg), "tfds:wikitext103"))
