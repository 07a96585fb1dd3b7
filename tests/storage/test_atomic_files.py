"""`paths.atomic_file` / `write_bytes` on every kind of path a user names as an output (--out,
a results page): a file is replaced whole or not at all; a symbolic link keeps pointing at its
file; a device, a pipe and the stream links are written into, never renamed over (as root the
rename replaced the machine's /dev/null with a regular file)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest

from llp_jax import paths
from llp_jax.interop import torch_format
from tests.helpers import REPO


def _leftovers(folder) -> list[str]:
    return [name for name in os.listdir(folder) if ".tmp" in name]


def test_a_file_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "deep" / "report.json"
    paths.write_text(target, "old")
    assert target.read_text() == "old"
    with pytest.raises(RuntimeError), paths.atomic_file(target) as f:
        f.write(b"half of the new")
        raise RuntimeError("the writer fails")
    assert target.read_text() == "old" and not _leftovers(target.parent)
    paths.write_text(target, "new")
    assert target.read_text() == "new" and not _leftovers(target.parent)


def test_a_symbolic_link_keeps_pointing_at_its_file(tmp_path):
    real = tmp_path / "results" / "page.md"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "page.md"
    link.symlink_to(real)
    paths.write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new" and not _leftovers(tmp_path) and not _leftovers(real.parent)


def test_a_device_stays_a_device():
    before = os.stat(os.devnull)
    paths.write_text(os.devnull, "discarded")
    torch_format.save({"w": np.ones(3, np.float32)}, os.devnull)
    after = os.stat(os.devnull)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


def test_a_named_pipe_is_written_into(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    paths.write_bytes(fifo, b"through the pipe")
    reader.join(timeout=30)
    assert received == [b"through the pipe"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.parametrize("name", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"])
def test_stream_links_append_after_what_was_printed(tmp_path, name):
    """`--out=/dev/stdout > log.txt`: the report follows the printed lines; a rename would have
    replaced the link (as root) or the log file, and a truncating open would lose the log."""
    log = tmp_path / "log.txt"
    code = (f"from llp_jax import paths\nprint('printed first')\n"
            f"paths.write_text({name!r}, 'the report')\nprint('printed after')")  # fmt: skip
    with open(log, "w") as out:
        subprocess.run([sys.executable, "-c", code], stdout=out, check=True, cwd=REPO)
    assert log.read_text() == "printed first\nthe reportprinted after\n"
    assert os.path.islink("/dev/stdout")


def test_torch_files_are_written_atomically_through_links(tmp_path):
    real = tmp_path / "weights.pt"
    real.write_bytes(b"old")
    link = tmp_path / "latest.pt"
    link.symlink_to(real)
    torch_format.save({"w": np.arange(4, dtype=np.float32)}, link)
    assert link.is_symlink() and real.read_bytes()[:2] == b"PK" and not _leftovers(tmp_path)
    loaded = torch_format.load(str(link))
    np.testing.assert_array_equal(loaded["w"], np.arange(4, dtype=np.float32))
