"""A workdir keeps its data: evaluate and sample need nothing else (the corpus and the tokenizer
cache deleted, the workdir moved: the same perplexity); resuming or evaluating on other data is
a one-line error unless --allow_data_change, which keeps the workdir's token ids."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from llp_jax.data import load_austen
from tests.helpers import REPO

TINY = ["--config=llp_jax/configs/tiny.py:llp", "--config.model.seq_len=64",
        "--config.model.segment_len=16", "--config.model.d_model=32",
        "--config.train.batch_size=4", "--config.train.eval_every=4",
        "--config.train.eval_batches=1", "--config.train.checkpoint_every=2",
        "--config.sample.num_tokens=4"]  # fmt: skip


def _run(module, *args, cwd, env):
    cmd = [sys.executable, "-m", f"experiments.{module}", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _one_line_error(done):
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture
def env(tmp_path):
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "",
        "PYTHONPATH": REPO,
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "home" / ".cache"),
    }  # fmt: skip  (the tokenizer cache lives there)


def _corpus(root, name, offset):
    folder = root / name
    folder.mkdir()
    text = load_austen().splits["train"]
    (folder / "a.txt").write_text(text[offset : offset + 30_000])
    (folder / "b.txt").write_text(text[offset + 30_000 : offset + 60_000])
    return folder


def _ppl(stdout):
    row = next(line for line in stdout.splitlines() if line.startswith("| standard |"))
    return float(row.split("|")[8])


@pytest.mark.slow
def test_a_workdir_evaluates_and_samples_alone(tmp_path, env):
    corpus = _corpus(tmp_path, "mine", 0)
    sp = ["--config.data.tokenizer=sentencepiece", "--config.data.vocab_size=400"]
    done = _run("train", *TINY, *sp, f"--config.data.corpus={corpus}", "--workdir=run",
                "--config.train.num_steps=4", cwd=tmp_path, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    before = _run("evaluate", "--workdir=run", "--protocols=standard", cwd=tmp_path, env=env)
    assert before.returncode == 0, before.stderr[-3000:]
    # The training text is read again for --split=train (it used to be "Unknown split").
    train = _run("evaluate", "--workdir=run", "--protocols=standard", "--split=train",
                 "--max_tokens=2000", "--out=/dev/null", cwd=tmp_path, env=env)  # fmt: skip
    assert train.returncode == 0 and "on mine train" in train.stdout, train.stderr[-3000:]
    # Move the workdir; delete the corpus and the tokenizer cache.
    shutil.move(tmp_path / "run", tmp_path / "moved")
    shutil.rmtree(corpus)
    shutil.rmtree(tmp_path / "home", ignore_errors=True)
    after = _run("evaluate", "--workdir=moved", "--protocols=standard", cwd=tmp_path, env=env)
    assert after.returncode == 0, after.stderr[-3000:]
    assert _ppl(after.stdout) == _ppl(before.stdout)
    train = _run("evaluate", "--workdir=moved", "--split=train", cwd=tmp_path, env=env)
    assert "--split=train reads the run's training text again" in _one_line_error(train)
    sample = _run("sample", "--workdir=moved", "--max_new_tokens=8", cwd=tmp_path, env=env)
    assert sample.returncode == 0 and "--- sample 0" in sample.stdout, sample.stderr[-3000:]
    # A byte --config against this SentencePiece workdir: refused, naming the difference.
    mismatch = _run("evaluate", "--workdir=moved", *TINY, cwd=tmp_path, env=env)
    assert "data.tokenizer='sentencepiece' (workdir) vs 'byte'" in _one_line_error(mismatch)
    # Other text, with the workdir's own tokenizer.
    other = tmp_path / "other.txt"
    other.write_text(load_austen().splits["test"][:20_000])
    text = _run("evaluate", "--workdir=moved", f"--text={other}", "--protocols=standard",
                cwd=tmp_path, env=env)  # fmt: skip
    assert text.returncode == 0 and "| standard |" in text.stdout, text.stderr[-2000:]
    # A paragraph shorter than one paper window (n + 1 = 65 tokens) is scored whole by the
    # protocols that take any length; the paper protocol is left out, or named, an error.
    short = tmp_path / "short.txt"
    short.write_text("It is a truth universally acknowledged.")
    text = _run("evaluate", "--workdir=moved", f"--text={short}", cwd=tmp_path, env=env)
    assert text.returncode == 0, text.stderr[-2000:]
    assert "| standard |" in text.stdout and "| stream |" in text.stdout, text.stdout
    assert "the paper protocol is left out: the text has " in text.stdout, text.stdout
    paper = _run("evaluate", "--workdir=moved", f"--text={short}", "--protocols=paper",
                 cwd=tmp_path, env=env)  # fmt: skip
    assert "fewer than one window of n + 1 = 65: give a longer text" in _one_line_error(paper)
    record = json.load(open(tmp_path / "moved" / "data" / "record.json"))
    assert record["tokenizer"].startswith("sp_") and os.path.exists(
        tmp_path / "moved" / "data" / "tokenizer.model")  # fmt: skip
    # The data folder damaged: each program says which file and how to get back, in one line.
    model = tmp_path / "moved" / "data" / "tokenizer.model"
    model.write_bytes(model.read_bytes()[:500])
    for program in ("evaluate", "sample"):
        line = _one_line_error(_run(program, "--workdir=moved", cwd=tmp_path, env=env))
        assert "tokenizer.model (the run's tokenizer) is damaged" in line, line
    (tmp_path / "moved" / "data" / "record.json").write_text("{")
    line = _one_line_error(_run("evaluate", "--workdir=moved", cwd=tmp_path, env=env))
    assert "record.json is damaged" in line and "delete that folder" in line, line


@pytest.mark.slow
def test_resuming_on_other_data_is_refused_unless_allowed(tmp_path, env):
    first, second = _corpus(tmp_path, "first", 0), _corpus(tmp_path, "second", 100_000)
    args = [*TINY, "--workdir=run", "--config.train.num_steps=2"]
    done = _run("train", *args, f"--config.data.corpus={first}", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    more = ["--config.train.num_steps=4"]
    other = _run("train", *args, *more, f"--config.data.corpus={second}", cwd=tmp_path, env=env)
    assert "was trained on other data: data.corpus=" in _one_line_error(other)
    # The same folder, its text edited in place: caught by the training tokens' fingerprint.
    (first / "a.txt").write_text((first / "a.txt").read_text().replace("the", "a"))
    edited = _run("train", *args, *more, f"--config.data.corpus={first}", cwd=tmp_path, env=env)
    assert "the training text or its tokens changed" in _one_line_error(edited)
    allowed = _run("train", *args, *more, f"--config.data.corpus={second}",
                   "--allow_data_change", cwd=tmp_path, env=env)  # fmt: skip
    assert allowed.returncode == 0 and "resumed from step 2" in allowed.stdout, allowed.stderr
    record = json.load(open(tmp_path / "run" / "data" / "record.json"))
    assert record["data"]["corpus"] == str(second)  # the record follows the allowed change


@pytest.mark.slow
def test_evaluating_with_a_config_naming_other_text(tmp_path, env):
    """`evaluate --workdir=run --config=... --config.data.corpus=other/` evaluated the workdir's
    own validation split without a word (own text at another path was taken for the same text
    moved), and with --allow_data_change a 'sentencepiece' section trained a new SentencePiece
    model on the other text, whose ids the weights never saw: a number that meant nothing. Now
    the path is checked by the training tokens, as a resume does, and the other text is read
    with the run's own tokenizer."""
    first, second = _corpus(tmp_path, "first", 0), _corpus(tmp_path, "second", 100_000)
    sp = ["--config.data.tokenizer=sentencepiece", "--config.data.vocab_size=400"]
    done = _run("train", *TINY, *sp, f"--config.data.corpus={first}", "--workdir=run",
                "--config.train.num_steps=2", cwd=tmp_path, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    own = json.load(open(tmp_path / "run" / "data" / "record.json"))["tokenizer"]
    plain = _run("evaluate", "--workdir=run", "--protocols=standard", cwd=tmp_path, env=env)
    assert plain.returncode == 0, plain.stderr[-2000:]
    evaluate = ["evaluate", "--workdir=run", "--protocols=standard", *TINY, *sp]
    other = _run(*evaluate, f"--config.data.corpus={second}", cwd=tmp_path, env=env)
    line = _one_line_error(other)
    assert f"data.corpus={str(first)!r} (workdir) vs {str(second)!r}, and the training " \
           "tokens differ" in line and "--allow_data_change" in line, line  # fmt: skip
    allowed = _run(*evaluate, f"--config.data.corpus={second}", "--allow_data_change",
                   cwd=tmp_path, env=env)  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert f"on second validation, tokenizer {own}" in allowed.stdout, allowed.stdout
    assert "trained SentencePiece" not in allowed.stdout + allowed.stderr
    assert _ppl(allowed.stdout) != _ppl(plain.stdout)
    copy = shutil.copytree(first, tmp_path / "copy")  # the same text elsewhere: the run's splits
    same = _run(*evaluate, f"--config.data.corpus={copy}", cwd=tmp_path, env=env)
    assert same.returncode == 0 and _ppl(same.stdout) == _ppl(plain.stdout), same.stderr[-2000:]


def test_a_corpus_moved_elsewhere_resumes_when_its_tokens_are_the_same(tmp_path, env):
    """The corpus moved (another disk, a Colab Drive path, another machine): the same text at
    another path was 'trained on other data' and only --allow_data_change (which checks
    nothing) resumed. A path is where the text is, not what it is: the training tokens'
    fingerprint decides, and the record follows the move (--split=train reads it there)."""
    first = _corpus(tmp_path, "first", 0)
    args = [*TINY, "--workdir=run", "--config.train.num_steps=2"]
    done = _run("train", *args, f"--config.data.corpus={first}", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    moved = first.rename(tmp_path / "moved")
    more = ["--config.train.num_steps=4", f"--config.data.corpus={moved}"]
    resumed = _run("train", *args, *more, cwd=tmp_path, env=env)
    assert resumed.returncode == 0 and "resumed from step 2" in resumed.stdout, resumed.stderr
    assert (f"data.corpus is now {str(moved)!r} (was {str(first)!r}): the same training tokens"
            in resumed.stdout)  # fmt: skip
    record = json.load(open(tmp_path / "run" / "data" / "record.json"))
    assert record["data"]["corpus"] == str(moved)
    train = _run("evaluate", "--workdir=run", "--split=train", "--max_tokens=500",
                 cwd=tmp_path, env=env)  # fmt: skip
    assert train.returncode == 0, train.stderr[-2000:]
    again = moved.rename(tmp_path / "again")  # moved again, no run resumed since: --config
    evaluate = ["evaluate", "--workdir=run", "--split=train", "--max_tokens=500"]
    lost = _run(*evaluate, cwd=tmp_path, env=env)
    assert "if it moved, give a --config whose data.corpus names it there" in _one_line_error(lost)
    found = _run(*evaluate, *TINY, f"--config.data.corpus={again}", cwd=tmp_path, env=env)
    assert found.returncode == 0 and _ppl(found.stdout) == _ppl(train.stdout), found.stderr
    moved = again.rename(moved)
    (moved / "b.txt").write_text((moved / "b.txt").read_text()[::-1])  # moved and changed
    changed = _run("train", *args, "--config.train.num_steps=6", f"--config.data.corpus={first}",
                   cwd=tmp_path, env=env)  # fmt: skip
    line = _one_line_error(changed)  # the old path is gone
    assert (
        "resuming run reads its training text again (a workdir keeps only its validation "
        "and test splits): Corpus path"
        in line
        and "if it moved, give" in line
    ), line
    first.mkdir()
    shutil.copytree(moved, first, dirs_exist_ok=True)
    changed = _run("train", *args, "--config.train.num_steps=6", f"--config.data.corpus={first}",
                   cwd=tmp_path, env=env)  # fmt: skip
    line = _one_line_error(changed)
    assert f"data.corpus={str(moved)!r} (workdir) vs {str(first)!r}, and the training tokens " \
           "differ (fingerprint" in line, line  # fmt: skip


@pytest.mark.slow
def test_a_workdir_outlives_the_tokenizer_file_it_was_named(tmp_path, env):
    """`--config.data.tokenizer=my.model` (or a tokenizer.json), then the file deleted, or the
    workdir copied to a machine without it: its record still named the file, which the config
    check looked for, so evaluate, sample and the same train command (resuming) all stopped
    with 'is not an existing .model file', though the workdir keeps its own copy."""
    corpus = _corpus(tmp_path, "mine", 0)
    sp = ["--config.data.tokenizer=sentencepiece", "--config.data.vocab_size=400"]
    done = _run("train", *TINY, *sp, f"--config.data.corpus={corpus}", "--workdir=first",
                "--config.train.num_steps=2", cwd=tmp_path, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    model = tmp_path / "my.model"
    shutil.copy(tmp_path / "first" / "data" / "tokenizer.model", model)
    named = [*TINY, f"--config.data.tokenizer={model}", f"--config.data.corpus={corpus}",
             "--workdir=run"]  # fmt: skip
    done = _run("train", *named, "--config.train.num_steps=2", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    model.unlink()
    for module, *args in (("evaluate", "--protocols=standard"), ("sample", "--max_new_tokens=4")):
        done = _run(module, "--workdir=run", *args, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    done = _run("train", *named, "--config.train.num_steps=4", cwd=tmp_path, env=env)
    assert done.returncode == 0 and "resumed from step 2" in done.stdout, done.stderr[-3000:]
    fresh = _run("train", *named[:-1], "--workdir=fresh", cwd=tmp_path, env=env)
    assert f"data.tokenizer='{model}' does not exist" in _one_line_error(fresh)
