"""The llp_jax workdirs a corpus walk meets, and leaves out.

A run's checkpoints and logs are its output, not text: a workdir kept inside the corpus folder
(`--config.data.corpus=. --workdir=runs/x`) made the resumed run read its own checkpoint files
(an OCDBT chunk looks like a damaged Zstandard file; `commit_success.txt` is text) as corpus.
A walk (a folder, a `**` glob, a bucket's folder) leaves each such folder out, said in one line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

_MET: list[str] = []  # the workdirs the walks of one corpus spec left out


def is_workdir(folder: str, names: Sequence[str] | None = None) -> bool:
    """An llp_jax run's workdir: its data record, or its checkpoints beside its metrics log or
    lock. `names`: the folder's file paths relative to it where they are known (a bucket's
    listing), instead of asking the filesystem."""
    if names is not None:
        have = set(names)
        checkpoints = any(n.startswith("checkpoints/") for n in have)
        return "data/record.json" in have or checkpoints and bool({"metrics.jsonl", ".lock"} & have)
    join = lambda *p: os.path.join(folder, *p)  # noqa: E731
    return os.path.isfile(join("data", "record.json")) or os.path.isdir(join("checkpoints")) and (
        os.path.isfile(join("metrics.jsonl")) or os.path.isfile(join(".lock")))  # fmt: skip


def workdirs_among(relatives: Sequence[str]) -> list[str]:
    """The outermost workdirs (as prefixes 'a/b/') among a walk's relative file paths."""
    below: dict[str, list[str]] = {}
    for rel in relatives:
        names = rel.split("/")
        for i in range(1, len(names)):
            below.setdefault("/".join(names[:i]) + "/", []).append("/".join(names[i:]))
    found = {prefix for prefix, inside in below.items() if is_workdir(prefix, inside)}
    return sorted(p for p in found if not any(p != q and p.startswith(q) for q in found))


def note(workdirs: Sequence[str]) -> None:
    _MET.extend(workdirs)


def say_left_out(*, quiet: bool = False) -> None:
    """One line for the workdirs the walks left out (then forgotten: said once per spec)."""
    if _MET and not quiet:
        print(f"[llp_jax.data] left out {len(_MET)} llp_jax workdir(s) the corpus walk met (a "
              f"run's checkpoints and logs, not text), e.g. {_MET[0]}")  # fmt: skip
        _MET.clear()
