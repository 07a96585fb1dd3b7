"""The command-line tools answer bad flags and config files with one line, never a traceback."""

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
CASES = [
    # (tool, flags, what the one line must say)
    ("train", ["--config=llp_jax/configs/tiny.py:nope"], "model.name='nope' is unknown"),
    ("train", ["--config=llp_jax/configs/tiny.py:llp,bad"], "must be 'faithful', not 'bad'"),
    ("train", ["--config=llp_jax/configs/nothere.py"], "nothere.py does not exist"),
    ("train", ["--config=tiny.py:llp"], "the shipped one is --config=llp_jax/configs/tiny.py:llp"),
    ("sample", ["--config=configs/demo.py"], "the shipped one is --config=llp_jax/configs/demo.py"),
    ("train", ["--config=llp_jax/configs"], "is a folder, not a config file"),
    ("train", ["--config=llp_jax/configs/demo.py:x"], "its get_config() takes no argument"),
    ("sample", ["--max_new_tokens=abc"], "flag --max_new_tokens=abc: takes an integer; give a"),
    # An integer given in a float's notation: said as the integer it is (any integer flag).
    ("sample", ["--max_new_tokens=1e3"], "takes an integer; give --max_new_tokens=1000"),
    (
        "train",
        ["--config=llp_jax/configs/tiny.py:llp", "--config.train.num_steps=2.0e4"],
        "flag --config.train.num_steps=2.0e4: takes an integer; give --config.train.num_steps=20000",
    ),
    ("evaluate", ["--max_tokens=2.5"], "flag --max_tokens=2.5: takes an integer; give a whole"),
    ("evaluate", ["--config=llp_jax/configs/nothere.py"], "e.g. --config=llp_jax/configs/tiny.py"),
]


@pytest.mark.parametrize("tool,args,says", CASES, ids=[f"{t}:{a[0]}" for t, a, _ in CASES])
def test_bad_flags_get_one_line(tool, args, says, tmp_path):
    cmd = [sys.executable, "-m", f"experiments.{tool}", *args, f"--workdir={tmp_path}"]
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], done.stderr
    assert not os.listdir(tmp_path)  # nothing started


def test_a_workdir_given_as_the_config_is_told_its_config(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    cmd = [sys.executable, "-m", "experiments.train", f"--config={run}", f"--workdir={run}"]
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"--config=llp_jax/configs/from_workdir.py:{run}" in done.stderr.strip().splitlines()[-1]


def test_results_pages_quote_the_command_as_a_shell_reads_it(monkeypatch):
    """A label with spaces ('llp (bf16)') stays one argument in the command a page quotes."""
    import shlex

    from llp_jax.cli import common

    argv = ["compare.py", "--variants=llp,llp (bf16)", "--out=a b.md", "--quick"]
    monkeypatch.setattr(sys, "argv", argv)
    line = common.command_line("compare")
    assert line.startswith("python -m experiments.compare ")
    assert shlex.split(line)[3:] == argv[1:]
    monkeypatch.setattr(sys, "argv", ["compare.py"])
    assert common.command_line("compare") == "python -m experiments.compare"


@pytest.mark.parametrize("flag", ["", "given", "auto"])
def test_compilation_cache_flag_is_the_cache_of_the_program_and_its_children(flag, tmp_path):
    """--compilation_cache=DIR caches there (and tells child processes); 'auto' (the default) is
    llp_jax.caches' folder; '' turns the cache off even where the environment names one, as the
    flag's help says."""
    inherited, given = tmp_path / "inherited", tmp_path / "given"
    if flag == "auto":
        given = tmp_path / "xdg" / "llp_jax" / "jax_cache"
    value = {"": "", "given": str(given), "auto": "auto"}[flag]
    code = (
        "import os, jax, jax.numpy as jnp; from llp_jax.cli import common; "
        f"common.use_compilation_cache({value!r}); "
        "jax.jit(lambda x: jnp.sin(x) * 3)(jnp.ones(7)).block_until_ready(); "
        "print(jax.config.jax_enable_compilation_cache, os.environ.get('JAX_COMPILATION_CACHE_DIR'))"
    )
    env = {**ENV, "JAX_COMPILATION_CACHE_DIR": str(inherited), "XLA_FLAGS": "",
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "XDG_CACHE_HOME": str(tmp_path / "xdg")}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    if flag:
        assert done.stdout.split() == ["True", str(given)]
        assert os.listdir(given) and not inherited.exists()
    else:
        assert done.stdout.split() == ["False", "None"]
        assert not inherited.exists() and not given.exists()


def test_a_library_warning_is_printed_once(tmp_path):
    """Orbax logs through absl as it is imported, before app.run sets absl up; absl then gave
    the root logger a plain handler of its own, and every warning was printed twice (the first
    as `WARNING:llp_jax.data.text_bytes:...`)."""
    corpus = tmp_path / "scraped.txt"
    corpus.write_bytes(b"It is a truth universally acknowledged. " * 200 + b"caf\xe9\n")
    cmd = [sys.executable, "-m", "experiments.prepare_data", "--config=llp_jax/configs/tiny.py:llp",
           f"--config.data.corpus={corpus}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("replaced 1 invalid UTF-8 bytes with U+FFFD") == 1, done.stderr
    assert "WARNING:llp_jax" not in done.stderr
    # in the launchers' own style (`error:`, `note:`), not absl's `W1207 15:24:40.225 ... py:140]`
    (line,) = [line for line in done.stderr.splitlines() if "U+FFFD" in line]
    assert line == f"warning: {corpus}: replaced 1 invalid UTF-8 bytes with U+FFFD.", line


def _own_flags(tool: str) -> set[str]:
    """The flags a launcher defines (its module's and those it asks llp_jax.cli.common for)."""
    code = (f"import sys; sys.argv = ['x']; from absl import flags; import llp_jax.cli.{tool}; "
            "print(' '.join(sorted(n for n, f in flags.FLAGS._flags().items() if n == f.name and "
            "flags.FLAGS.find_module_defining_flag(n, '').startswith('llp_jax.'))))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("tool", sorted(os.path.basename(p)[:-3] for p in os.listdir(
    os.path.join(REPO, "experiments")) if p.endswith(".py") and p != "__init__.py"))  # fmt: skip
def test_help_lists_the_tools_own_flags(tool):
    """`--help` printed the launcher's docstring and 'Try --helpfull': absl lists the main
    module's flags, and a launcher's flags are defined in llp_jax/cli/, not in experiments/.
    --helpfull buried them among grain's, orbax's and absl's."""
    own = _own_flags(tool)
    assert own, tool
    how = "--helpshort" if tool == "train" else "--help"  # (the same list)
    done = subprocess.run([sys.executable, "-m", f"experiments.{tool}", how], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode in (0, 1) and not done.stderr, done.stderr  # absl's help exits 1
    listed = {line.split(":")[0].strip().removeprefix("--").removeprefix("[no]")
              for line in done.stdout.splitlines() if line.startswith("  --")}  # fmt: skip
    assert listed == own, (own - listed, listed - own)
    assert "grain" not in done.stdout


@pytest.mark.parametrize("args,says", [
    (["--seq_len=100", "--segments=3"], "--seq_len=100 must be a multiple of --segments=3"),
    (["--seq_len=100", "--segments=4", "--models=perceiver_ar"], "must be a multiple of 8"),
])  # fmt: skip
def test_decode_benchmark_names_its_own_flags(args, says):
    """The window a decode benchmark asks for and the flags that size its models: one line
    naming those flags (it named model.segment_len=33, a field no flag sets)."""
    cmd = [sys.executable, "-m", "experiments.benchmark_decode", *args, "--out=/dev/null"]
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and says in lines[0], done.stderr
