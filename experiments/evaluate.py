"""`python -m experiments.evaluate` from a checkout: the absl launcher of llp_jax/cli/evaluate.py
(installed as the `llp-evaluate` console script); see that module for its flags."""

if __name__ == "__main__":  # llp_jax/cli/start.py: restart first, then import
    from llp_jax.cli import start

    start.launch("evaluate")
