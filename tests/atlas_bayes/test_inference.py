"""Bayesian fits: recovery of known and of prior-drawn parameters, diagnostics that warn with the fix,
results that round-trip, the likelihood, replicate and pooling options, clear errors.

The fast tests share one compiled NUTS program (bayes_fixtures.py); tests that need another model
structure compile their own and are marked slow.
"""

import json
import warnings
from functools import partial

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from bayes_fixtures import CHINCHILLA, NUTS, chinchilla_cube, prior_cube

from atlas_bayes import fitting, inference, registry, results, simulate
from atlas_bayes.cli import main

TRUTH = CHINCHILLA


def _covered(table, truth, *, skip=()):
    """Names whose interval in ``table`` misses ``truth``."""
    return [k for k, v in truth.items() if k not in skip and not table.loc[k, "lower"] <= v <= table.loc[k, "upper"]]


def _residual_sd(cube, law, params):
    """The noise the simulation actually drew: sd of log-loss residuals at the true parameters."""
    obs = inference.observations(cube, law)
    mu = np.asarray(registry.get_law(law).evaluate(obs.x, params, obs.sources[0]))
    return float(np.std(np.log(obs.loss) - np.log(mu)))


def test_nuts_recovers_the_simulated_parameters(chin_cube, chin_nuts):
    table = results.summary(chin_nuts, level=0.95)
    d = results.diagnostics(chin_nuts)
    assert d["max_r_hat"] <= 1.01 and d["min_ess_bulk"] >= 400 and d["divergences"] == 0
    assert _covered(table, TRUTH) == []
    # sigma is compared with the noise the 25 draws had (sd 0.0128 for sigma=0.01 here): that is what
    # the data can tell, and 25 draws put it anywhere within ~15% of the nominal 0.01
    sd = _residual_sd(chin_cube, "chinchilla", TRUTH)
    assert table.loc["sigma", "lower"] <= sd <= table.loc["sigma", "upper"]
    # 25 runs with 1% noise pin the exponents to a few hundredths (posterior sd)
    assert table.loc["alpha", "sd"] < 0.05 and table.loc["beta", "sd"] < 0.05
    stats = chin_nuts.idata.sample_stats
    assert {"diverging", "energy", "lp", "n_steps", "tree_depth", "step_size", "acceptance_rate"} <= set(stats)
    assert chin_nuts.config.options["init"] == {"xx": "prior median -> posterior mode"}


def test_prior_predictive_draws_are_recovered_chinchilla(chin_cube, chin_nuts):
    """Simulate from the model's own prior predictive, refit (same compiled program), count coverage.

    10 draws x 6 parameters at 90%: 54 covered expected, sd ~2.3 for independent checks; 46 leaves a
    margin of 3.5 sd (the checks within a fit are correlated, which widens the spread a little).
    Several of these posteriors are weakly identified (the prior's noise scale reaches 20-30%), and
    some have divergences: each fit warns exactly when its diagnostics say so.
    """
    covered, total = 0, 0
    for i in range(10):
        cube, truth = prior_cube(chin_cube, "chinchilla", key=jax.random.key(100 + i))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = inference.fit_bayes(cube, "chinchilla", seed=i, **NUTS)
            expected = results.check_diagnostics(fit)  # what the diagnostics call for, re-derived
        n = len(expected)
        assert [str(w.message).split(": ", 1)[1] for w in caught[:n]] == expected
        assert all(issubclass(w.category, results.DiagnosticsWarning) for w in caught)
        assert results.diagnostics(fit)["max_r_hat"] < 1.05, i  # chains agree even where NUTS diverged
        table = results.summary(fit, level=0.9)
        covered += len(truth) - len(_covered(table, truth))
        total += len(truth)
    assert total == 60 and covered >= 46, covered


ATLAS_MIXTURES = [{"fr": 1.0}, {"en": 0.5, "fr": 0.5}, {"fr": 0.5, "de": 0.5}, {"fr": 0.25, "en": 0.25, "de": 0.25, "sw": 0.25},
                  {"fr": 0.25, "en": 0.25, "hi": 0.25, "sw": 0.25}]


@pytest.mark.slow
def test_prior_predictive_draws_are_recovered_atlas():
    """The full ATLAS law (lam, tau_other, one tau per co-sampled language) recovered from its prior predictive.

    45 runs with 33 epochs of French at the largest budget (so lam matters); K_t = en, de, sw, and hi
    is "other". 6 draws x 11 parameters at 90%: 59 covered expected (sd ~2.4); 52 is a 3 sd margin.
    """
    runs = simulate.grid(N=[1e7, 1e8, 1e9], D=[1e9, 1e10, 1e11], mixtures=ATLAS_MIXTURES, U={"fr": 3e9})
    template = simulate.simulate_cube("atlas", dict(TRUTH, lam=0.1, tau_other=0.1), runs, key=jax.random.key(0), targets=["fr"])
    covered, total = 0, 0
    for i in range(6):
        cube, truth = prior_cube(template, "atlas", key=jax.random.key(200 + i), target="fr")
        fit = inference.fit_bayes(cube, "atlas", target="fr", seed=i, check=False, num_chains=2, num_warmup=500, num_samples=500)
        assert fit.sources_for() == ("en", "de", "sw")
        assert results.diagnostics(fit)["max_r_hat"] < 1.05, i
        table = results.summary(fit, level=0.9)
        covered += len(truth) - len(_covered(table, truth))
        total += len(truth)
    assert total == 66 and covered >= 52, covered


def test_log_likelihood_is_per_observation_and_loo_works(chin_nuts):
    ll = chin_nuts.idata.log_likelihood["loss"]
    assert ll.dims == ("chain", "draw", "obs") and ll.shape == (NUTS["num_chains"], NUTS["num_samples"], 25)
    loo = az.loo(chin_nuts.idata, pointwise=True)
    assert np.isfinite(loo.elpd_loo) and float(loo.pareto_k.max()) < 0.7
    # the stored log density is the model's: log-normal noise around the law (checked at one draw)
    draws = chin_nuts.draws()
    obs = chin_nuts.idata.observed_data["loss"].values
    x = chin_nuts.idata.constant_data
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
                                   dense_mass=True, target_accept=NUTS["target_accept"], max_tree_depth=10, n_groups=1,
                                   anchor_mass=True, compiler_options=inference.cpu_compiler_options())


def test_held_out_weights_and_the_paper_prior_reuse_the_compiled_program(chin_cube, chin_nuts):
    obs = inference.observations(chin_cube, "chinchilla")
    weights = (np.arange(len(obs.loss)) % 5 != 0).astype(float)
    compiled = _compiled_program(chin_cube)
    before, size = inference._nuts_program.cache_info(), compiled.compilations
    assert size == 1
    fit = inference.fit_bayes(chin_cube, "chinchilla", weights=weights, seed=2, check=False, **NUTS)
    paper = inference.fit_bayes(chin_cube, "chinchilla", prior="paper", seed=2, **NUTS)
    after = inference._nuts_program.cache_info()
    assert after.misses == before.misses and compiled.compilations == size  # no new trace, no recompilation
    assert fit.config.options["held_out"] == 5
    np.testing.assert_array_equal(fit.idata.constant_data["weight"].values, weights)
    # the held-out runs still get a log-likelihood (their held-out predictive density)
    assert np.isfinite(fit.idata.log_likelihood["loss"].values[..., weights == 0]).all()
    # the paper prior (Hoffmann et al.'s exponents, +-0.1) is consistent with these data: same truth covered
    assert paper.config.options["prior"] == "paper"
    assert _covered(results.summary(paper, level=0.95), TRUTH) == []
    m = inference.build_model(chin_cube, "chinchilla", prior="paper")
    assert float(np.exp(m.priors["alpha"][0][0])) == pytest.approx(0.34) and float(m.priors["alpha"][1][0]) < 0.6


def test_save_load_round_trip(chin_nuts, tmp_path):
    back = results.load_fit(chin_nuts.save(tmp_path / "fit.nc"))
    assert back.config == chin_nuts.config
    assert set(back.idata.groups()) >= {"posterior", "sample_stats", "observed_data", "constant_data", "log_likelihood", "cube"}
    assert results.to_json(back) == results.to_json(chin_nuts)
    for name, values in chin_nuts.params_for().items():
        np.testing.assert_array_equal(back.params_for()[name], values)


def _hand_made(posterior, *, method="nuts", diverging=None, options=None):
    return results.make_result(
        config=results.FitConfig(law="chinchilla", target="xx", method=method, options=options or {}),
        posterior=posterior, estimate={}, x={"N": np.ones(1)}, loss=np.ones(1), run=np.array(["r"]), cube=chinchilla_cube(),
        sample_stats=None if diverging is None else {"diverging": diverging})


def test_bad_diagnostics_warn_with_the_fix():
    rng = np.random.default_rng(0)
    apart = rng.normal(size=(2, 300)) + np.array([[0.0], [0.5]])  # chains centred half an sd apart
    sticky = np.cumsum(rng.normal(size=(2, 300)), axis=1)  # a random walk: a few effective draws
    diverging = np.zeros((2, 300), bool)
    diverging[0, :3] = True
    fit = _hand_made({"E": apart, "alpha": sticky}, diverging=diverging)
    with pytest.warns(results.DiagnosticsWarning) as record:
        messages = results.check_diagnostics(fit)
    text = [str(r.message) for r in record]
    assert len(text) == len(messages) == 4  # R-hat, bulk ESS, tail ESS, divergences
    assert text[0].startswith("fit of chinchilla for 'xx': max R-hat = ") and "run more warmup/draws (--warmup, --draws)" in text[0]
    assert "min bulk ESS" in text[1] and "draw more samples (--draws)" in text[1]
    assert "3 divergent transitions" in text[3] and "raise --target-accept (e.g. 0.95)" in text[3]
    with pytest.warns(results.DiagnosticsWarning, match=r"Pareto k = 1.30 > 0.7.*use --method nuts"):
        results.check_diagnostics(_hand_made({"E": np.ones((1, 10))}, method="svi", options={"pareto_k": 1.3}))


@pytest.mark.parametrize("method", ["svi", "laplace"])
def test_fast_methods_recover_and_report_pareto_k(chin_cube, method):
    """On 25 runs both Gaussians are rough (k ~0.5-0.85 across seeds: the joint mode's sigma is the
    n/(n-p) too small, E and B bend around each other), yet their intervals cover; a fit warns exactly
    when k > 0.7."""
    fit = inference.fit_bayes(chin_cube, method=method, law="chinchilla", num_chains=1, num_samples=2000,
                              svi_steps=1000, seed=0, check=False)
    d = results.diagnostics(fit)
    assert d["max_r_hat"] is None and 0 < d["pareto_k"] < 1.0  # k >= 1: weights of infinite mean, useless
    assert _covered(results.summary(fit, level=0.95), TRUTH) == []
    assert fit.idata.posterior.sizes["chain"] == 1 and fit.idata.posterior.sizes["draw"] == 2000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results.check_diagnostics(fit)
    assert [("Pareto k" in str(w.message)) for w in caught] == ([True] if d["pareto_k"] > 0.7 else [])


MIXTURES = [{"fr": 1.0}, {"en": 1.0}, {"en": 0.5, "fr": 0.5}, {"fr": 0.5, "de": 0.5}, {"fr": 0.25, "en": 0.25, "de": 0.25, "sw": 0.25},
            {"en": 0.25, "fr": 0.25, "hi": 0.25, "sw": 0.25}, {"en": 0.5, "de": 0.5}]


@pytest.mark.slow
def test_atlas_across_targets_with_partial_pooling_recovers_transfer():
    """Two targets in one model: per-target E and exponents shrunk together, one tau_<lang> per co-sampled source."""
    runs = simulate.grid(N=[1e7, 3e7, 1e8, 3e8, 1e9], D=[1e9, 1e10, 1e11], mixtures=MIXTURES, U={"fr": 3e9})
    truth = {"fr": dict(TRUTH, lam=0.15, tau_other=0.1, tau_en=0.3, tau_de=0.2, tau_sw=0.0),
             "en": dict(TRUTH, E=1.9, lam=0.15, tau_other=0.05, tau_fr=0.25, tau_de=0.1, tau_hi=0.0, tau_sw=0.05)}
    cube = simulate.simulate_cube("atlas", truth, runs, key=jax.random.key(5), sigma=0.01, targets=["fr", "en"])
    # target_accept 0.9: at the default 0.8 two of three seeds had 4 divergences (short warmup, 2 chains)
    fit = inference.fit_bayes(cube, "atlas", target="fr,en", num_chains=2, num_warmup=300, num_samples=500, seed=0,
                              target_accept=0.9, check=False)
    assert fit.targets == ("fr", "en") and fit.idata.posterior["alpha"].dims == ("chain", "draw", "lang")
    assert "mu_alpha" in fit.idata.posterior and "A_ref" not in fit.idata.posterior
    d = results.diagnostics(fit)
    assert d["max_r_hat"] < 1.02 and d["divergences"] == 0, d
    table = results.summary(fit, level=0.95)
    for t in ("fr", "en"):
        for name in ("E", "alpha", "beta", "tau_other") + tuple(f"tau_{s}" for s in fit.sources_for(t)):
            row, value = table.loc[f"{name}[{t}]"], truth[t][name]
            if value == 0.0:  # on the boundary of a positive weight: the interval reaches down to it
                assert row["lower"] < 0.02 and row["upper"] < 0.3, (t, name, row.to_dict())
            else:
                assert row["lower"] <= value <= row["upper"], (t, name, row.to_dict())
    assert "tau_fr[fr]" not in table.index  # a target has no weight for itself
    p = fit.params_for("en")
    assert "tau_fr" in p and "tau_en" not in p


@pytest.mark.slow
def test_pooling_none_partial_full():
    """Chinchilla on two targets that share their exponents: full pooling ties them, partial pooling
    shrinks their difference (a narrower posterior of alpha_fr - alpha_en than without pooling)."""
    runs = simulate.grid(N=[1e7, 1e8, 1e9], D=[1e9, 1e10, 1e11], mixtures=[{"fr": 0.5, "en": 0.5}])
    truth = {"fr": TRUTH, "en": dict(TRUTH, E=2.0)}
    cube = simulate.simulate_cube("chinchilla", truth, runs, key=jax.random.key(1), sigma=0.03, targets=["fr", "en"])
    fits = {p: inference.fit_bayes(cube, "chinchilla", target="all", pooling=p, seed=0, check=False, num_chains=4,
                                   num_warmup=500, num_samples=500, target_accept=0.9) for p in ("none", "partial", "full")}
    for p, fit in fits.items():
        d = results.diagnostics(fit)
        assert d["max_r_hat"] < 1.05 and fit.config.options["pooling"] == p, (p, d)
    full = fits["full"].idata.posterior
    assert full["alpha"].dims == ("chain", "draw") and full["E"].dims == ("chain", "draw")
    assert "mu_alpha" in fits["partial"].idata.posterior and "mu_alpha" not in fits["none"].idata.posterior

    def spread(fit):
        a = fit.idata.posterior["alpha"]
        return float((a.sel(lang="fr") - a.sel(lang="en")).std())

    # 9 runs per target with 3% noise leave alpha_t uncertain to ~0.1; the pooling prior (sd 0.25 on
    # log alpha, ~0.09 on alpha) about halves the difference's sd; Monte Carlo error of an sd is ~4%
    assert spread(fits["partial"]) < 0.8 * spread(fits["none"])
    for p in ("none", "partial"):
        table = results.summary(fits[p], level=0.95)
        assert table.loc["E[en]", "lower"] <= 2.0 <= table.loc["E[en]", "upper"], p


@pytest.mark.slow
def test_seeds_and_student_t():
    """Replicated runs: the seed-to-seed noise is what the simulation used; Student-t shrugs off an outlier."""
    cube = chinchilla_cube(sigma=0.01, key=7, seeds=2)
    fit = inference.fit_bayes(cube, "chinchilla", seed=0, check=False, **NUTS)
    assert fit.config.options["replicates"] == "grouped"
    assert results.diagnostics(fit)["max_r_hat"] < 1.02
    table = results.summary(fit, level=0.95)
    assert table.loc["sigma_seed", "lower"] <= 0.01 <= table.loc["sigma_seed", "upper"]
    assert table.loc["sigma_law", "estimate"] < 0.01  # the simulation has no configuration effect
    loss = cube["loss"].values.copy()
    loss[10, 0] *= 1.3  # one broken run
    bad = cube.assign(loss=(cube["loss"].dims, loss, cube["loss"].attrs))
    robust = inference.fit_bayes(bad, "chinchilla", likelihood="student_t", seed=0, check=False, **NUTS)
    plain = inference.fit_bayes(bad, "chinchilla", replicates="independent", seed=0, check=False, **NUTS)
    assert robust.config.options["replicates"] == "independent"
    t, n = results.summary(robust, level=0.95), results.summary(plain, level=0.95)
    assert t.loc["nu", "estimate"] < 10 and _covered(t, TRUTH) == []
    assert t.loc["sigma", "estimate"] < 0.5 * n.loc["sigma", "estimate"]  # the outlier does not inflate the noise
    # the Student-t log-likelihood is stored (PSIS-LOO compares the two noise models)
    assert np.isfinite(robust.idata.log_likelihood["loss"].values).all()


@pytest.mark.parametrize("method", ["nuts", "svi", "laplace"])
def test_errors_name_what_is_missing_for_every_method(chin_cube, method):
    with pytest.raises(ValueError, match="law 'dcsl' needs the unique-token budget U of 'xx'"):
        fitting.fit(chin_cube, "dcsl", method=method)
    with pytest.raises(ValueError, match=r"law 'atlas' fits transfer weights, which needs multilingual mixtures \(mix\)"):
        fitting.fit(chin_cube, "atlas", method=method)
    with pytest.raises(ValueError, match=r"unknown target 'fr'; the cube's evaluation languages are \['xx'\]"):
        fitting.fit(chin_cube, "chinchilla", method=method, target="fr")
    with pytest.raises(ValueError, match="unknown parameter 'lam' for law 'chinchilla'; valid parameters: E, A, B, alpha, beta"):
        fitting.fit(chin_cube, "chinchilla", method=method, fix="lam=0.1")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['zeta'\] for law 'chinchilla'"):
        fitting.fit(chin_cube, "chinchilla", method=method, fix={"zeta": 1.0})
    with pytest.raises(ValueError, match="unknown law 'kaplan'; valid laws: chinchilla"):
        fitting.fit(chin_cube, "kaplan", method=method)


def test_bad_options_list_the_valid_ones(chin_cube):
    for kw, message in [
        ({"prior": "flat"}, "unknown prior 'flat'; valid: default, paper"),
        ({"likelihood": "cauchy"}, "unknown likelihood 'cauchy'; valid: normal, student_t"),
        ({"pooling": "some"}, "unknown pooling 'some'; valid: none, partial, full"),
        ({"replicates": "pairs"}, "unknown replicates 'pairs'; valid: auto, grouped, independent"),
        ({"replicates": "grouped"}, "replicates='grouped' needs runs that share a configuration"),
        ({"weights": np.ones(3)}, "weights must be 25 values of 0 or 1"),
        ({"weights": np.zeros(25)}, "weights leave no observation of target 'xx'"),
        ({"target_accept": 1.5}, "target_accept must be between 0 and 1"),
        ({"num_samples": 0}, "num_chains, num_warmup and num_samples must be >= 1"),
        ({"target": "xx,xx"}, r"target\(s\) \['xx'\] given twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            inference.fit_bayes(chin_cube, "chinchilla", **kw)
    with pytest.raises(ValueError, match="unknown method 'mcmc'; valid methods: point, nuts, svi, laplace"):
        fitting.fit(chin_cube, "chinchilla", method="mcmc")


def test_cli_fit_nuts_json(chin_cube, tmp_path, capsys):
    from atlas_bayes import cube as cube_lib

    path = str(cube_lib.save(chin_cube, tmp_path / "cube.nc"))
    out = tmp_path / "fit.nc"
    code = main(["fit", path, "--law", "chinchilla", "--method", "nuts", "--chains", "4", "--warmup", "500", "--draws", "1000", "--target-accept", "0.95",
                 "--seed", "2", "--level", "0.8", "--out", str(out), "--json"])
    assert code == 0
    got = json.loads(capsys.readouterr().out)
    assert got["method"] == "nuts" and got["level"] == 0.8
    alpha = got["params"]["alpha"]
    assert {"estimate", "sd", "lower", "upper", "r_hat", "ess_bulk", "ess_tail"} <= set(alpha) and alpha["r_hat"] < 1.01
    assert set(got["diagnostics"]) >= {"max_r_hat", "min_ess_bulk", "min_ess_tail", "divergences"}
    back = results.load_fit(out)
    assert back.method == "nuts" and results.to_json(back, level=0.8) == got
    assert main(["fit", path, "--law", "chinchilla", "--method", "nuts", "--chains", "4", "--warmup", "500", "--draws", "1000", "--target-accept", "0.95", "--seed", "2"]) == 0
    text = capsys.readouterr().out
    assert "90% lower" in text and "r_hat" in text and "divergences 0" in text
    assert main(["fit", path, "--law", "chinchilla", "--method", "point", "--target", "xx,yy"]) == 2
    assert "--method point fits one target at a time" in capsys.readouterr().err
    assert main(["fit", path, "--law", "chinchilla", "--method", "point", "--prior", "paper"]) == 2
    assert "--prior apply to Bayesian fits; add --method nuts" in capsys.readouterr().err
    assert main(["fit", path, "--law", "chinchilla", "--method", "nuts", "--pooling", "some"]) == 2
    assert "unknown pooling 'some'; valid: none, partial, full" in capsys.readouterr().err


def test_auto_chain_method_runs_only_large_fits_concurrently(monkeypatch):
    """``"auto"``: vectorised for small fits, one concurrent group per chain from PARALLEL_WORK on (CPU, several cores)."""
    big = inference.PARALLEL_WORK
    monkeypatch.setattr(inference.os, "cpu_count", lambda: 2)
    assert inference._groups_for(4, "auto", big - 1) == 1
    assert inference._groups_for(4, "auto", big) == 4
    assert inference._groups_for(3, "parallel", 0) == 3  # no device count to divide: threads
    assert inference._groups_for(4, "vectorized", 10 * big) == 1
    assert inference._groups_for(1, "parallel", big) == 1
    monkeypatch.setattr(inference.os, "cpu_count", lambda: 1)
    assert inference._groups_for(4, "auto", 10 * big) == 1  # one core: threads would only take turns
    assert inference._groups_for(4, "parallel", 0) == 4  # asked for


def test_parallel_chains_sample_the_same_posterior_deterministically(chin_cube, chin_nuts):
    """Chains run in threads (one compiled program): reproducible per seed, and the posterior agrees
    with the vectorised fit's within Monte Carlo error."""
    opts = dict(NUTS, chain_method="parallel", seed=1)  # a seed with no divergence (seeds 0 and 4 had 1-2)
    first = inference.fit_bayes(chin_cube, "chinchilla", **opts)
    again = inference.fit_bayes(chin_cube, "chinchilla", **opts)
    assert first.config.options["chain_groups"] == NUTS["num_chains"]
    assert chin_nuts.config.options["chain_groups"] == 1
    for name in ("E", "alpha", "beta"):
        np.testing.assert_array_equal(first.idata.posterior[name].values, again.idata.posterior[name].values)
        a, b = first.idata.posterior[name], chin_nuts.idata.posterior[name]
        se = np.hypot(*(float(az.mcse(f.idata.posterior, var_names=[name])[name]) for f in (first, chin_nuts)))
        assert abs(float(a.mean() - b.mean())) < 4 * se, name


def test_sampler_programs_turn_off_ynnpack_fusions_on_cpu():
    """The option is known to this jaxlib (else the programs would silently keep XLA's defaults) and
    a program compiled with it computes what the default one does."""
    opts = inference.cpu_compiler_options()
    assert opts == inference._NO_YNN
    x = jax.numpy.linspace(0.5, 2.0, 1440).reshape(240, 6)
    f = lambda x: jax.numpy.sum(x @ x.T) + jax.numpy.sum(jax.numpy.log(x), axis=1).sum()  # noqa: E731
    np.testing.assert_allclose(jax.jit(f, compiler_options=dict(opts))(x), jax.jit(f)(x), rtol=1e-5)


def test_anchored_warmup_pools_each_window_with_the_start_covariance():
    """Warmup's mass matrix is the last window's draws pooled with the start's covariance counted as
    ``anchor d^2 / n`` draws, on NumPyro's windows (a 40-dimensional correlated Gaussian)."""
    from numpyro.infer.hmc import hmc
    from numpyro.infer.hmc_util import build_adaptation_schedule

    d, warmup = 40, 300
    q = np.linalg.qr(np.random.default_rng(0).standard_normal((d, d)))[0]
    cov = (q * np.logspace(-2, 2, d)) @ q.T
    precision = jnp.asarray(np.linalg.inv(cov), jnp.float32)
    collect, swap = inference._window_flags(warmup, 0)
    middle = build_adaptation_schedule(warmup)[1:-1]
    assert np.flatnonzero(swap).tolist() == [w.end for w in middle]
    assert collect.sum() == sum(w.end - w.start for w in middle) and not (collect & swap).any()

    @partial(jax.jit, static_argnames="anchor")
    def warm(key, anchor):
        init_kernel, sample_kernel = hmc(potential_fn=lambda z: 0.5 * z @ precision @ z, algo="NUTS")
        state = init_kernel(jnp.zeros(d), warmup, inverse_mass_matrix=jnp.asarray(cov, jnp.float32), dense_mass=True,
                            adapt_mass_matrix=False, rng_key=key)
        init, step = inference._anchored_windows(sample_kernel, dense_mass=True, anchor=anchor)
        carry, trace = jax.lax.scan(step, init(state), (jnp.asarray(collect), jnp.asarray(swap)))
        return carry[0].adapt_state.inverse_mass_matrix, trace.z

    last = middle[-1]
    for anchor in (0.0, 1.0, 1e6):
        inverse_mass, z = (np.asarray(a, np.float64) for a in warm(jax.random.key(0), anchor))
        draws = z[last.start:last.end]
        n = len(draws)
        k = anchor * d**2 / n
        s = (n - 1) * np.cov(draws.T)
        np.testing.assert_allclose(inverse_mass, (s + k * cov) / (n - 1 + k), rtol=2e-3, atol=2e-3 * np.abs(cov).max())
