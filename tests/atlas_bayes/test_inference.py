"""Bayesian fits: recovery of known parameters, diagnostics that warn, results that round-trip, clear errors."""

import json

import arviz as az
import jax
import numpy as np
import pytest

from atlas_bayes import cube as cube_lib
from atlas_bayes import fitting, inference, results, simulate
from atlas_bayes.cli import main

TRUTH = simulate.PAPER["chinchilla_refit"]
# One sampler configuration for every Chinchilla NUTS test: one compilation serves them all.
NUTS = dict(num_chains=2, num_warmup=500, num_samples=1000)


def _chinchilla_cube(sigma=0.01, key=0, seeds=1):
    runs = simulate.grid(N=[1e7, 3e7, 1e8, 3e8, 1e9], D=[1e9, 3e9, 1e10, 3e10, 1e11], seeds=seeds)
    return simulate.simulate_cube("chinchilla", TRUTH, runs, key=jax.random.key(key), sigma=sigma)


@pytest.fixture(scope="module")
def cube():
    return _chinchilla_cube(key=3)


@pytest.fixture(scope="module")
def nuts_fit(cube):
    return inference.fit_bayes(cube, "chinchilla", seed=1, **NUTS)


def test_nuts_recovers_the_simulated_parameters(nuts_fit):
    table = results.summary(nuts_fit, level=0.95)
    d = results.diagnostics(nuts_fit)
    assert d["max_r_hat"] <= 1.01 and d["min_ess_bulk"] >= 400 and d["divergences"] == 0
    for name, value in {**TRUTH, "sigma": 0.01}.items():
        row = table.loc[name]
        assert row["lower"] <= value <= row["upper"], (name, value, row.to_dict())
    # 25 runs with 1% noise pin the exponents to a few hundredths (posterior sd)
    assert table.loc["alpha", "sd"] < 0.05 and table.loc["beta", "sd"] < 0.05
    stats = nuts_fit.idata.sample_stats
    assert {"diverging", "energy", "lp", "n_steps", "tree_depth", "step_size", "acceptance_rate"} <= set(stats)
    assert nuts_fit.config.options["init"] == {"xx": "point fit"}


def test_log_likelihood_is_per_observation_and_loo_works(nuts_fit):
    ll = nuts_fit.idata.log_likelihood["loss"]
    assert ll.dims == ("chain", "draw", "obs") and ll.shape == (2, 1000, 25)
    loo = az.loo(nuts_fit.idata, pointwise=True)
    assert np.isfinite(loo.elpd_loo) and float(loo.pareto_k.max()) < 0.7
    # the stored log density is the model's: log-normal noise around the law (checked at the posterior mean)
    draws = nuts_fit.draws()
    obs = nuts_fit.idata.observed_data["loss"].values
    x = nuts_fit.idata.constant_data
    mu = draws["E"][0] + draws["A"][0] * x["N"].values ** -draws["alpha"][0] + draws["B"][0] * x["D"].values ** -draws["beta"][0]
    z = (np.log(obs) - np.log(mu)) / draws["sigma"][0]
    want = -0.5 * z**2 - np.log(draws["sigma"][0] * np.sqrt(2 * np.pi)) - np.log(obs)
    np.testing.assert_allclose(ll.values[0, 0], want, rtol=1e-4)  # float32 sampler values, float64 density


def _compiled_program(cube):
    """The cached NUTS program of the Chinchilla fits (derived the way fit_bayes derives it)."""
    m = inference.build_model(cube, "chinchilla")
    data, priors, loss = m.arrays()
    proto = inference._prototype(m.model, (data, priors), {"loss": loss})
    return inference._nuts_program(m.spec, proto, num_warmup=NUTS["num_warmup"], num_samples=NUTS["num_samples"],
                                   dense_mass=True, target_accept=0.8, max_tree_depth=10, n_dev=1)


def test_held_out_weights_reuse_the_compiled_program(cube, nuts_fit):
    obs = inference.observations(cube, "chinchilla")
    weights = (np.arange(len(obs.loss)) % 5 != 0).astype(float)
    compiled = _compiled_program(cube)
    before, size = inference._nuts_program.cache_info(), compiled._cache_size()
    assert size == 1
    fit = inference.fit_bayes(cube, "chinchilla", weights=weights, seed=2, check=False, **NUTS)
    after = inference._nuts_program.cache_info()
    assert after.misses == before.misses and compiled._cache_size() == size  # no new trace, no recompilation
    assert fit.config.options["held_out"] == 5
    np.testing.assert_array_equal(fit.idata.constant_data["weight"].values, weights)
    # the held-out runs still get a log-likelihood (their held-out predictive density)
    assert np.isfinite(fit.idata.log_likelihood["loss"].values[..., weights == 0]).all()


def test_save_load_round_trip(nuts_fit, tmp_path):
    back = results.load_fit(nuts_fit.save(tmp_path / "fit.nc"))
    assert back.config == nuts_fit.config
    assert set(back.idata.groups()) >= {"posterior", "sample_stats", "observed_data", "constant_data", "log_likelihood", "cube"}
    assert results.to_json(back) == results.to_json(nuts_fit)
    for name, values in nuts_fit.params_for().items():
        np.testing.assert_array_equal(back.params_for()[name], values)


def test_short_run_warns_with_the_fix(cube):
    with pytest.warns(results.DiagnosticsWarning) as record:
        inference.fit_bayes(cube, "chinchilla", num_chains=2, num_warmup=20, num_samples=30, init="prior", seed=0)
    text = " ".join(str(r.message) for r in record)
    assert "ESS" in text and "draw more samples (--draws)" in text


@pytest.mark.parametrize("method", ["svi", "laplace"])
def test_fast_methods_recover_and_report_pareto_k(cube, method):
    fit = inference.fit_bayes(cube, "chinchilla", method=method, num_chains=1, num_samples=2000, svi_steps=3000, seed=0)
    d = results.diagnostics(fit)
    assert d["max_r_hat"] is None and d["pareto_k"] is not None and d["pareto_k"] < 0.7
    table = results.summary(fit, level=0.95)
    for name in ("alpha", "beta", "E"):
        assert table.loc[name, "lower"] <= TRUTH[name] <= table.loc[name, "upper"], (method, name)
    assert fit.idata.posterior.sizes["chain"] == 1 and fit.idata.posterior.sizes["draw"] == 2000


def test_bad_pareto_k_warns():
    fit = results.make_result(
        config=results.FitConfig(law="chinchilla", target="xx", method="svi", options={"pareto_k": 1.3}),
        posterior={"E": np.ones((1, 10))}, estimate={}, x={"N": np.ones(1)}, loss=np.ones(1), run=np.array(["r"]),
        cube=_chinchilla_cube())
    with pytest.warns(results.DiagnosticsWarning, match="Pareto k = 1.30 > 0.7.*use --method nuts"):
        results.check_diagnostics(fit)


MIXTURES = [{"fr": 1.0}, {"en": 1.0}, {"en": 0.5, "fr": 0.5}, {"fr": 0.5, "de": 0.5}, {"fr": 0.25, "en": 0.25, "de": 0.25, "sw": 0.25},
            {"en": 0.25, "fr": 0.25, "hi": 0.25, "sw": 0.25}, {"en": 0.5, "de": 0.5}]


@pytest.mark.slow
def test_atlas_across_targets_with_partial_pooling_recovers_transfer():
    """Two targets in one model: per-target E and exponents shrunk together, one tau_<lang> per co-sampled source."""
    runs = simulate.grid(N=[1e7, 3e7, 1e8, 3e8, 1e9], D=[1e9, 1e10, 1e11], mixtures=MIXTURES, U={"fr": 3e9})
    truth = {"fr": dict(TRUTH, lam=0.15, tau_other=0.1, tau_en=0.3, tau_de=0.2, tau_sw=0.0),
             "en": dict(TRUTH, E=1.9, lam=0.15, tau_other=0.05, tau_fr=0.25, tau_de=0.1, tau_hi=0.0)}
    cube = simulate.simulate_cube("atlas", truth, runs, key=jax.random.key(5), sigma=0.01, targets=["fr", "en"])
    fit = inference.fit_bayes(cube, "atlas", target="fr,en", num_chains=2, num_warmup=400, num_samples=500, seed=0,
                              check=False)
    assert fit.targets == ("fr", "en") and fit.idata.posterior["alpha"].dims == ("chain", "draw", "lang")
    assert "mu_alpha" in fit.idata.posterior and "A_ref" not in fit.idata.posterior
    d = results.diagnostics(fit)
    assert d["max_r_hat"] < 1.05 and d["divergences"] <= 5, d
    table = results.summary(fit, level=0.95)
    for t in ("fr", "en"):
        for name in ("E", "alpha", "beta", "tau_other") + tuple(f"tau_{s}" for s in fit.sources_for(t)):
            row = table.loc[f"{name}[{t}]"]
            assert row["lower"] <= truth[t][name] <= row["upper"], (t, name, row.to_dict())
    assert "tau_fr[fr]" not in table.index  # a target has no weight for itself
    p = fit.params_for("en")
    assert "tau_fr" in p and "tau_en" not in p


@pytest.mark.slow
def test_seeds_and_student_t():
    """Replicated runs: the seed-to-seed noise is what the simulation used; Student-t shrugs off an outlier."""
    cube = _chinchilla_cube(sigma=0.01, key=7, seeds=2)
    fit = inference.fit_bayes(cube, "chinchilla", seed=0, check=False, **NUTS)
    assert fit.config.options["replicates"] == "grouped"
    table = results.summary(fit, level=0.95)
    assert table.loc["sigma_seed", "lower"] <= 0.01 <= table.loc["sigma_seed", "upper"]
    assert table.loc["sigma_law", "estimate"] < 0.01  # the simulation has no configuration effect
    loss = cube["loss"].values.copy()
    loss[10, 0] *= 1.3  # one broken run
    bad = cube.assign(loss=(cube["loss"].dims, loss, cube["loss"].attrs))
    robust = inference.fit_bayes(bad, "chinchilla", likelihood="student_t", seed=0, check=False, **NUTS)
    assert robust.config.options["replicates"] == "independent"
    t = results.summary(robust, level=0.95)
    assert t.loc["nu", "estimate"] < 10 and t.loc["alpha", "lower"] <= TRUTH["alpha"] <= t.loc["alpha", "upper"]


@pytest.mark.parametrize("method", ["nuts", "svi", "laplace"])
def test_errors_name_what_is_missing_for_every_method(cube, method):
    with pytest.raises(ValueError, match="law 'dcsl' needs the unique-token budget U of 'xx'"):
        fitting.fit(cube, "dcsl", method=method)
    with pytest.raises(ValueError, match=r"law 'atlas' fits transfer weights, which needs multilingual mixtures \(mix\)"):
        fitting.fit(cube, "atlas", method=method)
    with pytest.raises(ValueError, match=r"unknown target 'fr'; the cube's evaluation languages are \['xx'\]"):
        fitting.fit(cube, "chinchilla", method=method, target="fr")
    with pytest.raises(ValueError, match="unknown parameter 'lam' for law 'chinchilla'; valid parameters: E, A, B, alpha, beta"):
        fitting.fit(cube, "chinchilla", method=method, fix="lam=0.1")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['zeta'\] for law 'chinchilla'"):
        fitting.fit(cube, "chinchilla", method=method, fix={"zeta": 1.0})
    with pytest.raises(ValueError, match="unknown law 'kaplan'; valid laws: chinchilla"):
        fitting.fit(cube, "kaplan", method=method)


def test_bad_options_list_the_valid_ones(cube):
    for kw, message in [
        ({"prior": "flat"}, "unknown prior 'flat'; valid priors: default, paper"),
        ({"likelihood": "cauchy"}, "unknown likelihood 'cauchy'; valid: normal, student_t"),
        ({"pooling": "some"}, "unknown pooling 'some'; valid: none, partial, full"),
        ({"weights": np.ones(3)}, "weights must be 25 values of 0 or 1"),
        ({"weights": np.zeros(25)}, "weights leave no observation of target 'xx'"),
        ({"target_accept": 1.5}, "target_accept must be between 0 and 1"),
        ({"target": "xx,xx"}, r"target\(s\) \['xx'\] given twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            inference.fit_bayes(cube, "chinchilla", **kw)
    with pytest.raises(ValueError, match="unknown method 'mcmc'; valid methods: point, nuts, svi, laplace"):
        fitting.fit(cube, "chinchilla", method="mcmc")


def test_cli_fit_nuts_json(cube, tmp_path, capsys):
    path = str(cube_lib.save(cube, tmp_path / "cube.nc"))
    out = tmp_path / "fit.nc"
    code = main(["fit", path, "--law", "chinchilla", "--method", "nuts", "--chains", "2", "--warmup", "500", "--draws", "1000",
                 "--seed", "1", "--out", str(out), "--json"])
    assert code == 0
    got = json.loads(capsys.readouterr().out)
    assert got["method"] == "nuts" and got["level"] == 0.9
    alpha = got["params"]["alpha"]
    assert {"sd", "lower", "upper", "r_hat", "ess_bulk"} <= set(alpha) and alpha["r_hat"] < 1.01
    assert set(got["diagnostics"]) >= {"max_r_hat", "min_ess_bulk", "min_ess_tail", "divergences"}
    assert results.load_fit(out).method == "nuts"
    assert main(["fit", path, "--law", "chinchilla", "--method", "point", "--target", "xx,yy"]) == 2
    assert "--method point fits one target at a time" in capsys.readouterr().err
    assert main(["fit", path, "--law", "chinchilla", "--method", "nuts", "--pooling", "some"]) == 2
    assert "unknown pooling 'some'; valid: none, partial, full" in capsys.readouterr().err
