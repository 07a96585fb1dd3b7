"""`python -m experiments.benchmark_decode` from a checkout: the absl launcher of llp_jax/cli/benchmark_decode.py
(installed as the `llp-benchmark-decode` console script); see that module for its flags."""

if __name__ == "__main__":  # llp_jax/cli/start.py: restart first, then import
    from llp_jax.cli import start

    start.launch("benchmark_decode")
