"""The benchmark, study and conversion launchers' bad flags, output paths no file can be
written at, and stray arguments, through the real programs: one `error:` line naming the flag
and the fix, caught when the flags are read, before any work (split from test_bad_input.py)."""

from __future__ import annotations

import os
import re

import pytest

from tests.helpers.cli import assert_one_line_error
from tests.reliability.conftest import TINY, tiny_args

# (program, flags, fragment): the benchmark and study launchers, bad flags of every kind (a
# bound, a list of integers, a name, a combination) and bad sizes the model config rejects.
BIG = 10**20
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
    ("benchmark_decode", ["--segments=3", "--nolimits"], "must be a multiple of --segments=3"),
    ("benchmark_decode", ["--authors=/tmp"], "--authors and --torch_python go together"),
    ("benchmark_decode", ["--authors=/tmp", "--torch_python=python"], "not a checkout"),
    ("benchmark_step", ["--variants=nope"], "--variants: unknown ['nope']"),
    ("benchmark_step", ["--segments=3"], "--seq_len=1024 must be a multiple of --segments=3"),
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
    # Sizes past int32: each was a traceback from numpy ("Maximum allowed dimension exceeded")
    # or jit's lowering, at the first array built from it.
    ("model_summary", [f"--batch_size={BIG}"], "--batch_size must be below 2**31"),
    ("benchmark", [f"--seq_lens={BIG}"], "--seq_lens must be comma-separated integers from 1"),
    ("benchmark", [f"--tokens_per_step={BIG}"], "--tokens_per_step must be below 2**31"),
    ("benchmark", [f"--d_model={BIG}"], "--d_model must be below 2**31"),
    ("benchmark_decode", [f"--seq_len={BIG}"], "--seq_len must be below 2**31"),
    ("benchmark_decode", [f"--num_layers={BIG}"], "--num_layers must be below 2**31"),
    ("benchmark_step", [f"--batch={BIG}"], "--batch must be below 2**31"),
    ("benchmark_sequence_parallel", [f"--max_len={BIG}"], "--max_len must be below 2**31"),
    ("convert", [f"--seq_len={BIG}", "--workdir=w"], "--seq_len must be below 2**31"),
]


def test_every_integer_flag_of_the_programs_is_bounded():
    """Every integer flag is a `common.count_flag` (below 2**31), so no size or count flag added
    later reaches an array unbounded; the seeds alone count in 64 bits (`check_seed`)."""
    cli = os.path.join(os.path.dirname(__file__), "..", "..", "llp_jax", "cli")
    plain = []
    for name in sorted(os.listdir(cli)):
        if name.endswith(".py") and name != "common.py":
            text = open(os.path.join(cli, name)).read()
            plain += [(name, flag) for flag in re.findall(r'DEFINE_integer\(\s*"(\w+)"', text)]
    assert plain == [("sample.py", "seed")]


@pytest.mark.parametrize(
    "case", LAUNCHER_FLAGS, ids=[f"{c[0]} {' '.join(c[1])}" for c in LAUNCHER_FLAGS]
)
def test_launcher_flags(case, server, tmp_path):
    program, argv, fragment = case
    out = tmp_path / "out.md"
    extra = [] if program in ("model_summary", "convert") else [f"--out={out}"]
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


# (program, flags, the flags the line names): a flag that is not a program's but shares a word
# with one, or is a config field's name, where absl's own "Did you mean" has nothing to offer.
UNKNOWN_FLAGS = [
    ("sample", ["--num_tokens=30"], "flags with a word of it: --max_new_tokens"),
    ("train", [TINY, "--corpus=book.txt"], "did you mean --config.data.corpus?"),
    ("train", ["--batch_size=2"], "did you mean --config.train.batch_size?"),
    ("train", ["--model=dense"], "did you mean --config.model.name?"),
    ("evaluate", ["--seq_len=64"], "did you mean --config.model.seq_len?"),
    ("train", ["--steps=3"], "did you mean --config.train.num_steps?"),
    ("train", ["--lr=0.1"], "did you mean --config.train.learning_rate?"),  # other codebases'
    ("train", ["--max_steps=3"], "did you mean --config.train.num_steps?"),
    ("train", ["--block_size=64"], "did you mean --config.model.seq_len?"),
    ("train", ["--seed=1"], "--config.data.seed or --config.sample.seed or --config.train.seed"),
    ("train", ["--eval_step=3"], "flags with a word of it: --config.data.eval_max_tokens, "),
    ("sample", ["--max_new_token=3"], "Did you mean: max_new_tokens"),  # absl's own
    # another program's flag: which (absl had offered its own --log_dir for --workdir)
    (
        "prepare_data",
        [TINY, "--workdir=w"],
        "(--workdir is a flag of experiments.convert, "
        "evaluate, sample, train, not of experiments.prepare_data)",
    ),
    ("train", ["--protocols=standard"], "(--protocols is a flag of experiments.evaluate, not"),
    ("sample", ["--protocols=paper"], "(--protocols is a flag of experiments.evaluate, not of"),
]


@pytest.mark.parametrize("case", UNKNOWN_FLAGS, ids=[f"{c[0]} {c[1][-1]}" for c in UNKNOWN_FLAGS])
def test_an_unknown_flag_names_the_flags_it_may_mean(case, server):
    program, argv, fragment = case
    result = server.run(program, *argv)
    line = assert_one_line_error(
        result, f"Unknown command line flag '{argv[-1][2:].split('=')[0]}'", fragment
    )
    assert "log_dir" not in line


def test_config_overrides_without_a_config_file_say_so(server, tmp_path):
    """`--config.train.num_steps=2` with no --config was 'Unknown command line flag
    config.train.num_steps; flags with a word of it: --config.train.num_steps'. A workdir with
    checkpoints is offered its own config (from_workdir.py) too."""
    result = server.run("train", "--config.train.num_steps=2", f"--workdir={tmp_path / 'w'}")
    line = assert_one_line_error(result, "--config.train.num_steps sets a field of a config "
                                 "file, and no --config=FILE names one: add one, e.g. "
                                 f"{TINY}")  # fmt: skip
    assert "from_workdir" not in line
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    for program in ("evaluate", "sample"):
        result = server.run(program, f"--workdir={tmp_path / 'run'}", "--config.data.corpus=x")
        assert_one_line_error(result, "--config.data.corpus sets a field of a config file",
                              "the workdir's own, changed: --config=llp_jax/configs/"
                              f"from_workdir.py:{tmp_path / 'run'}")  # fmt: skip


def test_config_overrides_may_come_before_the_config_file(server, tmp_path, corpus_file):
    """ml_collections refused `--config.x=1 --config=FILE` ("Found --config.x in argv before a
    value for --config was specified"); the file is moved first, in either of its forms."""
    for name, config in (("a", [TINY]), ("b", ["--config", TINY.split("=", 1)[1]])):
        args = tiny_args(tmp_path / name, corpus_file, steps=1)
        assert args[0] == TINY
        result = server.run("train", *args[1:], *config)
        assert result.rc == 0 and "1 steps in" in result.stdout, str(result)
    # Two files and overrides: "The flag 'config.model.seq_len' is defined twice"; the last wins.
    transformer = "--config=llp_jax/configs/tiny.py:transformer"
    result = server.run("train", *tiny_args(tmp_path / "c", corpus_file, steps=1), transformer)
    assert result.rc == 0 and "model transformer:" in result.stdout, str(result)


def test_the_config_file_is_moved_before_its_overrides_and_nothing_else_moves():
    from llp_jax.cli.config_flag import config_first

    argv = ["p", "--a=1", "--config.x=2", "--b", "--config=F", "--config.y=3", "--", "--config=G"]
    assert config_first(argv) == ["p", "--a=1", "--config=F", "--config.x=2", "--b",
                                   "--config.y=3", "--", "--config=G"]  # fmt: skip
    assert config_first(["p", "--noconfig.z", "--config", "F"]) == ["p", "--config", "F",
                                                                     "--noconfig.z"]  # fmt: skip
    for same in (["p", "--config=F", "--config.x=1"], ["p", "--config.x=1"], ["p", "--config=F"]):
        assert config_first(same) == same
    # a repeated --config: the last one counts, as for any absl flag
    assert config_first(["p", "--config=A", "--w=1", "--config=B", "--config.x=1"]) == [
        "p", "--w=1", "--config=B", "--config.x=1"]  # fmt: skip
    assert config_first(["p", "--config=A", "--config.x=1", "--config", "B"]) == [
        "p", "--config", "B", "--config.x=1"]  # fmt: skip


def test_an_unknown_flag_like_none_is_named_alone(server):
    result = server.run("train", "--xyz=1")
    assert_one_line_error(result, "Unknown command line flag 'xyz'")
    assert "flags with a word" not in result.stderr
