"""`import llp_jax` is cheap and its top-level names resolve lazily to the library's own."""

import subprocess
import sys

import pytest

import llp_jax
from tests.helpers import REPO


def test_bare_import_loads_no_jax():
    code = "import sys, llp_jax; print('jax' in sys.modules, llp_jax.__version__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()  # fmt: skip
    assert out == ["False", llp_jax.__version__]


def test_top_level_names_are_the_library_objects():
    from llp_jax import errors, evaluation, models, studies

    assert llp_jax.models is models and llp_jax.build is models.build
    assert llp_jax.ModelConfig is models.ModelConfig and llp_jax.LLPError is errors.LLPError
    assert llp_jax.train_and_evaluate is studies.train_and_evaluate
    assert llp_jax.load_model is evaluation.load_model and llp_jax.generate is evaluation.generate
    assert set(llp_jax.__all__) <= set(dir(llp_jax))
    public = {name for name in dir(llp_jax) if not name.startswith("_")}
    own = lambda name: getattr(getattr(llp_jax, name), "__name__", "").startswith("llp_jax.")  # noqa: E731
    assert {name for name in public if not own(name)} <= set(llp_jax.__all__)  # no importlib
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = llp_jax.nope


def test_readme_python_blocks_run():
    """The README's examples are executed, so they cannot rot."""
    text = open(f"{REPO}/README.md", encoding="utf-8").read()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
