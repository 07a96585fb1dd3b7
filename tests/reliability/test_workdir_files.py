"""The workdir's own files beside its checkpoints, met as a user meets them: summary.json (kept
only where it is of the checkpoints' step), metrics.jsonl (one row per step), the kept evaluation
splits (mended by the training command), a folder where one of them belongs, and the step that
sample and evaluate read. Each case runs the real programs as subprocesses."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import llp_jax
from llp_jax.storage import committed_steps
from tests.helpers.cli import assert_one_line_error
from tests.reliability import faults
from tests.reliability.conftest import TINY, tiny_args


def test_a_finished_run_rerun_keeps_its_summary(server, victim, corpus_file):
    summary = open(os.path.join(victim, "summary.json"), "rb").read()
    result = server.run("train", *tiny_args(victim, corpus_file))
    assert result.rc == 0 and "nothing to train" in result.stdout, str(result)
    assert open(os.path.join(victim, "summary.json"), "rb").read() == summary
    assert faults.metrics_steps(victim) == [1, 2, 3, 4]


@pytest.mark.parametrize("lost", [("metrics.jsonl", "summary.json"), ("summary.json",)])
def test_a_finished_run_without_its_summary_reports_a_real_perplexity(lost, server, victim,
                                                                      corpus_file):  # fmt: skip
    """The final checkpoint is there but the summary (and the metrics with the last validation)
    is not: the rerun trains nothing and evaluates the final parameters again, never 'nan'."""
    want = json.load(open(os.path.join(victim, "summary.json")))["val_ppl"]
    for name in lost:
        os.remove(os.path.join(victim, name))
    result = server.run("train", *tiny_args(victim, corpus_file))
    assert result.rc == 0, str(result)
    assert "nan" not in result.stdout, result.stdout
    summary = json.load(open(os.path.join(victim, "summary.json")))
    assert summary["steps_run"] == 0
    assert abs(summary["val_ppl"] - want) < 1e-4 * want
    assert f"validation perplexity {want:.3f}" in result.stdout


@pytest.mark.parametrize("stale", ["earlier_step", "no_step_recorded", "cut_short"])
def test_a_rerun_never_returns_the_summary_of_an_earlier_step(stale, server, victim, corpus_file):
    """The summary is of step 4, the checkpoints went on to step 6 (a run stopped between its
    last checkpoint and its report: preempted, Ctrl-C, a crash; or a summary written before
    summaries named their step; or one cut short). A rerun with nothing to train reports step 6,
    not step 4."""
    path = os.path.join(victim, "summary.json")
    old = json.load(open(path))
    result = server.run("train", *tiny_args(victim, corpus_file, steps=6))
    assert result.rc == 0, str(result)
    want = json.load(open(path))
    assert (old["step"], want["step"]) == (4, 6) and want["val_ppl"] != old["val_ppl"]
    if stale == "no_step_recorded":
        del old["step"]
    with open(path, "w") as f:
        f.write(json.dumps(old)[: 40 if stale == "cut_short" else None])
    result = server.run("train", *tiny_args(victim, corpus_file, steps=6))
    assert result.rc == 0 and "nothing to train" in result.stdout, str(result)
    assert f"validation perplexity {want['val_ppl']:.3f}" in result.stdout, result.stdout
    summary = json.load(open(path))
    assert summary["step"] == 6 and summary["steps_run"] == 0
    assert abs(summary["val_ppl"] - want["val_ppl"]) < 1e-4 * want["val_ppl"]
    assert faults.metrics_steps(victim) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("name, program", [
    ("summary.json", "train"), ("loss.png", "train"), ("metrics.jsonl", "train"),
    (os.path.join("data", "validation.npy"), "evaluate"),
])  # fmt: skip
def test_a_folder_where_a_workdir_file_belongs_is_named_with_the_fix(name, program, server,
                                                                     victim, corpus_file):  # fmt: skip
    """A folder at one of the workdir's own file names: one line naming it and what to do (not
    "give a file path": no flag named it), and the training before it kept."""
    os.remove(os.path.join(victim, name))
    os.mkdir(os.path.join(victim, name))
    args = (tiny_args(victim, corpus_file, steps=6) if program == "train" else
            [f"--workdir={victim}", "--max_tokens=600"])  # fmt: skip
    result = server.run(program, *args)
    line = assert_one_line_error(result, os.path.join(victim, name),
                                 "is a folder where a file belongs; move it away")  # fmt: skip
    assert "give a file path" not in line, line
    if program == "train" and name != "metrics.jsonl":  # (the metrics log opens first)
        assert committed_steps(os.path.join(victim, "checkpoints"))[-1] == 6


@pytest.mark.parametrize("how", ["cut_short", "garbage", "missing", "folder"])
def test_the_training_command_mends_a_damaged_evaluation_split(how, server, victim, corpus_file):
    """A kept evaluation split gone bad stops evaluate (one line); the run's own training
    command, rerun, builds the same splits from its corpus and writes them again (it read the
    corpus and trained on as if nothing were wrong, so the fault stayed), and evaluate then
    gives the perplexity it gave before."""
    evaluate = ("evaluate", f"--workdir={victim}", "--max_tokens=600", "--protocols=standard")
    before = server.run(*evaluate)
    assert before.rc == 0, str(before)
    path = os.path.join(victim, "data", "validation.npy")
    if how == "cut_short":
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
    elif how == "garbage":
        open(path, "wb").write(bytes(range(256)) * 4)
    else:
        os.remove(path)
        if how == "folder":
            os.mkdir(path)
    if how != "folder":
        assert_one_line_error(server.run(*evaluate), path, "rerun the run's training command")
    else:  # a folder is never removed for us: what is in it is not ours to judge
        refused = server.run("train", *tiny_args(victim, corpus_file))
        assert_one_line_error(refused, path, "is a folder where a file belongs; move it away")
        os.rmdir(path)
    mended = server.run("train", *tiny_args(victim, corpus_file))
    assert mended.rc == 0 and "nothing to train" in mended.stdout, str(mended)
    assert f"{path} was missing or damaged: written again from the corpus" in mended.stdout
    after = server.run(*evaluate)
    assert after.rc == 0, str(after)
    table = [line for line in before.stdout.splitlines() if line.startswith("| standard")]
    assert table and table == [line for line in after.stdout.splitlines()
                               if line.startswith("| standard")]  # fmt: skip


def test_sample_and_evaluate_read_the_step_asked_for(server, victim):
    """sample takes --step as evaluate does (it had none: comparing samples of two checkpoints
    meant copying workdirs); a --step with only a --config (an untrained model, no checkpoint to
    choose) was silently ignored by evaluate, and is one line for both."""
    result = server.run("sample", f"--workdir={victim}", "--step=2", "--max_new_tokens=4")
    assert result.rc == 0 and "checkpoint step 2 in" in result.stdout, str(result)
    result = server.run("sample", f"--workdir={victim}", "--step=3", "--max_new_tokens=4")
    assert_one_line_error(result, "no checkpoint for step 3", "steps: [2, 4]")
    for program in ("sample", "evaluate"):
        result = server.run(program, f"{TINY}", "--step=2")
        assert_one_line_error(result, "step=2 is a checkpoint of a workdir; give the workdir")


def test_summary_and_metrics_after_interrupted_rerun(server, victim, corpus_file):
    """The metrics log holds one row per step, whatever was replayed."""
    result = server.run("train", *tiny_args(victim, corpus_file, steps=6))
    assert result.rc == 0, str(result)
    assert faults.metrics_steps(victim) == [1, 2, 3, 4, 5, 6]
    summary = json.load(open(os.path.join(victim, "summary.json")))
    assert summary["steps_run"] == 2


@pytest.mark.parametrize("step", [None, 2])
def test_a_step_deleted_while_loaded_is_not_called_damaged(victim, monkeypatch, step):
    """`load_model` (evaluate, sample) beside a running trainer whose retention deletes the
    step being read: the newest step is read again (no damage reported); a step asked for by
    number is said to be deleted, not damaged."""
    from llp_jax.evaluation import checkpoints as eval_checkpoints

    real, calls = eval_checkpoints.load_params, []

    def load_params(directory, at):
        if not calls:  # the trainer saves step 6 (a copy of 4) and deletes `at`
            shutil.copytree(os.path.join(directory, "4"), os.path.join(directory, "6"))
            shutil.rmtree(os.path.join(directory, str(at), "state"))
        calls.append(at)
        return real(directory, at)

    monkeypatch.setattr(eval_checkpoints, "load_params", load_params)
    if step is None:
        assert eval_checkpoints.load_model(victim).step == 6 and calls == [4, 6]
    else:
        with pytest.raises(llp_jax.LLPError) as e:
            eval_checkpoints.load_model(victim, step=step)
        assert "step 2" in str(e.value) and "was deleted while it was read" in str(e.value)
        assert "damaged" not in str(e.value) and "\n" not in str(e.value)
