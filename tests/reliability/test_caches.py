"""A cache is never a reason to stop (`llp_jax.caches`): a home folder this user cannot write
(a container's random UID with HOME=/) moves the caches to a private temporary folder; where no
folder can be had, or the write fails, the program goes on without one."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from llp_jax import caches
from llp_jax.data import tokenizers
from tests.helpers.cli import run_cli
from tests.reliability import faults
from tests.reliability.conftest import tiny_args


@pytest.fixture
def blocked_home(tmp_path, monkeypatch):
    """XDG_CACHE_HOME below a file: no user, root included, can make a folder there."""
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a_file" / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp")
    monkeypatch.setattr(caches, "_warned", set())
    return tmp_path


def test_the_home_cache_is_used_where_it_can_be_written(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert caches.folder("kernels") == str(tmp_path / "xdg" / "llp_jax" / "kernels")
    assert caches.folder("sentencepiece", str(tmp_path / "mine")) == str(tmp_path / "mine")
    assert os.path.isdir(tmp_path / "mine")


def test_a_blocked_home_falls_back_to_a_private_folder(blocked_home, caplog):
    found = caches.folder("sentencepiece")
    root = blocked_home / "tmp" / f"llp_jax-{os.getuid()}"
    assert found == str(root / "sentencepiece") and os.path.isdir(found)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert caches.folder("kernels") == str(root / "kernels")
    warnings = [r.getMessage() for r in caplog.records if "caches go to" in r.getMessage()]
    assert len(warnings) == 1, caplog.text  # once, not once per cache


def test_a_fallback_others_may_write_is_not_used(blocked_home):
    root = blocked_home / "tmp" / f"llp_jax-{os.getuid()}"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)  # another user could plant a shared library for the kernel cache
    assert caches.folder("kernels") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_fallback_another_user_owns_is_not_used(blocked_home):
    root = blocked_home / "tmp" / f"llp_jax-{os.getuid()}"
    root.mkdir(mode=0o700)
    os.chown(root, 65534, 65534)
    assert caches.folder("sentencepiece") is None


def test_no_cache_folder_trains_the_tokenizer_and_writes_nothing(blocked_home, monkeypatch):
    monkeypatch.setattr(caches, "folder", lambda kind, preferred="": None)
    text = "the quick brown fox jumps over the lazy dog. " * 400
    first = tokenizers.train_sentencepiece(text, vocab_size=300)
    again = tokenizers.train_sentencepiece(text, vocab_size=300)
    assert list(first.encode("a lazy fox")) == list(again.encode("a lazy fox"))
    assert not any(files for _, _, files in os.walk(blocked_home / "tmp"))


@pytest.mark.slow
def test_a_home_the_user_cannot_write_costs_no_run(env, corpus_file):
    """As user 'nobody' with HOME=/ (a container's random UID): a SentencePiece run trains,
    caches its model in the private fallback, and the next run reads it from there."""
    with faults.as_nobody(env) as (prefix, shared, env):
        env = {**env, "HOME": "/", "TMPDIR": os.path.join(shared, "tmp")}
        env.pop("XDG_CACHE_HOME")
        os.makedirs(env["TMPDIR"], mode=0o777)
        os.chmod(env["TMPDIR"], 0o777)
        corpus = os.path.join(shared, "corpus.txt")
        with open(corpus_file) as src, open(corpus, "w") as dst:
            dst.write(src.read())
        sp = ["--config.data.tokenizer=sentencepiece", "--config.data.vocab_size=300"]
        runs = []
        for name in ("first", "second"):
            args = tiny_args(os.path.join(shared, name), corpus, steps=2)
            runs.append(run_cli("train", *args, *sp, env=env, prefix=prefix))
            assert runs[-1].rc == 0 and "Traceback" not in runs[-1].stderr, str(runs[-1])
        fallback = os.path.join(
            env["TMPDIR"], "llp_jax-65534" if prefix else f"llp_jax-{os.getuid()}"
        )
        assert "caches go to " + fallback in runs[0].stderr, runs[0].stderr
        assert os.listdir(os.path.join(fallback, "sentencepiece"))
        assert "trained SentencePiece" in runs[0].stdout
        assert "trained SentencePiece" not in runs[1].stdout  # read from the fallback cache
        assert "Matplotlib created a temporary cache" not in runs[0].stderr
