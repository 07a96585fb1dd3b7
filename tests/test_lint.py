"""The tree stays clean under the pinned ruff rules (pyproject.toml) and its formatter."""

import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(command):
    # `python -m ruff`: the venv's ruff, whether or not the venv is on PATH (scripts/test.sh).
    done = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=REPO, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert "No module named ruff" not in done.stderr, "pip install -r requirements-dev.txt"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
