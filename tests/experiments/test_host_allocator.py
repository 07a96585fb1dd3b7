"""The launchers' host-allocator re-exec (llp_jax/cli/host_allocator.py), in real processes."""

import json
import platform
import subprocess
import sys

import pytest

from llp_jax.cli import host_allocator
from tests.helpers import REPO
from tests.helpers.cli import cli_env, run_cli

PROBE = (
    "import json, os, sys; from llp_jax.cli import host_allocator; host_allocator.ensure(); "
    "print(json.dumps({'env': {k: os.environ.get(k) for k in host_allocator.TUNED}, "
    "'argv': sys.argv[1:], 'pid': os.getpid()}))"
)

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
    reason="glibc on Linux only (the settings are glibc's)",
)


def untuned_env(**extra: str) -> dict:
    env = {k: v for k, v in cli_env().items() if not k.startswith("MALLOC_")}
    env.pop(host_allocator.OPT_OUT, None)
    return {**env, **extra}


def probe(env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, "a b", "--c=1"], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()  # printed once: the first image never reached print
    return json.loads(line)


def test_a_process_without_the_settings_restarts_once_with_them_and_its_argv():
    out = probe(untuned_env())
    assert out["env"] == host_allocator.TUNED
    assert out["argv"] == ["a b", "--c=1"]


def test_the_users_own_values_win_and_the_rest_are_added():
    out = probe(untuned_env(MALLOC_ARENA_MAX="4"))
    assert out["env"] == {**host_allocator.TUNED, "MALLOC_ARENA_MAX": "4"}


def test_opting_out_keeps_glibcs_defaults():
    out = probe(untuned_env(**{host_allocator.OPT_OUT: "system"}))
    assert out["env"] == dict.fromkeys(host_allocator.TUNED)


def test_a_real_launcher_restarted_with_the_settings_parses_its_flags(tmp_path):
    args = ("--config=llp_jax/configs/tiny.py:nope", f"--workdir={tmp_path}")
    tuned = run_cli("train", *args)
    restarted = run_cli("train", *args, env=untuned_env())
    assert tuned.rc == restarted.rc != 0, restarted
    assert restarted.errors == tuned.errors and len(tuned.errors) == 1
    assert "model.name='nope' is unknown" in tuned.errors[0]
    assert restarted.stderr == tuned.stderr  # one line, no trace of the restart


def test_not_applied_where_an_accelerator_plugin_is_installed_unless_jax_runs_on_cpu(monkeypatch):
    real = host_allocator.importlib.util.find_spec
    monkeypatch.setattr(host_allocator.importlib.util, "find_spec",
                        lambda name: object() if name == "libtpu" else real(name))  # fmt: skip
    assert not host_allocator.applies({})
    assert host_allocator.applies({"JAX_PLATFORMS": "cpu"})


def test_a_restart_that_the_system_refuses_warns_once_and_runs_on(tmp_path):
    # An interpreter this user may run but not re-execute by its path (e.g. a venv whose python
    # lives under a directory only root may traverse, run as 'nobody'): here, a path that is gone.
    code = PROBE.replace("host_allocator.ensure()",
                         f"sys.executable = {str(tmp_path / 'gone' / 'python')!r}; "
                         "host_allocator.ensure()")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=untuned_env(), cwd=REPO, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    (warning,) = proc.stderr.splitlines()
    assert warning.startswith("warning: could not restart with the tuned malloc settings")
    assert json.loads(proc.stdout)["env"] == dict.fromkeys(host_allocator.TUNED)


def test_a_launcher_restarts_before_it_imports_jax():
    # execve discards the first image's imports: restarting after them paid for them twice.
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "experiments.train", "--help"],
                          capture_output=True, text=True, env=untuned_env(), cwd=REPO,
                          timeout=120)  # fmt: skip
    assert proc.stdout.startswith("Trains a zoo model"), proc.stdout[-2000:]  # the launcher's doc
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")]  # fmt: skip
    assert imported.count("jax") == 1, proc.stderr[-2000:]
    assert imported.count("llp_jax.cli.host_allocator") == 2  # once per image: it did restart


def test_every_launcher_starts_through_start_py():
    import glob
    import os
    import tomllib

    from llp_jax.cli import start

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert {target for target in scripts.values()} == {
        f"llp_jax.cli.start:{name}" for name in start.LAUNCHERS
    }
    wrappers = {
        os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "experiments", "*.py"))
    }
    assert wrappers - {"__init__"} == set(start.LAUNCHERS)
    for name in start.LAUNCHERS:
        assert os.path.exists(os.path.join(REPO, "llp_jax", "cli", f"{name}.py"))
        text = open(os.path.join(REPO, "experiments", f"{name}.py")).read()
        assert f'start.launch("{name}")' in text
