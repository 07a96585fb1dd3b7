"""Studies: what uses both training and evaluation. The end-of-run report and
`train_and_evaluate` (report.py), the same-budget comparison of the zoo (compare.py), the
train-step scaling benchmark (benchmark.py) and the zoo table (zoo.py)."""

from llp_jax.studies.report import final_report, train_and_evaluate

__all__ = ["final_report", "train_and_evaluate"]
