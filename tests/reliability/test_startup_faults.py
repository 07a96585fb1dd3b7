"""Faults of the machine rather than the data or the config: a JAX platform that cannot start,
a multi-host cluster that cannot form, and work too big for this machine's memory (a
checkpoint to read, a train step, an evaluation batch, a batch of samples).

Each used to end in a traceback from inside JAX, a fatal C++ abort, or worse, read as a damaged
checkpoint: the reader skipped the good step (the trainer set it aside) and advised starting
over with --noresume. Every case here runs the real programs (or, for memory, a real numpy
MemoryError under tensorstore's read) and checks the one line and that nothing moved.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from llp_jax.storage import committed_steps
from llp_jax.training import distributed
from tests.helpers import REPO
from tests.helpers.cli import assert_one_line_error, run_cli
from tests.reliability import faults
from tests.reliability.conftest import params_digest, tiny_args

# Platforms this CPU-only jax cannot start: libtpu is not installed (RuntimeError inside JAX),
# no CUDA plugin (a bare AssertionError inside JAX), a name JAX does not know.
MISSING_PLATFORMS = ["tpu", "cuda", "nosuch"]


def _untouched(workdir, trained) -> None:
    """The run's checkpoints are where they were, whole: nothing set aside as damaged."""
    assert committed_steps(os.path.join(workdir, "checkpoints")) == [2, 4]
    assert not os.path.exists(os.path.join(workdir, "damaged_checkpoints"))
    assert params_digest(workdir, 4) == trained["digest"][4]


@pytest.mark.parametrize("platform", MISSING_PLATFORMS)
def test_a_platform_that_cannot_start_is_not_a_damaged_checkpoint(victim, trained, env, platform):
    """evaluate used to say 'no intact checkpoint ... train again with --noresume'."""
    result = run_cli("evaluate", f"--workdir={victim}", env={**env, "JAX_PLATFORMS": platform})
    line = assert_one_line_error(result, f"JAX_PLATFORMS={platform}", "unset JAX_PLATFORMS")
    assert "checkpoint" not in line and "noresume" not in line, line
    _untouched(victim, trained)


@pytest.mark.parametrize(
    "program, args",
    [
        ("train", ()),  # resuming: used to print JAX's traceback
        ("sample", ()),
        ("benchmark_step", ("--variants=llp", "--rounds=1")),
        ("model_summary", ()),
    ],
)
def test_every_program_names_the_platform_setting(victim, trained, env, corpus_file, program,
                                                  args):  # fmt: skip
    argv = tiny_args(victim, corpus_file, steps=6) if program == "train" else list(args)
    if program == "sample":
        argv = [f"--workdir={victim}"]
    result = run_cli(program, *argv, env={**env, "JAX_PLATFORMS": "tpu"})
    assert_one_line_error(result, "JAX could not start the platform JAX_PLATFORMS=tpu",
                          "libtpu")  # fmt: skip
    _untouched(victim, trained)


def test_python_api_raises_backend_error(victim, env):
    """`import llp_jax` users get the same one line as an LLPError (build, load_model)."""
    code = textwrap.dedent(f"""
        import llp_jax
        for call in (lambda: llp_jax.build(llp_jax.models.tiny("llp")),
                     lambda: llp_jax.load_model({str(victim)!r})):
            try:
                call()
            except llp_jax.LLPError as e:
                print(type(e).__name__, "|", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**env, "JAX_PLATFORMS": "tpu"}, timeout=300)  # fmt: skip
    lines = [line for line in out.stdout.splitlines() if line.startswith("BackendError |")]
    assert len(lines) == 2, out.stdout + out.stderr
    assert all("JAX_PLATFORMS=tpu" in line for line in lines), lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (("--num_processes=2", "--process_id=0"), ("only with --coordinator_address",)),
        (("--process_id=1",), ("would train as one process",)),
        (("--coordinator_address=127.0.0.1:{port}", "--num_processes=2", "--process_id=2"),
         ("process_id=2 must be below num_processes=2",)),
        (("--coordinator_address=127.0.0.1:{port}", "--num_processes=0", "--process_id=0"),
         ("num_processes=0 must be an int >= 1",)),
        (("--coordinator_address=localhost", "--num_processes=2", "--process_id=0"),
         ("must be host:port",)),
        (("--coordinator_address=127.0.0.1:99999", "--num_processes=2", "--process_id=0"),
         ("must be host:port",)),
        (("--coordinator_address=no-such-host.invalid:{port}", "--num_processes=2",
          "--process_id=1"), ("cannot resolve 'no-such-host.invalid'",)),
        (("--distributed",), ("no cluster was detected",)),
        (("--coordinator_address=127.0.0.1:{port}",), ("no cluster was detected",)),
    ],
)  # fmt: skip
def test_multi_host_arguments_get_one_line(tmp_path, env, corpus_file, flags, fragments):
    """JAX raised these from inside jax.distributed (or, for ids without an address, trained
    one process as if nothing had been asked)."""
    port = _free_port()
    extra = [f.format(port=port) for f in flags]
    result = run_cli("train", *tiny_args(tmp_path / "w", corpus_file), *extra, env=env,
                     timeout=120)  # fmt: skip
    assert_one_line_error(result, *fragments)
    assert not os.path.exists(tmp_path / "w" / "checkpoints")


def test_no_coordinator_is_one_line_within_the_timeout(tmp_path, env, corpus_file):
    """Process 1 whose process 0 never starts: JAX's client aborted the process (a fatal C++
    log, exit 134) after its 300 s; it now waits --distributed_timeout and says so."""
    port = _free_port()
    start = time.monotonic()
    result = run_cli("train", *tiny_args(tmp_path / "w", corpus_file),
                     f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                     "--process_id=1", "--distributed_timeout=3", env=env, timeout=120)  # fmt: skip
    assert_one_line_error(result, f"no coordinator answered at 127.0.0.1:{port} within 3 s",
                          "start process 0")  # fmt: skip
    assert time.monotonic() - start < 60


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("127.0.0.1:1234", True, 0), "num_processes=True must be an int >= 1"),
        (("127.0.0.1:1234", 2, -1), "process_id=-1 must be an int >= 0"),
        (("127.0.0.1:1234", 2.0, 0), "num_processes=2.0 must be an int >= 1"),
        (("127.0.0.1:", 2, 0), "must be host:port"),
        ((":1234", 2, 0), "must be host:port"),
        (("host:port", 2, 0), "must be host:port"),
    ],
)
def test_cluster_arguments_are_checked_before_jax_sees_them(args, fragment):
    with pytest.raises(distributed.DistributedError) as info:
        distributed.check_cluster_args(*args)
    assert fragment in str(info.value)


@pytest.mark.parametrize("address", ["10.0.0.2:1234", "[::1]:8476", "node-0.cluster:80"])
def test_good_cluster_arguments_pass(address):
    distributed.check_cluster_args(address, 4, 3)
    distributed.check_cluster_args(None, None, None)


_OUT_OF_MEMORY = textwrap.dedent("""
    import resource, sys
    import jax, jax.numpy as jnp
    from llp_jax import LLPError
    from llp_jax.storage import Checkpointer, load_params, newest_readable

    directory, how = sys.argv[1], sys.argv[2]
    if how == "save":
        ck = Checkpointer(directory, async_save=False)
        for step in (1, 2):  # an older step too: the reader must not fall back to it
            w = jnp.full((256, 1024, 1024), step, jnp.float32)  # 1 GiB
            state = {"params": {"w": w}}
            ck.save(step, state, meta={"step": step}, force=True)
        ck.wait_until_finished()
        sys.exit(0)
    ck = Checkpointer(directory, set_aside_damaged=True)
    # Room for the reader's threads and buffers, not for the 1 GiB array.
    vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1])
    resource.setrlimit(resource.RLIMIT_AS, (vm * 1024 + (600 << 20), resource.RLIM_INFINITY))
    try:
        if how == "trainer":
            ck.restore()
        else:
            newest_readable(directory, lambda step: load_params(directory, step))
        print("READ")
    except LLPError as e:
        print(type(e).__name__, "|", e)
""")


@pytest.mark.parametrize("how", ["trainer", "reader"])
def test_a_checkpoint_too_big_for_memory_is_kept(tmp_path, env, how):
    """Resuming or evaluating on a machine with less memory: a real MemoryError from numpy,
    under tensorstore's read error. The trainer used to set the newest (good) step aside and
    fall back to an older one; now both readers stop with one line and move nothing."""
    directory = str(tmp_path / "checkpoints")
    script = tmp_path / "oom.py"
    script.write_text(_OUT_OF_MEMORY)
    saved = subprocess.run([sys.executable, str(script), directory, "save"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert saved.returncode == 0, saved.stderr[-2000:]
    out = subprocess.run([sys.executable, str(script), directory, how], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    lines = [line for line in out.stdout.splitlines() if "|" in line]
    assert len(lines) == 1, out.stdout + out.stderr[-3000:]
    assert lines[0].startswith("CheckpointReadError |"), lines[0]
    for fragment in ("cannot read checkpoint step 2", "out of memory", "MemoryError",
                     "is kept as it is"):  # fmt: skip
        assert fragment in lines[0], lines[0]
    assert committed_steps(directory) == [1, 2]
    assert not os.path.exists(tmp_path / "damaged_checkpoints")


# An address-space limit well below what the oversized runs below allocate (tens of GB), well
# above what the programs need to start (~1-2 GB mapped).
LIMITED = ("prlimit", f"--as={6 << 30}")


@pytest.mark.parametrize(
    "program, flags, fragments",
    [
        ("train", {"steps": 6, "train__batch_size": 1 << 16},
         ("training, by step 5", "train.batch_size=65536", "train.grad_accum_steps=1",
          "the last checkpoint (step 4) is intact: rerun to resume from it")),
        # A text of 8M tokens: the rows never outnumber its windows, nor a stream chunk its
        # tokens (the victim's own text, a few thousand tokens, now fits at any batch_size).
        ("evaluate", ("--batch_size=10000000", "--protocols=standard", "--text=BIG"),
         ("lower batch_size=10000000 (windows of 64 tokens per forward pass)",)),
        ("evaluate", ("--protocols=stream", "--window=1000000000", "--text=BIG"),
         ("give a smaller window (the stream's chunk, now 8000016 tokens)",)),  # + end of text
        ("sample", ("--num_samples=1000000", "--max_new_tokens=4"),
         ("generate fewer rows at once (the prompt has 1000000; sample: --num_samples)",)),
    ],
)  # fmt: skip
def test_out_of_memory_names_what_to_make_smaller(victim, trained, env, corpus_file, program,
                                                  flags, fragments, tmp_path):  # fmt: skip
    """Each of these printed JAX's RESOURCE_EXHAUSTED / 'Out of memory allocating' traceback;
    the trainer's run stops at the last checkpoint, which nothing touches."""
    if program == "train":
        argv = tiny_args(victim, corpus_file, **flags)
    else:
        big = tmp_path / "big.txt"
        big.write_text("the cat sat on the mat. " * (8_000_000 // 24) + "x" * 9)
        argv = [f"--workdir={victim}", *(f.replace("BIG", str(big)) for f in flags)]
    result = run_cli(program, *argv, env=env, prefix=LIMITED)
    assert_one_line_error(result, "error: out of memory (", *fragments)
    _untouched(victim, trained)


@pytest.mark.parametrize("program", ["evaluate", "train"])
def test_an_unreadable_checkpoint_is_kept(trained, env, corpus_file, program):
    """A workdir another user wrote (a shared cluster folder): Orbax swallowed the permission
    error reading the step's metadata, the step failed with a TypeError and read as damaged
    (evaluate: 'train again with --noresume'; the trainer would set it aside)."""
    with faults.as_nobody(env) as (prefix, shared, env):
        workdir = os.path.join(shared, "run")
        shutil.copytree(trained["dir"], workdir)
        for folder, _, files in os.walk(workdir):  # the run readable and writable by all ...
            os.chmod(folder, 0o777)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o666)
        step = os.path.join(workdir, "checkpoints", "4", "state")
        for folder, _, files in os.walk(step):  # ... but the newest step's arrays root's own
            for name in files:
                if f"{os.sep}d{os.sep}" in os.path.join(folder, name):
                    os.chmod(os.path.join(folder, name), 0o600)
        corpus = shutil.copy(corpus_file, os.path.join(shared, "corpus.txt"))
        os.chmod(corpus, 0o644)
        argv = ([*tiny_args(workdir, corpus, steps=6), "--allow_data_change"]
                if program == "train" else [f"--workdir={workdir}"])  # fmt: skip
        result = run_cli(program, *argv, env=env, prefix=prefix)
        assert_one_line_error(result, "cannot read checkpoint step 4", "permission denied on",
                              "make its files readable")  # fmt: skip
        assert committed_steps(os.path.join(workdir, "checkpoints")) == [2, 4]
        assert not os.path.exists(os.path.join(workdir, "damaged_checkpoints"))
