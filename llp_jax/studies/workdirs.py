"""The workdirs of comparison and study runs: which finished or unfinished run can be reused.

A run's workdir holds the spec it started with (`SPEC_FILE`) and, once evaluated, its row
(`ROW_FILE`). A later comparison or study reuses a finished row, or resumes an unfinished run
from its newest checkpoint, only when the run's settings match (`run_settings`); anything else
in the folder is cleared first, so runs of different settings are never mixed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from typing import Any

from llp_jax import paths, strict_json
from llp_jax.storage import WorkdirError

ROW_FILE = "compare_row.json"
SPEC_FILE = "compare_spec.json"  # the spec a run started with: an unfinished run resumes under it


def workdir_name(label: str) -> str:
    """A variant's folder: 'llp (code)' -> 'llp_code', 'llp (bf16)' -> 'llp_bf16'."""
    return re.sub(r"\W+", "_", label).strip("_")


def run_settings(spec: Any) -> dict | None:
    """What one run's result depends on: the spec as JSON (tuples as lists) without `variants`,
    which only says which rows a comparison has (a run of llp is the same run whether the
    comparison has two rows or twelve, so a subset reuses the full comparison's runs)."""
    if spec is None:
        return None
    as_dict = spec if isinstance(spec, dict) else dataclasses.asdict(spec)
    return {k: v for k, v in json.loads(json.dumps(as_dict)).items() if k != "variants"}


def finished_row(spec: Any, workdir: str) -> dict | None:
    """The row a previous run with the same settings left in `workdir`, if any (resume
    support)."""
    path = os.path.join(workdir, ROW_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        row = strict_json.loads(f.read())
    return row if run_settings(row.get("spec")) == run_settings(spec) else None


def clear_stale(spec: Any, workdir: str) -> None:
    """Empties `workdir` unless it holds an unfinished run of `spec` (which then resumes from its
    newest checkpoint): a run of another spec is never mixed into this one."""
    if not os.path.isdir(workdir):
        return
    path = os.path.join(workdir, SPEC_FILE)
    same = False
    if os.path.exists(path) and not os.path.exists(os.path.join(workdir, ROW_FILE)):
        with open(path) as f:
            same = run_settings(json.load(f)) == run_settings(spec)
    if not same:
        shutil.rmtree(workdir)


def ensure_ignored(folder: str) -> None:
    """Makes `folder` git-ignored from the inside (a '*' .gitignore): workdirs hold checkpoints
    that must never be committed, wherever the user points --workroot."""
    blocker = paths.file_in_the_way(folder)
    if blocker is not None:
        raise WorkdirError(
            f"--workroot {folder}: {blocker} is not a folder; give a folder for the runs' workdirs"
        )
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, ".gitignore")
    if not os.path.exists(path):
        paths.write_text(path, "# compare.py workdirs (checkpoints, metrics): never committed\n*\n")
