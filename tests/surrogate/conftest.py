"""Shared fixtures: one small simulated cube and one emulator trained on 80% of its runs.

Sizes are kept small (3 languages, 90 runs, 200 Adam steps) so that every surrogate test together
stays well under the suite's CPU budget; one emulator serves most tests (session scope).
"""

import jax
import numpy as np
import pytest

import surrogate
from atlas_bayes import cube as cube_lib

LANGS = ("en", "fr", "sw")


@pytest.fixture(scope="session")
def small_cube():
    return surrogate.multilingual_cube(key=jax.random.key(0), langs=LANGS, sizes=(1e7, 3e7, 1e8),
                                       budgets=(1e9, 3e9, 1e10), n_random=3)


@pytest.fixture(scope="session")
def split(small_cube):
    """A fixed random 80/20 split of the runs (interpolation: held-out runs lie among the training ones)."""
    order = np.random.default_rng(1).permutation(small_cube.sizes["run"])
    n_test = small_cube.sizes["run"] // 5
    return small_cube.isel(run=np.sort(order[n_test:])), small_cube.isel(run=np.sort(order[:n_test]))


@pytest.fixture(scope="session")
def model(split):
    return surrogate.emulate(split[0], steps=150)


@pytest.fixture(scope="session")
def model_path(model, tmp_path_factory):
    return str(model.save(tmp_path_factory.mktemp("surrogate") / "surrogate.nc"))


@pytest.fixture(scope="session")
def cube_path(small_cube, tmp_path_factory):
    return str(cube_lib.save(small_cube, tmp_path_factory.mktemp("surrogate_cube") / "cube.nc"))
