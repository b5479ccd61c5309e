"""The NumPyro models: reference units change nothing, replicate noise is the right normal, sites are SPEC's."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
import xarray as xr
from scipy import stats

from atlas_bayes import inference, models, registry, simulate

BASE = simulate.PAPER["chinchilla_refit"]
PARAMS = {
    "chinchilla": BASE,
    "dcsl": simulate.PAPER["dcsl"],
    "msl": dict(BASE, gamma=0.1),
    "atlas_mono": dict(BASE, lam=0.1),
    "atlas_other": dict(BASE, lam=0.1, tau_other=0.2),
    "atlas": dict(BASE, lam=0.1, tau_other=0.2, tau__k0=0.3, tau__k1=-0.1),
    "curse": simulate.PAPER["curse"],
}
SRCS = ["en", "fr", "de", "sw"]


@pytest.mark.parametrize("name", sorted(registry.LAWS))
def test_every_law_is_invariant_under_reference_units(name):
    """The models evaluate the law with N in units of N0 and A N0^-alpha: the same loss."""
    assert set(models.MODELS) == set(registry.LAWS)
    law = registry.get_law(name)
    rng = np.random.default_rng(0)
    n = 50
    mix = rng.dirichlet(np.ones(4), size=n)
    U = np.tile([1e9, 3e9, np.inf, 2e8], (n, 1))  # repetition for en and sw, so the saturation terms matter
    sources = models.slot_names(2) if law.transfer == "sources" else ()
    x = registry.inputs(law, N=np.geomspace(1e7, 1e10, n), D=np.geomspace(1e9, 1e12, n), mix=mix, U=U, srcs=SRCS,
                        target="en", sources=("fr", "de") if sources else ())
    lang = np.zeros(n, dtype=int)
    N0, D0 = models.reference_scales(x, lang, 1, name)
    scaled = models.scale_inputs(x, lang, N0, D0)
    p = PARAMS[name]
    q = dict(p, A=p["A"] * N0[0] ** -p["alpha"])
    with jax.enable_x64(True):
        natural = np.asarray(law.evaluate(x, p, sources))
        reference = np.asarray(law.evaluate(scaled, q, sources))
    np.testing.assert_allclose(reference, natural, rtol=1e-10)  # float64: exact algebra up to round-off
    assert np.all(np.isfinite(natural))


def test_replicate_density_is_the_compound_symmetric_normal():
    """Integrating the configuration effect out gives N(0, s I + t 11^T) per group (weight-0 rows dropped)."""
    rng = np.random.default_rng(1)
    sizes = ((2, 1), (3, 2))  # model order: one group of 2 replicates, then two groups of 3
    group = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    group_lang = np.array([0, 0, 1])
    weight = np.array([1, 1, 1, 0, 1, 1, 1, 1.0])
    resid = rng.normal(scale=0.02, size=8)
    sigma_seed, sigma_law = np.array([0.01, 0.02]), np.array([0.015, 0.005])
    with jax.enable_x64(True):
        got = float(models.replicate_log_density(jnp.asarray(resid), jnp.asarray(weight), sizes, jnp.asarray(group_lang),
                                                 jnp.asarray(sigma_seed), jnp.asarray(sigma_law)))
    want = 0.0
    for g in range(3):
        rows = (group == g) & (weight > 0)
        t = group_lang[g]
        k = rows.sum()
        cov = sigma_seed[t] ** 2 * np.eye(k) + sigma_law[t] ** 2 * np.ones((k, k))
        want += stats.multivariate_normal(np.zeros(k), cov).logpdf(resid[rows])
    assert got == pytest.approx(want, rel=1e-10)  # float64 closed form against scipy


def test_loss_distribution_is_a_density_over_the_loss():
    d = models.loss_distribution(jnp.log(3.0), 0.01)
    # log-normal density: the normal density of log L divided by L
    assert float(d.log_prob(3.05)) == pytest.approx(stats.norm(math.log(3.0), 0.01).logpdf(math.log(3.05)) - math.log(3.05), rel=1e-5)
    t = models.loss_distribution(jnp.log(3.0), 0.01, nu=3.0, likelihood="student_t")
    assert float(t.log_prob(3.3)) > float(d.log_prob(3.3))  # heavier tails: an outlier is less surprising


def _model_inputs(law, target, mixtures, **kw):
    runs = simulate.grid(N=[1e7, 1e8, 1e9], D=[1e9, 1e10, 1e11], mixtures=mixtures, U={"fr": 3e9}, seeds=kw.pop("seeds", 1))
    params = dict(PARAMS[law])
    params = {k.replace("tau__k0", "tau_en").replace("tau__k1", "tau_de"): v for k, v in params.items()}
    cube = simulate.simulate_cube(law, params, runs, key=jax.random.key(0), sigma=0.01, targets=["fr", "en"])
    return inference.build_model(cube, law, target=target, **kw)


MIXTURES = [{"fr": 1.0}, {"en": 1.0}, {"en": 0.5, "fr": 0.5}, {"fr": 0.25, "en": 0.25, "de": 0.25, "sw": 0.25}, {"fr": 0.5, "sw": 0.5}]


def test_sites_carry_spec_names_and_plates_the_cube_dims():
    m = _model_inputs("atlas", "fr,en", MIXTURES, pooling="partial")
    data, priors, loss = m.arrays()
    trace = numpyro.handlers.trace(numpyro.handlers.seed(m.model, 0)).get_trace(data, priors, loss=loss)
    sites = {k: v for k, v in trace.items() if v["type"] in ("sample", "deterministic")}
    for name in ("E", "A", "B", "alpha", "beta", "lam", "tau_other", "sigma", "tau_en", "tau_de", "mu_alpha"):
        assert name in sites, name
    assert "sd_alpha" not in sites  # partial pooling's spread is fixed (atlas_bayes.models: no funnel)
    assert sites["alpha"]["value"].shape == (2,)  # one per target, in the lang plate
    assert [f.name for f in trace["alpha"]["cond_indep_stack"]] == ["lang"]
    assert [f.name for f in trace["loss"]["cond_indep_stack"]] == ["obs"]
    assert trace["loss"]["is_observed"]
    # fr's K_t contains en, en's contains fr: each tau_<lang> is NaN for the target that has no such weight
    en = np.asarray(sites["tau_en"]["value"])
    assert np.isfinite(en[0]) and np.isnan(en[1])
    assert m.obs.sources[0][0] == "en" and "fr" in m.obs.sources[1]


def test_full_pooling_shares_one_value_and_fixing_removes_the_site():
    m = _model_inputs("chinchilla", "fr,en", MIXTURES, pooling="full", fix="beta=0.35")
    data, priors, loss = m.arrays()
    trace = numpyro.handlers.trace(numpyro.handlers.seed(m.model, 0)).get_trace(data, priors, loss=loss)
    assert trace["alpha"]["value"].shape == () and trace["E"]["value"].shape == ()
    assert trace["A_ref"]["value"].shape == (2,)  # amplitudes are never pooled
    assert "beta" not in trace
    with pytest.raises(ValueError, match="unknown pooling 'some'; valid: none, partial, full"):
        models.ModelSpec(law="chinchilla", pooling="some")


def test_replicated_runs_get_a_seed_noise_term():
    m = _model_inputs("chinchilla", "fr", [{"fr": 1.0}], seeds=3)
    assert m.spec.n_groups == 9 and np.bincount(m.group).tolist() == [3] * 9 and m.spec.group_sizes == ((3, 9),)
    # in model order the three seeds of a configuration are consecutive
    configs = list(zip(m.obs.x["N"][m.order], m.obs.x["D"][m.order]))
    blocks = [set(configs[i:i + 3]) for i in range(0, 27, 3)]
    assert all(len(b) == 1 for b in blocks) and len(set().union(*blocks)) == 9
    data, priors, loss = m.arrays()
    trace = numpyro.handlers.trace(numpyro.handlers.seed(m.model, 0)).get_trace(data, priors, loss=loss)
    assert {"sigma_seed", "sigma_law", "sigma", "loss_replicates"} <= set(trace)
    prior_draws = numpyro.infer.Predictive(m.model, num_samples=20)(jax.random.key(1), data, priors)
    assert prior_draws["loss"].shape == (20, 9 * 3) and np.all(np.asarray(prior_draws["loss"]) > 0)
    off = _model_inputs("chinchilla", "fr", [{"fr": 1.0}], seeds=3, replicates="independent")
    assert off.spec.n_groups == 0
    with pytest.raises(ValueError, match="replicates='grouped' needs likelihood='normal'"):
        _model_inputs("chinchilla", "fr", [{"fr": 1.0}], seeds=3, replicates="grouped", likelihood="student_t")
    with pytest.raises(ValueError, match="needs runs that share a configuration"):
        _model_inputs("chinchilla", "fr", [{"fr": 1.0}], replicates="grouped")


def test_runs_with_the_same_law_inputs_but_different_mixtures_are_not_seeds():
    """atlas_other lumps en and de into fr's D_other: 50/50 fr/en and fr/de have the same inputs, yet are two experiments."""
    pairs = [{"fr": 0.5, "en": 0.5}, {"fr": 0.5, "de": 0.5}]
    m = _model_inputs("atlas_other", "fr", pairs)
    x = {k: v[m.obs.lang == 0] for k, v in m.obs.x.items()}
    assert np.unique(np.stack([x["N"], x["D_t"], x["D_other"]], axis=1), axis=0).shape[0] == 9  # 18 runs, 9 input rows
    assert m.spec.n_groups == 0 and "sigma_seed" not in numpyro.handlers.trace(
        numpyro.handlers.seed(m.model, 0)).get_trace(*m.arrays()[:2], loss=m.arrays()[2])
    with pytest.raises(ValueError, match="needs runs that share a configuration"):
        _model_inputs("atlas_other", "fr", pairs, replicates="grouped")
    seeded = _model_inputs("atlas_other", "fr", pairs, seeds=2)  # real seeds are still grouped, one group per run configuration
    assert seeded.spec.n_groups == 18 and seeded.spec.group_sizes == ((2, 18),)


def test_a_target_without_replicates_next_to_replicated_ones_is_reported():
    runs = simulate.grid(N=[1e7, 1e8], D=[1e9, 1e10], mixtures=[{"fr": 1.0}, {"en": 1.0}], seeds=2)
    cube = simulate.simulate_cube("chinchilla", BASE, runs, key=jax.random.key(0), sigma=0.01, targets=["fr", "en"])
    trained = cube["mix"].sel(src=["fr", "en"]).values > 0
    cube["loss"] = cube["loss"].where(xr.DataArray(trained, dims=("run", "lang")))  # scored on its own language only
    keep = ~(trained[:, 1] & (cube["seed"].values == 1))  # en's runs: one seed each
    cube = cube.isel(run=np.flatnonzero(keep))
    with pytest.warns(UserWarning, match=r"none for \['en'\]: their sigma_law and sigma_seed are identified only"):
        inference.build_model(cube, "chinchilla", target="fr,en")
    assert inference.build_model(cube, "chinchilla", target="fr,en", replicates="independent").spec.n_groups == 0
