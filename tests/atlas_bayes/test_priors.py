"""Priors: documented defaults, the paper option from published values, plausible prior predictive losses."""

import math

import jax
import numpy as np
import numpyro
import pytest

from atlas_bayes import inference, priors, registry, simulate

MIXTURES = [{"fr": 1.0}, {"en": 1.0}, {"en": 0.5, "fr": 0.5}, {"fr": 0.25, "en": 0.25, "de": 0.25, "sw": 0.25},
            {"fr": 0.5, "sw": 0.5}, {"fr": 0.2, "en": 0.2, "de": 0.2, "sw": 0.2, "hi": 0.2}]
TRUTH = {
    "chinchilla": simulate.PAPER["chinchilla_refit"],
    "dcsl": simulate.PAPER["dcsl"],
    "msl": dict(simulate.PAPER["chinchilla_refit"], gamma=0.05),
    "atlas_mono": dict(simulate.PAPER["chinchilla_refit"], lam=0.1),
    "atlas_other": dict(simulate.PAPER["chinchilla_refit"], lam=0.1, tau_other=0.2),
    "atlas": dict(simulate.PAPER["chinchilla_refit"], lam=0.1, tau_other=0.2),
    "curse": simulate.PAPER["curse"],
}


def test_paper_transfer_weights_come_from_the_bts_matrix():
    mean, sd = priors.paper_tau("fr", "es")  # BTS(es -> fr) = 0.2, measured block
    assert mean == pytest.approx(0.2 / 1.8) and sd == priors.TAU_SD_MEASURED
    mean, sd = priors.paper_tau("sw", "en")  # outside the measured 9 x 9 block: predicted by the authors' forest
    assert sd == priors.TAU_SD_PREDICTED
    assert priors.paper_tau("fr", "fr") is None  # the diagonal is NA
    assert priors.paper_tau("fr", "xx") is None  # not in the matrix: the default applies


def test_prior_arrays_scale_with_the_typical_loss_and_take_paper_values():
    law = registry.get_law("atlas")
    default = priors.prior_arrays(law, targets=["fr", "en"], tau_pairs=[("fr", "es"), ("en", "xx")], L_ref=np.array([3.0, 2.0]))
    np.testing.assert_allclose(default["E"][0], np.log([1.5, 1.0]))  # median E = L_ref / 2
    np.testing.assert_allclose(default["tau"][0], [0.0, 0.0])
    paper = priors.prior_arrays(law, prior="paper", targets=["fr", "en"], tau_pairs=[("fr", "es"), ("en", "xx")],
                                L_ref=np.array([3.0, 2.0]))
    np.testing.assert_allclose(paper["alpha"][0], math.log(0.34))  # Chinchilla's published exponent
    np.testing.assert_allclose(paper["lam"][0], math.log(1 / 15.39))  # 1 / R_D* of Muennighoff et al.
    np.testing.assert_allclose(paper["tau"][0], [0.2 / 1.8, 0.0])  # es -> fr from the matrix, xx off it
    np.testing.assert_allclose(paper["tau"][1], [priors.TAU_SD_MEASURED, priors.DEFAULT["tau"].scale])
    curse = priors.prior_arrays("curse", prior="paper", targets=["fr"], L_ref=np.array([3.0]))
    assert curse["phi"][0][0] == 0.11 and curse["psi"][0][0] == -0.04
    rows = priors.describe("atlas", prior="paper", sources=("es",), target="fr")
    assert {r["param"] for r in rows} == set(law.param_names(("es",)))
    assert next(r for r in rows if r["param"] == "tau_es")["doc"] == "paper transfer matrix"
    with pytest.raises(ValueError, match="unknown prior 'flat'; valid priors: default, paper"):
        priors.prior_arrays(law, prior="flat", targets=["fr"], L_ref=np.array([3.0]))


@pytest.mark.parametrize("law", sorted(registry.LAWS))
@pytest.mark.parametrize("prior", ["default", "paper"])
def test_prior_predictive_losses_are_plausible(law, prior):
    """Prior draws of the runs' losses: finite, positive, of the order of the observed losses."""
    runs = simulate.grid(N=[1e7, 1e8, 1e9], D=[1e9, 1e10, 1e11], mixtures=MIXTURES, U={"fr": 3e9})
    cube = simulate.simulate_cube(law, TRUTH[law], runs, key=jax.random.key(0), sigma=0.01, targets=["fr"])
    m = inference.build_model(cube, law, target="fr", prior=prior)
    data, prior_arrays, _ = m.arrays()
    draws = np.asarray(numpyro.infer.Predictive(m.model, num_samples=400)(jax.random.key(1), data, prior_arrays)["loss"])
    ratio = draws / m.L_ref[0]
    assert np.all(np.isfinite(draws)) and np.all(draws > 0)
    # Weakly informative, not vague: the typical draw is within a factor 2 of the typical observed loss, and
    # 90% of all draws within a factor 10 (400 draws x the runs: quantiles known to a few percent).
    assert 0.5 < np.median(ratio) < 2.0, np.median(ratio)
    lo, hi = np.quantile(ratio, [0.05, 0.95])
    assert 0.1 < lo and hi < 10.0, (lo, hi)
