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


def test_a_workdir_inside_the_corpus_folder(server, corpus_file, tmp_path):
    """`--config.data.corpus=. --workdir=runs/a` from a project folder: the resumed run's walk
    read its own workdir as corpus (checkpoint chunks: 'a damaged Zstandard file'; its
    commit_success.txt: text), so it could never resume. A walk leaves workdirs out, in one
    line; `**` globs too; a workdir named as the corpus is one line."""
    from llp_jax.data import user_text

    project = tmp_path / "project"
    (project / "notes").mkdir(parents=True)
    (project / "notes" / "book.txt").write_bytes(open(corpus_file, "rb").read())
    workdir = project / "runs" / "a"
    first = server.run("train", *tiny_args(workdir, project, steps=2))
    assert first.rc == 0, str(first)
    assert (workdir / "checkpoints" / "2").is_dir() and (workdir / "metrics.jsonl").is_file()
    again = server.run("train", *tiny_args(workdir, project, steps=4))
    assert again.rc == 0 and "resumed from step 2" in again.stdout, str(again)
    assert f"left out 1 llp_jax workdir(s) the corpus walk met (a run's checkpoints and logs, " \
           f"not text), e.g. {workdir}" in again.stdout, again.stdout  # fmt: skip
    notes, _ = user_text.read_spec_documents(str(project / "notes"))
    for spec in (project, f"{project}/**/*.txt", f"{project}/**"):
        assert user_text.read_spec_documents(str(spec))[0] == notes, spec
    named = server.run("evaluate", "--workdir", str(workdir), f"--text={workdir}")
    assert_one_line_error(named, f"Corpus folder {workdir} is an llp_jax workdir (a run's "
                          "checkpoints and logs), not text")  # fmt: skip
