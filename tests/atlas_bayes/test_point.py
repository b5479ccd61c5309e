"""Point fits recover known parameters from simulated cubes (Huber / L-BFGS, paper convention)."""

import math

import jax
import numpy as np
import pytest

from atlas_bayes import point, registry, results, simulate

N_GRID = [1e7, 3e7, 1e8, 3e8, 1e9]
D_GRID = [1e9, 3e9, 1e10, 3e10, 1e11]
TRUTH = simulate.PAPER["chinchilla_refit"]


def _mono_cube(sigma=0.0, key=0, U=None):
    runs = simulate.grid(N=N_GRID, D=D_GRID, U=U)
    return simulate.simulate_cube("chinchilla" if U is None else "dcsl",
                                  TRUTH if U is None else simulate.PAPER["dcsl"], runs,
                                  key=jax.random.key(key), sigma=sigma)


def test_full_chinchilla_grid_recovers_noise_free_parameters():
    """The paper convention (4500 starts) on exact data lands on the truth."""
    fit = point.fit_point(_mono_cube(), "chinchilla", bootstrap=0)
    assert fit.config.options["n_starts"] == 4500
    for name, value in TRUTH.items():
        # noise-free data, float64 L-BFGS to gradient norm 1e-10: only conditioning limits this
        assert fit.estimate[name] == pytest.approx(value, rel=2e-3), name


def test_bootstrap_interval_covers_truth_under_noise():
    fit = point.fit_point(_mono_cube(sigma=0.01, key=3), "chinchilla", bootstrap=100, max_starts=300)
    table = results.summary(fit, level=0.95)
    for name in ("E", "alpha", "beta"):
        row = table.loc[name]
        assert row["lower"] <= TRUTH[name] <= row["upper"], (name, row.to_dict())
        assert row["sd"] > 0
    assert table.loc["sigma", "estimate"] == pytest.approx(0.01, rel=0.3)  # 25 residuals: sd of sd ~ 15%


def test_fix_holds_parameters_two_stage_dcsl():
    """DCSL's two stages: base law held fixed, the two decay constants fitted (Muennighoff et al.)."""
    truth = simulate.PAPER["dcsl"]
    runs = simulate.grid(N=[1e7, 1e8, 1e9], D=[1e9, 1e10, 1e11, 1e12], U={"xx": 2e9})
    cube = simulate.simulate_cube("dcsl", truth, runs, key=jax.random.key(0), sigma=0.0)
    base = {k: truth[k] for k in ("E", "A", "B", "alpha", "beta")}
    fit = point.fit_point(cube, "dcsl", fix=base, bootstrap=0)
    assert fit.config.fixed == base
    assert fit.estimate["R_D_star"] == pytest.approx(truth["R_D_star"], rel=1e-2)  # noise-free, f64
    assert fit.estimate["E"] == truth["E"]
    text_fit = point.fit_point(cube, "dcsl", fix="E=1.87,A=521,B=1488,alpha=0.3527,beta=0.3527", bootstrap=0)
    assert text_fit.estimate["R_D_star"] == pytest.approx(fit.estimate["R_D_star"], rel=1e-6)


@pytest.mark.parametrize(
    "law", ["msl", "curse", *[pytest.param(n, marks=pytest.mark.slow) for n in ("atlas_mono", "atlas_other", "atlas")]]
)
def test_every_law_fits_its_own_simulation(law):
    """Any registry law: simulate noise-free, fit from the full grid, predictions match the data.

    (Random subsets of a few hundred starts miss the basin of the ATLAS variants now and then; the
    full grid is the paper convention and finds it.)
    """
    mixtures = [{"en": 1.0}, {"fr": 1.0}, {"en": 0.5, "fr": 0.5}, {"en": 0.25, "fr": 0.25, "de": 0.25, "sw": 0.25},
                {"fr": 0.5, "hi": 0.5}, {"fr": 0.25, "sw": 0.75}]
    runs = simulate.grid(N=[1e7, 1e8, 1e9], D=[1e9, 1e10, 1e11], mixtures=mixtures, U={"fr": 3e9})
    params = {
        "msl": dict(TRUTH, gamma=0.05),
        "atlas_mono": dict(TRUTH, lam=0.1),
        "atlas_other": dict(TRUTH, lam=0.1, tau_other=0.3),
        "atlas": dict(TRUTH, lam=0.1, tau_other=0.2, tau_en=0.4),
        "curse": simulate.PAPER["curse"],
    }[law]
    cube = simulate.simulate_cube(law, params, runs, key=jax.random.key(0), sigma=0.0, targets=["fr"])
    fit = point.fit_point(cube, law, target="fr", bootstrap=0)
    d = registry.design(cube, law, target="fr")
    pred = np.asarray(registry.get_law(law).evaluate(d.x, fit.estimate, d.sources))
    # noise-free data: the fit reproduces every loss to well under the Huber delta (1e-3 in log)
    assert np.max(np.abs(np.log(pred) - np.log(d.loss))) < 1e-3
    assert fit.config.options["excluded_cells"] == 0


def test_unidentified_parameters_are_reported():
    """Only en is ever mixed with fr (so D_other = 0) and no language repeats data (so lam is moot)."""
    runs = simulate.grid(N=[1e7, 1e8, 1e9], D=[1e9, 1e10, 1e11], mixtures=[{"fr": 1.0}, {"fr": 0.5, "en": 0.5}])
    cube = simulate.simulate_cube("atlas", dict(TRUTH, lam=0.1, tau_other=0.3, tau_en=0.2), runs,
                                  key=jax.random.key(0), sigma=0.0, targets=["fr"])
    with pytest.warns(UserWarning) as record:
        fit = point.fit_point(cube, "atlas", target="fr", bootstrap=0, max_starts=200)
    messages = " ".join(str(r.message) for r in record)
    assert "lam is not identified by these runs" in messages
    assert "tau_other is not identified by these runs" in messages
    assert fit.config.options["unidentified"] == ["lam", "tau_other"]
    assert fit.estimate["tau_en"] == pytest.approx(0.2, abs=0.01)  # the identified weight is recovered


def test_bad_fix_names_the_valid_parameters():
    cube = _mono_cube()
    with pytest.raises(ValueError, match=r"unknown parameter 'lam' for law 'chinchilla'; valid parameters: E, A, B, alpha, beta"):
        point.fit_point(cube, "chinchilla", fix="lam=0.1")
    with pytest.raises(ValueError, match="--fix expects NAME=VALUE pairs"):
        point.fit_point(cube, "chinchilla", fix="E")
    with pytest.raises(ValueError, match="--fix value for 'E' must be a number; got 'low'"):
        point.fit_point(cube, "chinchilla", fix="E=low")


def test_start_grid_is_the_chinchilla_grid():
    grid = point.start_grid(registry.get_law("chinchilla"))
    assert grid.shape == (4500, 5)
    np.testing.assert_allclose(np.unique(grid[:, 0]), [-1, -0.5, 0, 0.5, 1])  # e = log E
    np.testing.assert_allclose(np.unique(grid[:, 1]), [0, 5, 10, 15, 20, 25])  # a = log A
    np.testing.assert_allclose(np.unique(grid[:, 3]), [0, 0.5, 1, 1.5, 2])  # alpha
    fixed_grid = point.start_grid(registry.get_law("chinchilla"), fixed={"E": math.e})
    assert fixed_grid.shape == (900, 4)


def test_zero_weights_leave_observations_out():
    cube = _mono_cube(sigma=0.01, key=5)
    d = registry.design(cube, "chinchilla")
    keep = np.arange(len(d.loss)) % 3 != 0
    starts = point.start_grid(registry.get_law("chinchilla"))[::50]
    weighted = point.fit_point_arrays("chinchilla", d.x, d.loss, weights=keep.astype(float), starts=starts)
    subset = point.fit_point_arrays("chinchilla", {k: v[keep] for k, v in d.x.items()}, d.loss[keep], starts=starts)
    assert weighted.objective == pytest.approx(subset.objective, rel=1e-6)  # same optimum, f64
    for name in TRUTH:
        assert weighted.params[name] == pytest.approx(subset.params[name], rel=1e-4)
    with pytest.raises(ValueError, match="weights must be 25 finite non-negative numbers"):
        point.fit_point_arrays("chinchilla", d.x, d.loss, weights=np.zeros(25))
