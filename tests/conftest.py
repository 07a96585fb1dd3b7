"""Test set-up: 8 fake CPU devices and a persistent compilation cache, before JAX starts."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import jax  # noqa: E402  (must come after XLA_FLAGS)

jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("LLP_JAX_TEST_CACHE", os.path.expanduser("~/.cache/llp_jax/jax_cache")),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
