"""Helpers of the Bayesian tests (fixtures in conftest.py): cubes, sampler settings, prior-predictive draws.

A NUTS program is compiled once per model structure, data shape and sampler setting (the slow part
of a fit: ~10 s on this machine, the sampling itself well under a second). Every test that needs
a real Chinchilla posterior uses :data:`NUTS` on a cube of :func:`chinchilla_cube`'s shape, so one
compilation serves the three test files, and refits on other data of that shape (held-out weights,
prior-predictive recovery, the ``paper`` prior) reuse it.
"""

import jax
import numpy as np
from numpyro.infer import Predictive

from atlas_bayes import inference, simulate

CHINCHILLA = simulate.PAPER["chinchilla_refit"]
# 4 chains at target_accept 0.95: this posterior has a curved tail (low E traded against a large data
# term at small beta) where 2 chains at 0.8 diverged a few times in 2000 draws; measured clean on seeds 1-6.
NUTS = dict(num_chains=4, num_warmup=500, num_samples=1000, target_accept=0.95)


def chinchilla_cube(*, sigma=0.01, key=3, seeds=1):
    """25 runs (5 sizes x 5 token budgets), or 25 configurations x ``seeds``."""
    runs = simulate.grid(N=[1e7, 3e7, 1e8, 3e8, 1e9], D=[1e9, 3e9, 1e10, 3e10, 1e11], seeds=seeds)
    return simulate.simulate_cube("chinchilla", CHINCHILLA, runs, key=jax.random.key(key), sigma=sigma)


def prior_cube(cube, law, *, key, target=None, **model_kwargs):
    """A cube whose losses are one draw of the prior predictive of ``law``'s model on ``cube``'s runs.

    Returns ``(cube, truth)``: ``truth`` the drawn parameters (SPEC names, natural units, one target).
    The model's priors are scaled by the template's typical loss ``L_ref``; the fit of the new cube
    scales them by its own, which moves the priors a little (no more than the median loss moves).
    """
    m = inference.build_model(cube, law, target=target, **model_kwargs)
    data, priors, _ = m.arrays()
    draw = {k: np.asarray(v)[0] for k, v in Predictive(m.model, num_samples=1)(key, data, priors).items()}
    loss = np.empty(len(m.obs.loss))
    loss[m.order] = draw["loss"]
    t = m.obs.targets[0]
    values = cube["loss"].values.copy()
    rows = {str(r): i for i, r in enumerate(cube["run"].values)}
    values[[rows[str(r)] for r in m.obs.run], list(cube["lang"].values).index(t)] = loss
    names = m.obs.law.param_names(m.obs.sources[0])
    truth = {n: float(np.asarray(draw[n]).reshape(-1)[0]) for n in names if n in draw}
    truth["sigma"] = float(np.asarray(draw["sigma"]).reshape(-1)[0])
    return cube.assign(loss=(cube["loss"].dims, values, cube["loss"].attrs)), truth
