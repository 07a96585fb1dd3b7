"""The Colab notebook executes top to bottom (smoke size): in this environment, and in a fresh
virtualenv that looks like Colab (a `google.colab` module, and a jax of another version that the
notebook's install must leave alone), cloning the repository from its form field."""

import json
import os
import subprocess
import sys
import sysconfig

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import REPO

NOTEBOOK = os.path.join(REPO, "experiments", "colab_tpu.ipynb")
COLAB_JAX = "0.10.2.dev0+colab"  # the jax version "Colab ships", different from our pin


def _outputs(nb):
    return "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )


@pytest.mark.slow
def test_colab_notebook_runs_on_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("LLP_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("LLP_NOTEBOOK_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", "")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={
        "metadata": {"path": REPO}}).execute()  # fmt: skip
    outputs = _outputs(nb)
    assert "backend: cpu" in outputs and "'compute_dtype': 'float32'" in outputs
    assert "validation perplexity" in outputs and "standard" in outputs
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert os.path.exists(tmp_path / "work" / "loss.png")


def _colab_like_venv(root) -> str:
    """A fresh venv whose jax reports another version, with a `google.colab` module; the other
    packages come from this environment (a .pth file), so nothing is downloaded."""
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    python = os.path.join(root, "bin", "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    ours = sysconfig.get_paths()["purelib"]
    with open(os.path.join(site, "here.pth"), "w") as f:
        f.write(ours + "\n")
    # "Colab's jax": the same code under a different version, installed in the venv itself.
    dist = next(d for d in os.listdir(ours) if d.startswith("jax-") and d.endswith(".dist-info"))
    target = os.path.join(site, f"jax-{COLAB_JAX}.dist-info")
    os.makedirs(target)
    for name in os.listdir(os.path.join(ours, dist)):
        if os.path.isdir(os.path.join(ours, dist, name)):  # licenses/: not needed
            continue
        text = open(os.path.join(ours, dist, name), "rb").read()
        if name == "METADATA":
            lines = text.decode().splitlines(keepends=True)
            lines = [f"Version: {COLAB_JAX}\n" if x.startswith("Version:") else x for x in lines]
            text = "".join(lines).encode()
        if name != "RECORD":
            open(os.path.join(target, name), "wb").write(text)
    open(os.path.join(target, "RECORD"), "w").close()
    os.makedirs(os.path.join(site, "google", "colab"))
    with open(os.path.join(site, "google", "colab", "__init__.py"), "w") as f:
        f.write('"""Stands in for Colab\'s own module in tests."""\n')
    return python


@pytest.mark.slow
def test_colab_branch_keeps_colab_jax_and_runs(tmp_path):
    python = _colab_like_venv(tmp_path / "venv")
    version = lambda: subprocess.run(  # noqa: E731
        [python, "-c", "import importlib.metadata as m; print(m.version('jax'))"],
        check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert version() == COLAB_JAX
    kernels = tmp_path / "kernels" / "kernels" / "colab"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "colab-like", "language": "python"}))  # fmt: skip
    nb = nbformat.read(NOTEBOOK, as_version=4)
    setup = nb.cells[1]
    assert 'REPO_URL = ""  # @param' in setup.source  # the form field
    setup.source = setup.source.replace('REPO_URL = ""', f'REPO_URL = "{REPO}"')
    home = tmp_path / "content"  # Colab's working directory
    home.mkdir()
    env = {
        "LLP_NOTEBOOK_SMOKE": "1", "LLP_NOTEBOOK_WORKDIR": str(tmp_path / "work"),
        "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "JUPYTER_PATH": str(tmp_path / "kernels"),
        "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",  # nothing may be fetched
    }  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=900, kernel_name="colab",
                       resources={"metadata": {"path": str(home)}}).execute()  # fmt: skip
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    outputs = _outputs(nb)
    assert f"kept: jax {COLAB_JAX}" in outputs  # the install left Colab's jax alone
    assert "llp_jax_repo" in outputs and "validation perplexity" in outputs
    assert version() == COLAB_JAX
