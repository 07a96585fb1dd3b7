"""`python -m experiments.train` from a checkout: the absl launcher of llp_jax/cli/train.py
(installed as the `llp-train` console script); see that module for its flags."""

if __name__ == "__main__":  # llp_jax/cli/start.py: restart first, then import
    from llp_jax.cli import start

    start.launch("train")
