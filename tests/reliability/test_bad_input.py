"""Every bad value a user can type, through the real programs: one `error:` line naming the
field, the value and the allowed range, exit code 1, no traceback, and the workdir it was aimed
at untouched (its newest checkpoint restores to the same parameters). All of them are caught
before any data is read or anything compiles, so each costs milliseconds."""

from __future__ import annotations

import os
import re

import pytest

from llp_jax import configs
from llp_jax.errors import LLPError
from tests.helpers.cli import assert_one_line_error
from tests.reliability import test_numeric_limits
from tests.reliability.conftest import TINY, params_digest, tiny_args

# (override, fragments of the error) for `train` on the victim workdir.
TRAIN_VALUES = [
    ("train.num_steps=0", "train.num_steps=0 must be >= 1"),
    ("train.num_steps=-1", "train.num_steps=-1"),
    ("train.eval_every=0", "train.eval_every=0"),
    ("train.log_every=0", "train.log_every=0"),
    ("train.checkpoint_every=0", "train.checkpoint_every=0"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints=0"),
    ("train.eval_batches=0", "train.eval_batches=0"),
    ("train.batch_size=0", "train.batch_size=0"),
    ("train.grad_accum_steps=3", "train.grad_accum_steps=3"),
    ("train.learning_rate=-1", "train.learning_rate=-1.0"),
    ("train.learning_rate=nan", "train.learning_rate=nan"),
    ("train.learning_rate=inf", "train.learning_rate=inf"),
    ("train.schedule=foo", "train.schedule='foo' must be one of"),
    ("train.b2=1.5", "train.b2=1.5"),
    ("train.min_lr_ratio=2", "train.min_lr_ratio"),
    ("train.trainable=(", "train.trainable"),
    ("train.init_from=/nowhere", "train.init_from"),
    ("train.num_steps=abc", "num_steps"),
    ("data.tokenizer=foo", "data.tokenizer='foo'"),
    ("data.tokenizer=/nonexistent.model", "/nonexistent.model"),
    ("data.train_stride=-3", "data.train_stride=-3"),
    ("data.sp_model_type=word", "data.sp_model_type='word'"),
    ("data.document_boundaries=maybe", "data.document_boundaries"),
    ("data.corpus=/no/such/file.txt", "/no/such/file.txt"),
    ("data.data_dir=gs://bucket/tfds", "data.data_dir='gs://bucket/tfds'", "mount the bucket"),
    ("data.manual_dir=gs://b/wikitext", "data.manual_dir=", "local or mounted folder"),
    ("data.token_dir=s3://b/tokens", "data.token_dir='s3://b/tokens'", "local or mounted"),
    ("data.cache_dir=gs://b/sp", "data.cache_dir=", "local or mounted folder"),
    ("model.d_model=-5", "model.d_model=-5"),
    ("model.num_heads=3", "model.num_heads"),
    ("model.segment_len=7", "segment_len"),
    ("model.name=foo", "model.name='foo'"),
    ("model.dropout=1.5", "model.dropout"),
    ("mesh.data=0", "mesh config"),
    ("mesh.fsdp=-2", "mesh config"),
    # The suggestion: a field whose words hold the name, else one spelt like it, else the list.
    ("train.steps=3", "--config.train.steps", "did you mean 'num_steps'"),
    ("model.heads=3", "config.model has no field 'heads'; did you mean 'num_heads'"),
    ("model.d_modle=3", "did you mean 'd_model'"),
    ("modl.d_model=3", "config has no field 'modl'; did you mean 'model'"),
    ("train.zzz=3", "known fields: ['b1', 'b2', 'batch_size'"),
    # Another codebase's name for a field (spelling alone offered max_bad_steps for max_steps,
    # min_lr_ratio for lr, halve_every for save_every, vocab_size for block_size), and a field
    # of another section.
    ("train.max_steps=3", "did you mean 'num_steps'"),
    ("train.lr=0.1", "did you mean 'learning_rate'"),
    ("train.save_every=3", "did you mean 'checkpoint_every'"),
    ("train.grad_clip=1", "did you mean 'clip_norm'"),
    ("model.block_size=64", "did you mean 'seq_len'"),
    ("model.n_embd=64", "did you mean 'd_model'"),
    (
        "model.intermediate_size=64",
        "did you mean 'mlp_ratio' (the feed-forward width over d_model)",
    ),
    ("data.dataset=x", "did you mean 'corpus'"),
    (
        "train.dropout=0.1",
        "config.train has no field 'dropout'; did you mean --config.model.dropout?",
    ),
    ("data.batch_size=2", "did you mean --config.train.batch_size?"),
    ("model.lr=0.1", "did you mean --config.train.learning_rate?"),
    ("nosuch.x=1", "--config.nosuch.x"),
]


TRAIN_VALUES += test_numeric_limits.TRAIN_VALUES


@pytest.mark.parametrize("case", TRAIN_VALUES, ids=[c[0] for c in TRAIN_VALUES])
def test_train_config_values(case, server, victim, corpus_file):
    override, *fragments = case
    before = params_digest(victim)
    result = server.run("train", *tiny_args(victim, corpus_file), f"--config.{override}")
    assert_one_line_error(result, *fragments)
    assert params_digest(victim) == before


def test_settings_that_contradict_each_other(server, victim, corpus_file):
    """A document mask over a stream with no token between its documents (documents joined by a
    newline, or WikiText's articles and enwik8's chunks, read as one text) masked nothing, and
    trained on silently."""
    before = params_digest(victim)
    result = server.run("train", *tiny_args(victim, corpus_file), "--config.model.document_mask=true",
                        "--config.data.document_boundaries=none")  # fmt: skip
    assert_one_line_error(result, "puts no token between documents", "document_mask=false")
    for corpus in ("tfds:wikitext103", "tfds:wikitext103/raw", "tfds:enwik8"):  # one text each
        result = server.run("train", *tiny_args(victim, corpus_file), f"--config.data.corpus={corpus}",
                            "--config.model.document_mask=true")  # fmt: skip
        assert_one_line_error(result, f"data.corpus='{corpus}' is one text", "document_mask=false")
    assert params_digest(victim) == before


CONFIG_FILES = {
    "syntax": ("def get_config(:\n", "invalid syntax at line 1"),
    "no_get_config": ("x = 1\n", "defines no get_config()"),
    "not_a_dict": ("def get_config():\n    return 3\n", "returned an int"),
    "raises": ("def get_config():\n    return {}['x']\n", "raised KeyError"),
    "import_error": ("import no_such_module_xyz\n", "ModuleNotFoundError"),
    # an exception ml_collections cannot re-raise from a message: it was "JSONDecodeError.
    # __init__() missing 2 required positional arguments"
    "raises_json": (
        "import json\n\ndef get_config():\n    return json.loads('{')\n",
        "loading it raised JSONDecodeError: Expecting property name enclosed in double quotes",
    ),
    # an llp_jax error is its own message ("ConfigError: <the traceback, flattened>" before)
    "raises_llp_error": (
        "from llp_jax.errors import ConfigError\n\n"
        "def get_config():\n    raise ConfigError('sweep.csv has no row 7')\n",
        "error: sweep.csv has no row 7",
    ),
    "missing_section": (
        "from llp_jax.configs.tiny import get_config as tiny\n\n"
        "def get_config():\n    config = tiny()\n    del config['train']\n    return config\n",
        "has no train section",
    ),
    "unknown_section": (
        "from llp_jax.configs.tiny import get_config as tiny\n\n"
        "def get_config():\n    config = tiny()\n    config.extra = 1\n    return config\n",
        "unknown section",
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIG_FILES))
def test_config_files_that_do_not_load(name, server, tmp_path):
    source, fragment = CONFIG_FILES[name]
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    result = server.run("train", f"--config={path}", f"--workdir={tmp_path / 'w'}")
    line = assert_one_line_error(result, fragment)
    assert "Traceback" not in line and "Error whilst parsing" not in line, line
    if name == "raises_llp_error":
        assert line == "error: sweep.csv has no row 7", line
    assert not (tmp_path / "w" / "checkpoints").exists()


@pytest.mark.parametrize("spec, fragment", [
    ("llp_jax/configs/demo.py:llp", "its get_config() takes no argument; give "
     "--config=llp_jax/configs/demo.py without ':llp'"),
    ("llp_jax/configs/from_workdir.py", "its get_config() needs an argument, given after ':'"),
])  # fmt: skip
def test_a_config_file_given_an_argument_it_does_not_take_or_not_one_it_needs(spec, fragment,
                                                                              server):  # fmt: skip
    """Python's TypeError ("get_config() takes 0 positional arguments but 1 was given") named
    neither the file nor the spelling that fixes it; the same line from Python's configs.load."""
    line = assert_one_line_error(server.run("train", f"--config={spec}", "--workdir=w"), fragment)
    assert "TypeError" not in line, line
    with pytest.raises(LLPError, match=re.escape(fragment)):
        configs.load(spec)


def test_a_type_error_inside_get_config_is_not_taken_for_its_arity(server, tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("from llp_jax.configs import tiny\n\n"
                    "def get_config():\n    return tiny.get_config('llp', 1)\n")  # fmt: skip
    line = assert_one_line_error(server.run("train", f"--config={path}", "--workdir=w"),
                                 "loading it raised TypeError: get_config() takes from 0 to 1")  # fmt: skip
    assert "its get_config()" not in line, line


def test_from_workdir_on_a_folder_without_checkpoints(server, tmp_path):
    spec = f"llp_jax/configs/from_workdir.py:{tmp_path}"
    line = assert_one_line_error(server.run("train", f"--config={spec}", "--workdir=w"))
    assert line.startswith(f"error: from_workdir.py:{tmp_path}: no checkpoint in "), line
    assert "ConfigError" not in line and "Traceback" not in line, line


def test_config_file_paths(server, tmp_path):
    assert_one_line_error(server.run("train", f"--config={tmp_path}/none.py", "--workdir=w"),
                          "--config")  # fmt: skip
    assert_one_line_error(server.run("train", f"{TINY},nosuch", "--workdir=w"), "faithful")
    assert_one_line_error(server.run("train", "--config=llp_jax/configs/tiny.py:foo",
                                     "--workdir=w"), "model.name='foo'")  # fmt: skip


SAMPLE_FLAGS = [
    ("--top_p=0", "--top_p=0.0 must be in (0, 1]"),
    ("--top_p=1.5", "--top_p=1.5"),
    ("--temperature=-1", "--temperature=-1.0"),
    ("--temperature=nan", "--temperature=nan"),
    ("--max_new_tokens=-5", "--max_new_tokens=-5 must be >= 1"),
    ("--max_new_tokens=0", "--max_new_tokens=0"),
    ("--top_k=-3", "--top_k=-3"),
    ("--top_k=1000", "--top_k=1000 must be <= the vocabulary size 259"),
    ("--stop_id=99999999", "--stop_id=99999999 must be a token id in [0, 258]"),
    ("--stop_id=-2", "--stop_id=-2"),  # (-1: never stop)
    ("--num_samples=0", "--num_samples=0"),
    ("--slide=0", "--slide=0"),
    ("--method=fast", "--method"),
    (
        "--prompt_file=/nonexistent/prompt.txt",
        "--prompt_file=/nonexistent/prompt.txt does not exist",
    ),
    ("--prompt_file=/", "--prompt_file=/ is a folder"),
    ("--prompt_file=/dev/null", "--prompt_file=/dev/null holds no text"),
]


SAMPLE_FLAGS += test_numeric_limits.SAMPLE_FLAGS


@pytest.mark.parametrize("case", SAMPLE_FLAGS, ids=[c[0] for c in SAMPLE_FLAGS])
def test_sampler_arguments(case, server, victim):
    flag, fragment = case
    before = params_digest(victim)
    assert_one_line_error(server.run("sample", f"--workdir={victim}", flag), fragment)
    assert params_digest(victim) == before


EVALUATE_FLAGS = [
    ("--batch_size=0", "--batch_size=0 must be >= 1"),
    ("--window=0", "--window=0"),
    ("--stride=0", "--stride=0"),
    ("--paper_stride=-2", "--paper_stride=-2"),
    ("--max_tokens=-1", "--max_tokens=-1"),
    ("--step=-1", "--step=-1"),
    ("--step=3", "no checkpoint for step 3"),
    ("--protocols=fast", "--protocols"),
    ("--window=1000", "window"),
    ("--split=dev", "--split"),
    ("--text=/no/such/text.txt", "/no/such/text.txt"),
]


@pytest.mark.parametrize("case", EVALUATE_FLAGS, ids=[c[0] for c in EVALUATE_FLAGS])
def test_evaluate_arguments(case, server, victim):
    flag, fragment = case
    before = params_digest(victim)
    result = server.run("evaluate", f"--workdir={victim}", "--max_tokens=600", flag)
    assert_one_line_error(result, fragment)
    assert params_digest(victim) == before


def test_workdir_paths(server, corpus_file, tmp_path):
    bad = os.fsdecode(os.fsencode(str(tmp_path)) + b"/\xff")
    cases = [
        (bad, "not valid UTF-8"),
        ("/proc/llp_jax_run", "/proc/llp_jax_run"),
        ("/proc/self", "--workdir /proc/self cannot hold the run's files"),  # a folder, no files
        ("", "--workdir is empty"),
    ]
    for workdir, fragment in cases:
        result = server.run("train", *tiny_args(workdir, corpus_file))
        assert_one_line_error(result, fragment)
    for program in ("evaluate", "sample"):
        result = server.run(program, f"--workdir={tmp_path / 'never_trained'}")
        assert_one_line_error(result, "no checkpoint")


def test_a_file_where_a_workdir_folder_must_be(server, corpus_file, tmp_path):
    """--workdir (or init_from, convert's --workdir, compare's --workroot, the data section's
    folders) naming a file, or a path under one: every program that writes or reads there names
    the file in one line, before any work, and leaves it alone."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a run")
    for workdir in (a_file, a_file / "run"):
        result = server.run("train", *tiny_args(str(workdir), corpus_file))
        assert_one_line_error(result, f"--workdir {workdir}", f"{a_file} is not a folder")
        source = f"--config.train.init_from={workdir}"
        result = server.run("train", *tiny_args(str(tmp_path / "fine"), corpus_file), source)
        assert_one_line_error(result, "train.init_from=", f"{a_file} is not a folder")
        for program in ("evaluate", "sample"):
            result = server.run(program, f"--workdir={workdir}")
            assert_one_line_error(result, "no checkpoint in", f"{a_file} is not a folder")
        result = server.run("convert", f"--workdir={workdir}", f"--to_authors={tmp_path}/o.pt")
        assert_one_line_error(result, "no checkpoint in", f"{a_file} is not a folder")
        result = server.run("convert", f"--workdir={workdir}", f"--from_authors={corpus_file}")
        assert_one_line_error(result, f"--workdir {workdir}", f"{a_file} is not a folder")
        for field in ("cache_dir", "token_dir", "data_dir", "manual_dir"):
            folder = f"--config.data.{field}={workdir}"
            result = server.run("train", *tiny_args(str(tmp_path / "run"), corpus_file), folder)
            assert_one_line_error(result, f"data.{field}=", f"{a_file} is a file")
        for args in (["--quick"], ["--quick", "--estimate"], ["--study=quick"]):
            result = server.run("compare", *args, f"--workroot={workdir}", f"--out={tmp_path}/c.md")
            assert_one_line_error(result, f"--workroot {workdir}", f"{a_file} is not a folder")
    assert a_file.read_text() == "not a run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
