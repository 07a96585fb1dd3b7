"""Every bad value a user can type, through the real programs: one `error:` line naming the
field, the value and the allowed range, exit code 1, no traceback, and the workdir it was aimed
at untouched (its newest checkpoint restores to the same parameters). All of them are caught
before any data is read or anything compiles, so each costs milliseconds."""

from __future__ import annotations

import os

import pytest

from tests.helpers.cli import assert_one_line_error
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
    ("nosuch.x=1", "--config.nosuch.x"),
]


@pytest.mark.parametrize("case", TRAIN_VALUES, ids=[c[0] for c in TRAIN_VALUES])
def test_train_config_values(case, server, victim, corpus_file):
    override, *fragments = case
    before = params_digest(victim)
    result = server.run("train", *tiny_args(victim, corpus_file), f"--config.{override}")
    assert_one_line_error(result, *fragments)
    assert params_digest(victim) == before


CONFIG_FILES = {
    "syntax": ("def get_config(:\n", "invalid syntax at line 1"),
    "no_get_config": ("x = 1\n", "defines no get_config()"),
    "not_a_dict": ("def get_config():\n    return 3\n", "returned a int"),
    "raises": ("def get_config():\n    return {}['x']\n", "raised KeyError"),
    "import_error": ("import no_such_module_xyz\n", "ModuleNotFoundError"),
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
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "w" / "checkpoints").exists()


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
]


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


# (program, flags, fragment): the benchmark and study launchers, bad flags of every kind (a
# bound, a list of integers, a name, a combination) and bad sizes the model config rejects.
LAUNCHER_FLAGS = [
    ("compare", ["--variants=nope"], "--variants: ['nope'] unknown"),
    ("compare", ["--study=big"], "--study='big' must be one of"),
    ("compare", ["--study=quick", "--variants=llp,x"], "['x'] unknown"),
    ("compare", ["--num_steps=0"], "--num_steps=0"),
    ("compare", ["--study=quick", "--study_runs=tokens,foo"], "--study_runs: ['foo'] unknown"),
    ("benchmark", ["--models=nope"], "model.name='nope'"),
    ("benchmark", ["--seq_lens=abc"], "--seq_lens must be comma-separated integers"),
    ("benchmark", ["--seq_lens=0"], "--seq_lens"),
    ("benchmark", ["--steps=0"], "--steps=0"),
    ("benchmark", ["--max_gib=-1"], "--max_gib=-1"),
    ("benchmark_decode", ["--cached_tokens=5"], "must be 2 comma-separated integers"),
    ("benchmark_decode", ["--recompute_tokens=20,4"], "first count must be below the second"),
    ("benchmark_decode", ["--repeats=0"], "--repeats=0"),
    ("benchmark_decode", ["--segments=3", "--nolimits"], "must divide seq_len"),
    ("benchmark_decode", ["--authors=/tmp"], "--authors and --torch_python go together"),
    ("benchmark_decode", ["--authors=/tmp", "--torch_python=python"], "not a checkout"),
    ("benchmark_step", ["--variants=nope"], "--variants: unknown ['nope']"),
    ("benchmark_step", ["--segments=3"], "must divide seq_len"),
    ("benchmark_step", ["--rounds=-1"], "--rounds=-1"),
    (
        "benchmark_step",
        ["--variants=llp", "--flag_variants=transformer", "--xla_flag_set=--a"],
        "--flag_variants=transformer must be among --variants=llp",
    ),
    (
        "benchmark_step",
        [
            "--variants=perceiver_ar",
            "--flag_variants=perceiver_ar",
            "--batch=1",
            "--seq_len=64",
            "--xla_flag_set=--xla_no_such_flag=1",
        ],
        "Unknown flag in XLA_FLAGS: --xla_no_such_flag=1",
    ),
    ("benchmark_sequence_parallel", ["--devices=0"], "--devices=0"),
    ("model_summary", ["--batch_size=0"], "--batch_size=0"),
]


@pytest.mark.parametrize(
    "case", LAUNCHER_FLAGS, ids=[f"{c[0]} {' '.join(c[1])}" for c in LAUNCHER_FLAGS]
)
def test_launcher_flags(case, server, tmp_path):
    program, argv, fragment = case
    out = tmp_path / "out.md"
    extra = [] if program == "model_summary" else [f"--out={out}"]
    result = server.run(program, *argv, *extra)
    assert_one_line_error(result, fragment)
    assert not out.exists()


# Every flag naming a file a program writes at the end (program, flag, files written beside it).
OUTPUT_FLAGS = [
    ("benchmark", "out", (".json",)),
    ("benchmark", "png", ()),
    ("benchmark_decode", "out", ()),
    ("benchmark_sequence_parallel", "out", ()),
    ("benchmark_step", "out", (".json",)),
    ("compare", "out", (".json", ".png")),
    ("convert", "to_authors", ()),
    ("evaluate", "out", ()),
    ("model_summary", "out", ()),
]


@pytest.mark.parametrize("case", OUTPUT_FLAGS, ids=[f"{c[0]} --{c[1]}" for c in OUTPUT_FLAGS])
def test_output_paths_no_file_can_be_written_at(case, server, tmp_path):
    """A folder, a path under a file, a folder where a file is written beside the output: refused
    when the flags are read, before a benchmark's minutes or an evaluation's hour are spent,
    naming the path (the temporary file beside it used to be named, after the work)."""
    program, flag, beside = case
    (tmp_path / "folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    cases = [
        (tmp_path / "folder", "is a folder; give a file path"),
        (tmp_path / "a_file" / "out.md", f"{tmp_path / 'a_file'} is a file, not a folder"),
    ]
    for ext in beside:
        (tmp_path / f"taken{ext[1:]}{ext}").mkdir()
        cases.append((tmp_path / f"taken{ext[1:]}.md",
                      f"{tmp_path / f'taken{ext[1:]}{ext}'} (written beside it) is a folder"))  # fmt: skip
    before = sorted(p.name for p in tmp_path.iterdir())
    required = [f"--workdir={tmp_path / 'w'}"] if program == "convert" else []
    for path, fragment in cases:
        result = server.run(program, *required, f"--{flag}={path}")
        assert_one_line_error(result, f"--{flag}={path}", fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_every_output_flag_is_checked_before_the_work():
    """The list above is every output flag: none is a plain DEFINE_string."""
    import glob
    import re

    plain = []
    for path in glob.glob(os.path.join(os.path.dirname(__file__), "../../llp_jax/cli/*.py")):
        text = open(path).read()
        plain += re.findall(r'DEFINE_string\(\s*"(out|png|to_authors|\w*_out|\w*output\w*)"', text)
        checked = re.findall(r'output_flag\(\s*"(\w+)"', text)
        name = os.path.basename(path)[:-3]
        assert sorted(checked) == sorted(f for p, f, _ in OUTPUT_FLAGS if p == name), name
    assert not plain


@pytest.mark.parametrize("program", ["train", "evaluate", "sample", "convert", "model_summary",
                                     "benchmark_step"])  # fmt: skip
def test_a_stray_argument_is_one_line(program, server, tmp_path):
    """An unquoted value with a space (--prompt=It was) leaves a positional argument: one line
    naming it and how to quote, not the program's whole usage text."""
    extra = {"train": [TINY, f"--workdir={tmp_path / 'w'}"],
             "convert": [f"--workdir={tmp_path / 'w'}"]}.get(program, [])  # fmt: skip
    result = server.run(program, *extra, "--prompt=It" if program == "sample" else "--nohelp",
                        "was")  # fmt: skip
    assert_one_line_error(result, "unexpected argument(s) was", "quote a value")
