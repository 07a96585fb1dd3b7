"""A --workdir (or train.init_from) given as another run's checkpoints folder, one of its steps,
its data folder, or a path below them. Training there used to start a second run inside the first one's
checkpoints folder (its checkpoints/, data/, metrics.jsonl among the steps), after which
evaluating that folder "worked"; now every program names the run to give instead, in one line,
before anything is written."""

from __future__ import annotations

import os

from tests.helpers.cli import assert_one_line_error
from tests.reliability.conftest import tiny_args


def _listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_a_workdir_inside_another_runs_checkpoints(server, victim, corpus_file, tmp_path):
    checkpoints = os.path.join(victim, "checkpoints")
    before = _listing(checkpoints)
    step = os.path.join(checkpoints, "4")
    for workdir in (checkpoints, step, os.path.join(step, "deeper")):
        result = server.run("train", *tiny_args(workdir, corpus_file))
        assert_one_line_error(result, f"--workdir {workdir} is inside the checkpoints folder of "
                              f"the run {victim}", f"--workdir={victim} to resume")  # fmt: skip
    for program in ("evaluate", "sample"):
        line = assert_one_line_error(server.run(program, f"--workdir={checkpoints}"))
        assert f"{checkpoints} is the checkpoints folder of the run {victim}; name the run" in line
        line = assert_one_line_error(server.run(program, f"--workdir={step}"))
        assert f"is step 4 of the checkpoints folder of the run {victim}" in line, line
        assert "evaluate --step=4" in line
    fine = server.run("train", *tiny_args(str(tmp_path / "fine"), corpus_file),
                      f"--config.train.init_from={step}")  # fmt: skip
    assert_one_line_error(fine, "train.init_from=", f"init_from={victim}:4")
    assert _listing(checkpoints) == before == ["2", "4"]


def test_a_workdir_inside_another_runs_data_folder(server, victim, corpus_file):
    """W/data holds the run's data record (tokenizer, splits): a run started there mixed its
    checkpoints and metrics into it, and evaluate said 'no checkpoint ... train first'."""
    data = os.path.join(victim, "data")
    before = _listing(data)
    for workdir in (data, os.path.join(data, "deeper")):
        result = server.run("train", *tiny_args(workdir, corpus_file))
        assert_one_line_error(result, f"--workdir {workdir} is inside the data folder of the run "
                              f"{victim}", f"--workdir={victim} to resume")  # fmt: skip
    for program in ("evaluate", "sample"):
        line = assert_one_line_error(server.run(program, f"--workdir={data}"))
        assert f"{data} is the data folder of the run {victim}; name the run" in line, line
    assert _listing(data) == before
