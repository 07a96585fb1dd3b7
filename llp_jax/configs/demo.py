"""The README's main job: a small LLP on the embedded Jane Austen corpus, sized for a CPU.

  python -m experiments.train --config=llp_jax/configs/demo.py --workdir=workdir/demo

Byte-level tokens, n = 256 in 8 segments of 32, 4 layers of width 128; trains, reports validation
perplexity against the unigram baseline, writes loss.png and prints a sample.
"""

from llp_jax.configs.base import get_base_config
from llp_jax.models import ModelConfig


def get_config():
    config = get_base_config(
        ModelConfig(name="llp", seq_len=256, segment_len=32, num_layers=4, d_model=128, num_heads=4)
    )
    config.data.tokenizer = "byte"
    config.sample.prompt = "It is a truth universally acknowledged"
    config.train.update(
        batch_size=16,
        num_steps=400,
        learning_rate=2e-3,
        warmup_steps=50,
        eval_every=100,
        eval_batches=8,
        checkpoint_every=100,
        log_every=10,
        weight_decay=0.1,
    )
    return config
