"""A sample ends with its document: a model trained on many short documents (JSON Lines records,
each followed by the end-of-document token) writes one and stops, marked `[end of document]`,
in `experiments.sample` and in the end-of-run sample; it used to run on into the next document,
glued to it ('friendhello there'). `--stop_id=-1` keeps the old behaviour."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llp_jax.evaluation.sample_settings import END_OF_DOCUMENT
from tests.helpers.cli import run_cli

pytestmark = pytest.mark.slow
DOC = "hello there, friend"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ends")
    (root / "hello.jsonl").write_text("".join(json.dumps({"text": DOC}) + "\n" for _ in range(400)))
    args = [f"--config.{k}={v}" for k, v in {
        "data.corpus": root / "hello.jsonl", "model.seq_len": 64, "model.segment_len": 16,
        "train.num_steps": 60, "train.batch_size": 8, "train.eval_every": 60,
        "train.eval_batches": 1, "sample.num_tokens": 50, "sample.prompt": "hello",
        "sample.temperature": 0}.items()]  # fmt: skip
    result = run_cli("train", "--config=llp_jax/configs/tiny.py:llp", f"--workdir={root / 'w'}",
                     *args)  # fmt: skip
    assert result.rc == 0, str(result)
    assert json.load(open(root / "w" / "summary.json"))["sample"] == f"{DOC}\n{END_OF_DOCUMENT}"
    return root / "w"


def _sample(workdir, *flags) -> str:
    result = run_cli("sample", f"--workdir={workdir}", "--prompt=hello", "--temperature=0",
                     "--max_new_tokens=80", *flags)  # fmt: skip
    assert result.rc == 0, str(result)
    return result.stdout


def test_a_sample_stops_at_the_end_of_its_document(workdir):
    assert _sample(workdir).endswith(f"--- sample 0\n{DOC}\n{END_OF_DOCUMENT}\n")
    both = _sample(workdir, "--num_samples=2")
    assert both.count(f"{DOC}\n{END_OF_DOCUMENT}\n") == 2, both


def test_stop_id_minus_one_runs_on_into_the_next_document(workdir):
    out = _sample(workdir, "--stop_id=-1")
    assert f"{DOC}hello there" in out and END_OF_DOCUMENT not in out, out


def test_the_default_prompt_is_the_first_document_s_opening(workdir):
    """The default prompt (the validation text's first words) ran across documents, glued
    ('hello there, friendhello there, friendhello'): it stops at the first document's end."""
    result = run_cli("sample", f"--workdir={workdir}", "--temperature=0", "--max_new_tokens=40")
    assert result.rc == 0, str(result)
    assert result.stdout.endswith(f"--- sample 0\n{DOC}\n{END_OF_DOCUMENT}\n"), result.stdout


def test_the_python_api_stops_there_too(workdir):
    """`runner.sample` (the Colab notebook's sample cell) and `runner.sample_stream` ran on into
    the next document; they stop at its end as `experiments.sample` does (stop_id=None: never)."""
    from llp_jax.evaluation import runner

    setup = runner.setup(str(workdir))
    assert runner.sample(setup, "hello", max_new_tokens=80, temperature=0.0) == [DOC]
    on = runner.sample(setup, "hello", max_new_tokens=80, temperature=0.0, stop_id=None)[0]
    assert on.startswith(f"{DOC}hello there"), on
    prompt_BxP, blocks = runner.sample_stream(setup, "hello", max_new_tokens=80, temperature=0.0)
    ids = np.concatenate([prompt_BxP, *blocks], axis=1)[0]
    assert setup.data.tokenizer.decode(ids) == DOC  # after the stop token only stop tokens
    with pytest.raises(runner.EvaluationError, match="give a token id, 'document_end' or None"):
        runner.sample(setup, "hello", max_new_tokens=8, stop_id="eod")


def test_a_prompt_file_or_standard_input_is_the_prompt(workdir, tmp_path):
    """A long prompt goes in a file (a shell argument holds at most 128 KiB): --prompt_file,
    compressed too, or '-' with the text piped in, its trailing newlines dropped as $(cat f)
    drops them, samples as --prompt does; with --prompt as well it is one line."""
    import gzip  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    from tests.helpers import REPO  # noqa: PLC0415
    from tests.helpers.cli import PYTHON, assert_one_line_error, cli_env  # noqa: PLC0415

    plain = _sample(workdir)
    (tmp_path / "prompt.txt.gz").write_bytes(gzip.compress(b"hello\n\n"))
    result = run_cli("sample", f"--workdir={workdir}", f"--prompt_file={tmp_path / 'prompt.txt.gz'}",
                     "--temperature=0", "--max_new_tokens=80")  # fmt: skip
    assert result.rc == 0 and result.stdout == plain, str(result)
    piped = subprocess.run([PYTHON, "-m", "experiments.sample", f"--workdir={workdir}",
                            "--prompt_file=-", "--temperature=0", "--max_new_tokens=80"],
                           input=b"hello\n", capture_output=True, env=cli_env(), cwd=REPO,
                           timeout=600)  # fmt: skip
    assert piped.returncode == 0 and piped.stdout.decode() == plain, piped.stderr.decode()
    both = run_cli("sample", f"--workdir={workdir}", "--prompt=hi", "--prompt_file=-")
    assert_one_line_error(both, "give --prompt or --prompt_file, not both")
