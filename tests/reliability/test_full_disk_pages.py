"""A results page written onto a full disk (a real one: a full tmpfs in a private mount
namespace): one `error:` line naming the page, and no partial page left behind."""

import sys

import pytest

from tests.helpers.cli import assert_one_line_error, cli_env
from tests.reliability import faults


def test_a_page_on_a_full_disk_is_one_line_naming_it(tmp_path):
    prefix = faults.namespace_prefix()
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare): cannot make a small disk")
    disk = tmp_path / "disk"
    disk.mkdir()
    setup = (f"mount -t tmpfs -o size=32k tmpfs '{disk}'\n"
             f"head -c 32768 /dev/zero > '{disk}/fill' || true")  # fmt: skip
    command = [sys.executable, "-m", "experiments.model_summary", f"--out={disk}/zoo.md"]
    result = faults.in_namespace(prefix, setup, command, cli_env(),
                                 after=f"echo left: $(ls -A '{disk}')")  # fmt: skip
    assert_one_line_error(result, f"{disk}/zoo.md", "no space left on device")
    assert result.stdout.splitlines()[-1] == "left: fill", str(result)  # no partial page
