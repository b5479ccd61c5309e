"""Small simulated run cubes shared by the split and comparison tests."""

import jax
import numpy as np

from atlas_bayes import simulate

__all__ = ["ATLAS", "MIXTURES", "atlas_cube", "chinchilla_cube"]

ATLAS = dict(E=1.6, A=400.0, B=2000.0, alpha=0.34, beta=0.36, lam=0.1, tau_other=0.1, tau_fr=0.5, tau_sw=0.3)
MIXTURES = {  # name -> mixture; the names are what the trainer writes in the cube's `mixture` variable
    "mono:en": {"en": 1.0},
    "bi:en+fr": {"en": 0.5, "fr": 0.5},
    "bi:en+sw": {"en": 0.5, "sw": 0.5},
    "uniform:en+fr+sw": {"en": 1 / 3, "fr": 1 / 3, "sw": 1 / 3},
    "unimax4:en+fr+sw": {"en": 0.6, "fr": 0.2, "sw": 0.2},
}


def atlas_cube(key=0, names=True):
    """80 runs of an ATLAS world, target en: its loss depends on which languages the other tokens come from."""
    runs = simulate.grid(N=[1e7, 3e7, 1e8, 3e8], D=[1e9, 3e9, 1e10, 3e10], mixtures=list(MIXTURES.values()),
                         U={"en": 1e10, "sw": 2e9})
    cube = simulate.simulate_cube("atlas", ATLAS, runs, key=jax.random.key(key), targets=["en"], sigma=0.01)
    if names:
        index = [list(MIXTURES.values()).index({s: w for s, w in zip(runs.srcs, row) if w > 0}) for row in runs.mix]
        cube = cube.assign(mixture=("run", np.asarray([list(MIXTURES)[i] for i in index], dtype=object)))
    return cube


def chinchilla_cube(N=(1e7, 3e7, 1e8, 3e8), D=(1e9, 3e9, 1e10, 3e10), seeds=1, key=0):
    runs = simulate.grid(N=list(N), D=list(D), seeds=seeds)
    return simulate.simulate_cube("chinchilla", simulate.PAPER["chinchilla_refit"], runs, key=jax.random.key(key), sigma=0.01)
