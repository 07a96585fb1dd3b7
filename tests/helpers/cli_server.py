"""A fork server for the real command-line programs: it imports what llp_jax's CLI modules need
once, then
for each request forks a child that runs `<module>.entry()` with the given argv, its stdout
and stderr going to files, as `python -m experiments.<name>` would run it (an uncaught
exception prints its traceback and exits 1, as the interpreter does). Only the import is
shared, so hundreds of fuzzed invocations cost milliseconds each instead of seconds.

Protocol: one JSON object per line on stdin, {"op", "module", "argv", "stdout", "stderr", "env"};
one JSON object per line on stdout: op 'run' (the default) -> {"rc"}; op 'spawn' -> {"pid"} at
once (the caller may signal that process), then op 'wait' with that "pid" -> {"rc"}.
"""

import importlib
import json
import os
import sys
import traceback

# Everything the programs import, except the programs themselves: each defines its absl flags
# at import, so each child imports its own, into a fresh flag registry.
PRELOAD = ("llp_jax.studies", "llp_jax.evaluation.runner", "llp_jax.interop", "llp_jax.cli.common",
           "ml_collections.config_flags")  # fmt: skip


def child(request: dict) -> None:
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, fd)
        os.close(out)
    os.environ.update(request.get("env") or {})
    module = importlib.import_module(f"llp_jax.cli.{request['module']}")
    sys.argv = [f"llp-{request['module']}", *request["argv"]]
    code = 0
    try:
        module.entry()
    except SystemExit as e:
        if isinstance(e.code, str):
            sys.stderr.write(e.code + "\n")
            code = 1
        else:
            code = e.code or 0
    except BaseException:  # noqa: BLE001  what the interpreter would print
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    # A forked child must not re-execute itself (it would re-run this server): it keeps this
    # process's allocator, whatever the suite was started with.
    os.environ.setdefault("LLP_JAX_HOST_MALLOC", "system")
    for name in PRELOAD:
        importlib.import_module(name)
    reply = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        op = request.get("op", "run")
        if op == "wait":
            _, status = os.waitpid(request["pid"], 0)
            answer = {"rc": os.waitstatus_to_exitcode(status)}
        else:
            pid = os.fork()
            if pid == 0:
                child(request)
            if op == "spawn":  # the caller signals it, then asks for its exit code
                answer = {"pid": pid}
            else:
                _, status = os.waitpid(pid, 0)
                answer = {"rc": os.waitstatus_to_exitcode(status)}
        reply.write(json.dumps(answer) + "\n")
        reply.flush()


if __name__ == "__main__":
    main()
