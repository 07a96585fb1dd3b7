"""Text that arrives on a stream, and text that goes out to a terminal or a log, through the
real CLIs.

In: `experiments.evaluate --text=-` reads standard input and `--text=<(zcat a.gz)` a pipe (bash's
process substitution, run by a real bash), each scored exactly as the same text in a file; a
training corpus may not be a stream (a resumed run reads it again): one line saying so.
Out (escaped text: test_printed_text.py): on a terminal a bar per protocol, a warning during a
streamed sample on a line of its own, Ctrl-C keeping the sample made so far. A stdout or
stderr that fails (`> train.log` on a full disk: /dev/full here) or is closed (`>&- 2>&-`) costs no work: the run goes on to its end, saves every checkpoint, and says what
was lost.
"""

from __future__ import annotations

import fcntl
import json
import lzma
import os
import pathlib
import pty
import shlex
import signal
import struct
import subprocess
import termios
import threading
import time

import pytest

from llp_jax.storage import committed_steps
from tests.helpers import REPO
from tests.helpers.cli import PYTHON, Result, assert_one_line_error, run_cli
from tests.reliability.conftest import tiny_args


def _bash(command: str, env: dict, stdin: bytes | None = None) -> Result:
    """`command` run by bash in the checkout (process substitution needs a real shell)."""
    proc = subprocess.run(["bash", "-c", command], input=stdin, capture_output=True, env=env,
                          cwd=REPO, timeout=600)  # fmt: skip
    return Result(proc.returncode, proc.stdout.decode(errors="replace"),
                  proc.stderr.decode(errors="replace"))  # fmt: skip


def _standard_ppl(result: Result) -> str:
    assert result.rc == 0, str(result)
    row = next(line for line in result.stdout.splitlines() if line.startswith("| standard |"))
    return row


@pytest.mark.slow
def test_evaluate_scores_standard_input_and_pipes_as_the_file(victim, env, tmp_path, corpus_file):
    text = open(corpus_file, encoding="utf-8").read()[-4000:]
    plain = tmp_path / "other.txt"
    plain.write_text(text, encoding="utf-8")
    packed = tmp_path / "other.txt.xz"
    packed.write_bytes(lzma.compress(text.encode()))
    evaluate = f"{shlex.quote(PYTHON)} -m experiments.evaluate --workdir={victim} "
    evaluate += "--protocols=standard"
    from_file = _standard_ppl(run_cli("evaluate", f"--workdir={victim}", "--protocols=standard",
                                      f"--text={plain}", env=env))  # fmt: skip
    from_stdin = _standard_ppl(_bash(f"{evaluate} --text=-", env, stdin=text.encode()))
    piped = _bash(f"{evaluate} --text=<(xz -dc {shlex.quote(str(packed))})", env)
    assert from_stdin == from_file
    assert _standard_ppl(piped) == from_file  # a compressed stream, decompressed by a pipe
    assert json.load(open(os.path.join(victim, "eval_text.json")))["split"] == "text"
    empty = _bash(f"{evaluate} --text=- < /dev/null", env)
    assert_one_line_error(empty, "Standard input ('-') holds no text")


@pytest.mark.slow
def test_records_on_standard_input_score_as_the_file(victim, env, tmp_path, corpus_file):
    """`cat reviews.csv | evaluate --text=- --text_field=review` scored the CSV syntax (header,
    quotes, ids) as one plain document; JSON Lines the same. Known by their first line now."""
    text = open(corpus_file, encoding="utf-8").read()[-6000:]
    docs = [text[i : i + 300] for i in range(0, len(text), 300)]
    files = {"r.jsonl": "".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)),
             "r.csv": "id,review\n" + "".join(f'{i},"{d.replace(chr(34), 2 * chr(34))}"\n'
                                               for i, d in enumerate(docs))}  # fmt: skip
    evaluate = f"{shlex.quote(PYTHON)} -m experiments.evaluate --workdir={victim} "
    evaluate += "--protocols=standard"
    for name, body in files.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
        field = "--text_field=review" if name.endswith(".csv") else ""
        named = _standard_ppl(_bash(f"{evaluate} {field} --text={tmp_path / name}", env))
        piped = _bash(f"{evaluate} {field} --text=-", env, stdin=body.encode())
        assert _standard_ppl(piped) == named, name
        assert "standard input read as" in piped.stdout, piped.stdout


def test_standard_input_from_a_terminal_says_how_to_end_it(victim, env, corpus_file):
    """`--text=-` typed at a terminal (or a pipe forgotten) would wait silently: it says what it
    waits for, and Ctrl-D ends the text."""
    text = open(corpus_file, encoding="utf-8").read()[:800]
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~termios.ECHO  # nobody reads the echo
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    proc = subprocess.Popen(
        [PYTHON, "-m", "experiments.evaluate", f"--workdir={victim}", "--protocols=standard",
         "--text=-"], stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        cwd=REPO)  # fmt: skip
    os.close(slave)
    try:
        os.write(master, text.encode() + b"\n\x04")  # the text, then Ctrl-D at a line start
        out, err = proc.communicate(timeout=600)
    finally:
        os.close(master)
    assert proc.returncode == 0, err.decode()
    assert b"end it with Ctrl-D" in err and b"| standard |" in out, (out, err)


def test_evaluation_shows_a_bar_on_a_terminal_and_none_in_a_log(victim, env):
    """A long evaluation printed nothing until its table (a paper-size model on a long split:
    many minutes). On a terminal a bar per protocol says how far it is, then clears; a log
    (a pipe) gets only the table."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [PYTHON, "-m", "experiments.evaluate", f"--workdir={victim}", "--batch_size=1",
         "--out=/dev/null"], stdout=subprocess.PIPE, stderr=slave, env=env, cwd=REPO,
    )  # fmt: skip
    os.close(slave)
    shown = b""
    while chunk := _read_some(master):
        shown += chunk
    out, _ = proc.communicate(timeout=600)
    os.close(master)
    assert proc.returncode == 0 and b"| standard |" in out, (out, shown)
    for protocol in (b"standard: ", b"paper: ", b"stream: "):
        assert protocol in shown, shown[-2000:]
    assert b" windows/s]" in shown and b" chunks/s]" in shown
    logged = run_cli("evaluate", f"--workdir={victim}", "--out=/dev/null", env=env)
    assert logged.rc == 0 and "windows" not in logged.stderr, str(logged)


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the terminal's other end closed: the program ended
        return b""


def test_a_training_corpus_may_not_be_a_stream(server, env, tmp_path, corpus_file):
    stdin = server.run("train", *tiny_args(tmp_path / "a", "-"))
    assert_one_line_error(stdin, "'-' (standard input) can be evaluated", "save the text to a file")
    args = " ".join(shlex.quote(a) for a in tiny_args(tmp_path / "b", "PIPE"))
    piped = _bash(f"{shlex.quote(PYTHON)} -m experiments.train "
                  + args.replace("=PIPE", f"=<(cat {shlex.quote(str(corpus_file))})"), env)  # fmt: skip
    assert_one_line_error(piped, "is a pipe or device", "save it to a file first")


def _quoted(program: str, args) -> str:
    return " ".join(
        shlex.quote(a) for a in (PYTHON, "-m", f"experiments.{program}", *map(str, args))
    )


@pytest.mark.slow
def test_a_failing_or_closed_standard_stream_costs_no_work(env, tmp_path, corpus_file):
    full = tmp_path / "full"
    result = _bash(_quoted("train", tiny_args(full, corpus_file)) + " > /dev/full", env)
    line = assert_one_line_error(result, "stdout could not be written (no space left on device)")
    assert "ran to its end" in line and "warning: stdout cannot be written" in result.stderr
    assert committed_steps(full / "checkpoints") == [2, 4]
    assert json.load(open(full / "summary.json"))["steps_run"] == 4
    # Its report goes to a full disk too: the report file is written, the loss is said.
    evaluate = _quoted(
        "evaluate", [f"--workdir={full}", "--protocols=standard", "--max_tokens=600"]
    )
    report = _bash(evaluate + " > /dev/full", env)
    assert_one_line_error(report, "stdout could not be written")
    assert json.load(open(full / "eval_validation.json"))["results"]
    # stderr on a full disk (`2> err.log`): the progress bar's first write ended the run.
    quiet = tmp_path / "quiet"
    result = _bash(_quoted("train", tiny_args(quiet, corpus_file)) + " 2> /dev/full", env)
    assert result.rc == 1 and "Traceback" not in result.stdout, str(result)
    assert "warning: stderr cannot be written (no space left on device)" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("error: stderr could not be written")
    assert committed_steps(quiet / "checkpoints") == [2, 4]
    # Every standard stream closed: nothing of the run's files is lost or overwritten by logs.
    closed = tmp_path / "closed"
    result = _bash(_quoted("train", tiny_args(closed, corpus_file)) + " <&- >&- 2>&-", env)
    assert result.rc == 0 and not result.stdout and not result.stderr, str(result)
    assert committed_steps(closed / "checkpoints") == [2, 4]
    with open(closed / "metrics.jsonl") as f:
        assert all(json.loads(line) for line in f)
    sample = _bash(_quoted("sample", [f"--workdir={closed}", "--max_new_tokens=4"]) + " >&-", env)
    assert sample.rc == 0 and "Traceback" not in sample.stderr, str(sample)


# An untrained model's sample of ~45 min (it draws the end-of-document token now and then: -1
# keeps it going).
_LONG_SAMPLE = ["--config=llp_jax/configs/tiny.py", "--config.model.d_model=256",
                "--config.model.num_layers=4", "--max_new_tokens=1000000", "--stop_id=-1"]  # fmt: skip


def _ignoring_sigint(*command: str) -> list[str]:
    """`command` as a shell script's background job (`cmd &`, `nohup cmd &`) runs it: SIGINT
    ignored, which Python keeps ignored unless the program says otherwise. (The suite itself may
    be such a job: these tests failed when it was started in the background.) A shell's trap,
    not `preexec_fn`, which forks this multithreaded process."""
    return ["bash", "-c", 'trap "" INT; exec "$@"', "bash", *command]


def test_ctrl_c_ends_a_long_sample_at_once_keeping_its_text(env):
    """A sample is printed as it is generated, and Ctrl-C ends it at once. It used to be one XLA
    call printed at its end: Ctrl-C printed its line, then waited for the whole call (minutes)
    while the interpreter's exit tore down the XLA client, and the text was lost. Started with
    SIGINT ignored (a background job), `kill -INT` did nothing at all."""
    proc = subprocess.Popen(_ignoring_sigint(PYTHON, "-m", "experiments.sample", *_LONG_SAMPLE),
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    watchdog = threading.Timer(120, proc.kill)  # a sample that prints nothing: fail, not hang
    watchdog.start()
    try:
        assert proc.stdout.readline().startswith(b"llp (untrained")
        assert proc.stdout.readline() == b"--- sample 0\n"
        first = proc.stdout.read(200)  # the prompt (~40 bytes), then the first new tokens
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        out, err = proc.communicate(timeout=120)
        assert time.monotonic() - started < 10 and proc.returncode == 130, err.decode()
        assert first.startswith(b"Persuasion by Jane Austen") and out.endswith(b"\n")
        assert err.decode().strip().endswith("error: interrupted (Ctrl-C)"), err.decode()
    finally:
        watchdog.cancel()
        proc.kill()


@pytest.mark.parametrize("signum,rc,line", [
    (signal.SIGINT, 130, "error: interrupted (Ctrl-C)"),
    (signal.SIGTERM, 143, "error: stopped by SIGTERM"),  # kill, timeout, a scheduler
    (signal.SIGUSR1, 138, "error: stopped by SIGUSR1"),  # a batch scheduler's warning
])  # fmt: skip
def test_ctrl_c_prints_the_samples_made_so_far(env, signum, rc, line):
    """Several samples grow behind a progress bar; Ctrl-C prints each as far as it got, and so
    does SIGTERM (its default action ended the program at once: every sample was lost)."""
    args = [*_LONG_SAMPLE, "--num_samples=3"]
    proc = subprocess.Popen(_ignoring_sigint(PYTHON, "-m", "experiments.sample", *args),
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout.readline().startswith(b"llp (untrained")
        time.sleep(12)  # compiled, and some blocks made
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == rc, err.decode()
        samples = out.decode().split("--- sample ")[1:]
        assert [s[0] for s in samples] == ["0", "1", "2"], out.decode()
        assert all(len(s) > 100 for s in samples)  # the prompt (46) and what followed
        assert " tok/s]" in err.decode() and err.decode().strip().endswith(line), err.decode()
    finally:
        watchdog.cancel()
        proc.kill()


def test_a_warning_during_a_streamed_sample_starts_its_own_line(victim, env):
    """A workdir trained on a GPU (attention_impl='cudnn') sampled on a CPU warns while the
    sample streams: on a terminal (stdout and stderr one destination) the warning landed inside
    the text ("...where livedwarning: attention: ..."); now it starts a line of its own, and
    stdout alone (redirected apart) is the same text as before, with no line break added."""
    for meta in pathlib.Path(victim, "checkpoints").glob("*/meta/metadata"):
        record = json.loads(meta.read_text())
        record["model"]["attention_impl"] = "cudnn"
        meta.write_text(json.dumps(record))
    args = [f"--workdir={victim}", "--prompt=It was", "--max_new_tokens=8", "--seed=3"]
    quoted = " ".join(shlex.quote(a) for a in args)
    together = _bash(f"{shlex.quote(PYTHON)} -m experiments.sample {quoted} 2>&1", env)
    apart = run_cli("sample", *args, env=env)
    assert together.rc == 0 and apart.rc == 0, (str(together), str(apart))
    warning = "warning: attention: impl='cudnn' needs a GPU (backend is cpu); using impl='xla'"
    assert f"\n{warning}\n" in together.stdout, together.stdout
    body = apart.stdout.split("--- sample 0\n", 1)[1]
    assert warning not in apart.stdout and warning in apart.stderr
    assert together.stdout.split("--- sample 0\n", 1)[1].replace(f"\n{warning}\n", "") == body
