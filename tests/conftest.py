"""Test set-up: 8 fake CPU devices and a persistent compilation cache, before JAX starts; the
fixtures every test directory shares."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
# One compilation cache for the suite and, through the environment, every program it starts
# (launchers, forked CLI servers, notebooks, multi-host processes): a tiny training run's
# process takes ~6 s with it warm and ~20 s compiling from scratch. Its entries are keyed by the
# program, the flags and the devices, so a cached executable is the one a compilation would give.
CACHE = os.environ.get("LLP_JAX_TEST_CACHE", os.path.expanduser("~/.cache/llp_jax/jax_cache"))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402  (must come after XLA_FLAGS)
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_collection_modifyitems(config, items):
    """Files holding a `slow` test first, each file's tests kept together and in order. Under
    scripts/test.sh's workers (`--dist loadfile`, files handed out in this order) the long
    files start at once and the run ends on short ones: in xdist's own order (most tests
    first) one worker spent the last ~10 minutes alone on them."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    """A small corpus (~60 kB) so data loading is instant."""
    from llp_jax.data import load_austen

    text = load_austen().splits["validation"][:60_000]
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_text(text)
    return str(path)


@pytest.fixture(params=["native", "float32"])
def cpu_bf16_mode(request, monkeypatch):
    """Each way bfloat16 matmuls can run on CPU (`matmul.cpu_bf16_matmuls`), whatever this CPU
    has: 'native' (bfloat16 operands) and 'float32' (widened first, for CPUs without bfloat16
    units). JAX's trace caches are cleared around it: the choice is made while tracing."""
    monkeypatch.setenv("LLP_JAX_CPU_BF16", request.param)
    jax.clear_caches()
    yield request.param
    jax.clear_caches()


@pytest.fixture
def native_bf16(monkeypatch):
    """The native bfloat16 CPU forms, as on a CPU with bfloat16 units (AMX, AVX512-BF16)."""
    monkeypatch.setenv("LLP_JAX_CPU_BF16", "native")
    jax.clear_caches()
    yield
    jax.clear_caches()
