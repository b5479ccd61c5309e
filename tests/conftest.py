"""Test configuration: JAX on 2 host CPU devices (multi-chain and sharded code runs in CI),
float32 by default, warnings as errors (pyproject's filterwarnings)."""

import os

# Must be set before JAX is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    assert jax.device_count() == 2, "tests expect 2 host CPU devices (XLA_FLAGS)"


@pytest.fixture
def key():
    return jax.random.key(0)
