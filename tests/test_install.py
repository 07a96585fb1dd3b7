"""`pip install .` gives a package with its launchers as console scripts that work from any
folder: a wheel built without setuptools warnings, installed into a fresh virtualenv."""

import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from tests.helpers import REPO

SCRIPTS = ("llp-train", "llp-evaluate", "llp-sample", "llp-convert", "llp-prepare-data",
           "llp-compare", "llp-benchmark", "llp-model-summary")  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out),
         REPO], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "Deprecat" not in log and "SetuptoolsWarning" not in log, log[-3000:]
    (path,) = [os.path.join(out, f) for f in os.listdir(out) if f.endswith(".whl")]
    return path


def test_the_wheel_holds_the_package_its_configs_and_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "llp_jax/cli/train.py" in names and "llp_jax/configs/tiny.py" in names
    assert "llp_jax/data/corpora/austen_novels.txt.xz" in names
    assert "llp_jax/kernels/blas_batched_matmul.cc" in names  # built on first use
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "experiments/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in SCRIPTS:
        assert f"{script} = llp_jax.cli." in text


@pytest.mark.slow
def test_console_scripts_from_a_fresh_venv(wheel, tmp_path, corpus_file):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python, bin_dir = str(venv / "bin" / "python"), venv / "bin"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    # The dependencies come from this environment (a .pth file): nothing is downloaded.
    with open(os.path.join(site, "deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel],
                   check=True, timeout=300)  # fmt: skip
    for script in SCRIPTS:
        assert (bin_dir / script).exists(), script
    work = tmp_path / "elsewhere"  # not the checkout: configs come from the installed package
    work.mkdir()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "PYTHONPATH": ""}
    train = [str(bin_dir / "llp-train"), "--config=llp_jax/configs/tiny.py:llp",
             "--workdir=run", f"--config.data.corpus={corpus_file}", "--config.model.seq_len=64",
             "--config.model.segment_len=16", "--config.model.d_model=32",
             "--config.train.num_steps=2", "--config.train.batch_size=4",
             "--config.train.eval_every=2", "--config.train.eval_batches=1",
             "--config.sample.num_tokens=4"]  # fmt: skip
    done = subprocess.run(train, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "validation perplexity" in done.stdout
    located = subprocess.run([python, "-c", "import llp_jax; print(llp_jax.__file__)"], cwd=work,
                             env=env, capture_output=True, text=True).stdout  # fmt: skip
    assert located.startswith(site)  # the installed copy ran, not the checkout
    kernel = subprocess.run([python, "-c", "from llp_jax.kernels import blas; print(blas.status())"],
                            cwd=work, env={**env, "LLP_JAX_KERNEL_CACHE": str(tmp_path / "kc")},
                            capture_output=True, text=True, timeout=300).stdout  # fmt: skip
    assert kernel.startswith("in use"), kernel  # its source came with the wheel
    evaluate = subprocess.run([str(bin_dir / "llp-evaluate"), "--workdir=run", "--max_tokens=512",
                               "--protocols=standard"], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
    assert evaluate.returncode == 0 and "| standard |" in evaluate.stdout, evaluate.stderr[-2000:]
    prepare = subprocess.run([str(bin_dir / "llp-prepare-data"),
                              "--config=llp_jax/configs/tiny.py:llp",
                              f"--config.data.corpus={corpus_file}"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert prepare.returncode == 0 and "ready" in prepare.stdout, prepare.stderr[-2000:]
