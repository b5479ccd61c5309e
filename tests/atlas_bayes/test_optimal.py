"""Compute-optimal allocation: closed form for Chinchilla, the search agrees with it, intervals, the CLI."""

import json

import jax
import numpy as np
import pytest

from atlas_bayes import laws, optimal, point, predict, simulate
from atlas_bayes.cli import main

TRUTH = simulate.PAPER["chinchilla_refit"]


@pytest.fixture(scope="module")
def fit():
    runs = simulate.grid(N=[1e7, 3e7, 1e8, 3e8, 1e9], D=[1e9, 3e9, 1e10, 3e10, 1e11])
    cube = simulate.simulate_cube("chinchilla", TRUTH, runs, key=jax.random.key(0), sigma=0.01)
    return point.fit_point(cube, "chinchilla", bootstrap=40, max_starts=100)


def test_closed_form_is_chinchillas_per_draw(fit):
    ds = optimal.optimal(fit, compute="1e19,1e20", level=0.8)
    assert ds.attrs["method"] == "closed form" and dict(ds.sizes) == {"budget": 2, "lang": 1}
    p = fit.params_for()
    n_opt, d_opt = laws.compute_optimal(1e19, A=p["A"], B=p["B"], alpha=p["alpha"], beta=p["beta"])
    assert float(ds["N"][0, 0]) == pytest.approx(float(np.median(n_opt)), rel=1e-5)  # float32 law evaluation
    assert float(ds["N_lower"][0, 0]) == pytest.approx(float(np.quantile(n_opt, 0.1)), rel=1e-5)
    # each draw's optimum sits on the budget: C = 6 N D
    assert float(np.median(6 * n_opt * d_opt)) == pytest.approx(1e19, rel=1e-5)
    for name in ("N", "D", "loss", "tokens_per_param"):
        assert np.all(ds[f"{name}_lower"] <= ds[name]) and np.all(ds[name] <= ds[f"{name}_upper"])
    assert float(ds["N"][1, 0]) > float(ds["N"][0, 0])  # a bigger budget buys a bigger model


def test_search_agrees_with_the_closed_form(fit):
    closed = optimal.optimal(fit, compute=1e20)
    search = optimal.optimal(fit, compute=1e20, method="search")
    assert search.attrs["method"] == "search"
    for name in ("N", "D", "N_lower", "N_upper", "loss"):
        # the search refines log N to ~1e-4 relative; quantiles of the 40 draws move as little
        assert float(search[name][0, 0]) == pytest.approx(float(closed[name][0, 0]), rel=1e-3), name


def test_data_constrained_optimum_needs_the_search():
    """DCSL with little unique data: the searched optimum beats the unconstrained allocation under repetition."""
    runs = simulate.grid(N=[1e7, 1e8, 1e9], D=[1e9, 1e10, 1e11], U={"xx": 2e9})
    cube = simulate.simulate_cube("dcsl", simulate.PAPER["dcsl"], runs, key=jax.random.key(0), sigma=0.005)
    dcsl = point.fit_point(cube, "dcsl", bootstrap=10, max_starts=100)
    with pytest.raises(ValueError, match="law 'dcsl' has no closed-form optimum"):
        optimal.optimal(dcsl, compute=1e20, method="closed")
    constrained = optimal.optimal(dcsl, compute=1e20)  # U = 2e9 from the cube
    free = optimal.optimal(dcsl, compute=1e20, U="xx=inf")
    assert constrained.attrs["method"] == "search"
    assert float(constrained["loss"][0, 0]) > float(free["loss"][0, 0])  # repeated tokens are worth less
    # each draw's optimum is no worse than Chinchilla's allocation under the same repetition (so neither is the median)
    n_free = float(free["N"][0, 0])
    at_free = predict.law_draws(dcsl, "xx", np.array([n_free]), np.array([1e20 / (6 * n_free)]), np.ones((1, 1)),
                                np.full((1, 1), 2e9), ["xx"])
    assert float(constrained["loss"][0, 0]) <= float(np.median(at_free)) + 1e-9
    assert float(constrained["N"][0, 0]) != pytest.approx(n_free, rel=0.05)  # and it is another allocation
    p = dcsl.params_for()
    n_free, _ = laws.compute_optimal(1e20, A=p["A"], B=p["B"], alpha=p["alpha"], beta=p["beta"])
    assert float(free["N"][0, 0]) == pytest.approx(float(np.median(n_free)), rel=1e-3)  # U = inf: DCSL is Chinchilla


def test_far_budgets_warn_and_bad_input_is_refused(fit):
    with pytest.warns(predict.ExtrapolationWarning, match="the compute-optimal run N=.* outside the fitted range"):
        optimal.optimal(fit, compute=1e26)
    with pytest.raises(ValueError, match="--compute must be positive finite numbers"):
        optimal.optimal(fit, compute="-1")
    with pytest.raises(ValueError, match="unknown method 'newton'; valid: auto, closed, search"):
        optimal.optimal(fit, compute=1e20, method="newton")


def test_cli_optimal(fit, tmp_path, capsys):
    path = str(fit.save(tmp_path / "fit.nc"))
    assert main(["optimal", path, "--compute", "1e19,1e20", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["C"] for r in rows] == [1e19, 1e20] and rows[0]["method"] == "closed form"
    assert {"N", "N_lower", "N_upper", "D", "D_lower", "D_upper", "loss", "tokens_per_param"} <= set(rows[0])
    assert main(["optimal", path, "--compute", "1e20", "--search"]) == 0
    text = capsys.readouterr().out
    assert "compute-optimal runs" in text and "search" in text
    assert main(["optimal", path, "--compute", "1e20", "--target", "fr"]) == 2
    assert "not 'fr'" in capsys.readouterr().err
