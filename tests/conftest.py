"""Test configuration: JAX on 2 host CPU devices (multi-chain and sharded code runs in CI),
float32 by default, warnings as errors (pyproject's filterwarnings), and one persistent XLA compilation
cache for the whole session.

The cache is a fresh folder per ``pytest`` invocation, made by the controlling process and inherited by
the xdist workers and by the subprocesses the tests start (the examples, the CLI): many tests fit the same
model to data of the same shapes, and NumPyro builds a new closure per fit, so without a cache each one
compiles its sampler again. Nothing is reused from an earlier session, so no test depends on what an
earlier one left behind.
"""

import atexit
import os
import shutil
import tempfile

# Must be set before JAX is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the controller (xdist workers inherit its folder)
    _cache = tempfile.mkdtemp(prefix="atlas-test-xla-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"

import jax  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    assert jax.device_count() == 2, "tests expect 2 host CPU devices (XLA_FLAGS)"


@pytest.fixture
def key():
    return jax.random.key(0)
