"""The prepared accelerator check runs end to end (at toy sizes, on CPU, its kernels falling back
with the reason logged), so it works the day a GPU or TPU is at hand."""

import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.mark.slow
def test_device_check_smoke(tmp_path):
    out = tmp_path / "check.md"
    done = subprocess.run([sys.executable, "tools/device_check.py", "--smoke", f"--out={out}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    table = out.read_text()
    assert table.count("== xla:") == 14  # every model, clean and code-faithful
    assert "bf16 train step" in table and "tokens/s" in table and "NO" not in table
