"""The Colab notebook executes top to bottom on CPU (smoke size), so it never rots."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import REPO


@pytest.mark.slow
def test_colab_notebook_runs_on_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("LLP_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("LLP_NOTEBOOK_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", "")
    nb = nbformat.read(os.path.join(REPO, "experiments", "colab_tpu.ipynb"), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={
        "metadata": {"path": REPO}}).execute()  # fmt: skip
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "backend: cpu" in outputs
    assert "validation perplexity" in outputs and "standard" in outputs
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert os.path.exists(tmp_path / "work" / "loss.png")
