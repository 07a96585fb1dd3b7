"""Prints every zoo model's parameter count and jitted forward time at the tiny preset.

python -m experiments.model_summary [--batch_size=2] [--out=experiments/results/zoo.md]
"""

from llp_jax import paths
from llp_jax.cli import common
from llp_jax.models import count_params, paper_llp
from llp_jax.studies.zoo import zoo_table

_BATCH = common.count_flag("batch_size", 2, "Batch size of the timed forward pass.", lower_bound=1)
_OUT = common.output_flag("out", "", "Also write the table to this Markdown file.")


def main(argv):
    common.start(argv)
    table = zoo_table(_BATCH.value)
    paper = (
        f"\nPaper LLP (code-faithful, d=768, V=28996): 18 layers/12 heads "
        f"{count_params(paper_llp()):,} parameters; 24 layers/6 heads "
        f"{count_params(paper_llp(24, 6)):,}."
    )
    print(table + paper)
    if _OUT.value:
        paths.write_text(_OUT.value, table + "\n" + paper + "\n")


def entry():
    """The `llp-model-summary` console script."""
    common.run(main)


if __name__ == "__main__":
    entry()
