"""Session fixtures of the Bayesian tests: one Chinchilla NUTS posterior shared by the inference,
predict and optimal tests (see bayes_fixtures.py for why the settings are shared)."""

import pytest
from bayes_fixtures import NUTS, chinchilla_cube

from atlas_bayes import inference


@pytest.fixture(scope="session")
def chin_cube():
    return chinchilla_cube()


@pytest.fixture(scope="session")
def chin_nuts(chin_cube):
    """NUTS posterior of the Chinchilla law on :func:`chinchilla_cube` (diagnostics checked: no warning)."""
    return inference.fit_bayes(chin_cube, "chinchilla", seed=1, **NUTS)
