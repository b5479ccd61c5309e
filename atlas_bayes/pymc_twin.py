"""A PyMC twin of the NumPyro ATLAS model: a second implementation to check the first against.

:func:`pymc_model` builds, from the same :class:`~atlas_bayes.inference.ModelInputs` the NumPyro
model reads (:func:`atlas_bayes.inference.build_model`), the same model in PyMC: the same priors
(:func:`atlas_bayes.priors.prior_arrays`, read from ``ModelInputs.priors``), the same
parametrisation (amplitudes sampled at the reference scales as ``A_ref``, ``B_ref``; ``N`` in
units of ``N0``; positive parameters on the log scale, which is also PyMC's default transform)
and the same likelihood on log-loss (Normal or Student-t, a noise scale per target; replicated
configurations with their configuration effect integrated out). Random variables carry the
NumPyro site names, so a point of one model is a point of the other and their log densities can be
compared number for number (``tests/atlas_bayes/test_pymc_twin.py`` does). :func:`fit_pymc` samples
it with PyMC's default sampler (its NUTS, diagonal mass matrix adapted from jittered starts).

PyTensor cannot call JAX, so the ATLAS formula is written a second time here, in PyTensor
(:func:`atlas_law`, :func:`saturation`), line for line after :mod:`atlas_bayes.laws`; the test
checks that both give the same loss at random parameters.

``pymc`` (and ``pytensor``) are imported inside the functions of this module only: importing
:mod:`atlas_bayes` never imports PyMC.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas_bayes import models, registry
from atlas_bayes import priors as priors_lib

if TYPE_CHECKING:  # pragma: no cover
    import arviz as az
    import pymc as pm
    import xarray as xr

    from atlas_bayes.inference import ModelInputs

__all__ = ["TWIN_LAWS", "saturation", "atlas_law", "pymc_model", "fit_pymc", "posterior_like_numpyro"]

TWIN_LAWS = ("atlas_mono", "atlas_other", "atlas")
_MIN_TOKENS = 1.0  # the floor of ATLAS's effective data (atlas_bayes.laws._MIN_TOKENS)


# ----------------------------------------------------------------------------- the formula, in PyTensor


def saturation(D, U, *, lam):
    r"""PyTensor twin of :func:`atlas_bayes.laws.saturation`.

    .. math:: S(D; U) = D \;\text{if}\; D \le U, \qquad S(D; U) = U \left(1 + \frac{1 - e^{-\lambda (D/U - 1)}}{\lambda}\right)
    """
    import pytensor.tensor as pt

    repeated = pt.gt(D, U)
    # Double switch, as in laws.py: U = inf never enters the arithmetic of the branch not taken.
    U_ = pt.switch(repeated, U, pt.maximum(D, 1e-30))
    R = D / U_ - 1.0
    return pt.switch(repeated, U_ * (1.0 - pt.expm1(-lam * R) / lam), D)


def atlas_law(x: Mapping[str, Any], p: Mapping[str, Any], *, transfer: str = "sources"):
    r"""PyTensor twin of :func:`atlas_bayes.laws.atlas` as the registry evaluates it.

    .. math:: L = E + \frac{A}{N^\alpha} + \frac{B}{D_{eff}^\beta}, \quad
              D_{eff} = \max\Big(S(D_t; U_t) + \sum_{i \in K_t} \tau_i S(D_i; U_i) + \tau_{other} S(D_{other}; U_{other}),\ 1\Big)

    ``x`` the law's inputs per observation (``D_src``, ``U_src`` ``(obs, k)``), ``p`` the
    parameters per observation (``tau`` ``(obs, k)``, over the same trailing axis), ``transfer``
    the registry law's (``"none"``: ``D_t`` only, ``"other"``: ``+ D_other``, ``"sources"``: full).
    """
    import pytensor.tensor as pt

    d_eff = saturation(x["D_t"], x["U_t"], lam=p["lam"])
    if transfer == "sources" and p.get("tau") is not None:
        d_eff = d_eff + pt.sum(p["tau"] * saturation(x["D_src"], x["U_src"], lam=p["lam"][..., None]), axis=-1)
    if transfer in ("other", "sources"):
        d_eff = d_eff + p["tau_other"] * saturation(x["D_other"], x["U_other"], lam=p["lam"])
    d_eff = pt.maximum(d_eff, _MIN_TOKENS)
    return p["E"] + p["A"] * pt.power(x["N"], -p["alpha"]) + p["B"] * pt.power(d_eff, -p["beta"])


# ----------------------------------------------------------------------------- the model


def _check(m: ModelInputs) -> None:
    if m.spec.law not in TWIN_LAWS:
        raise ValueError(f"the PyMC twin implements the ATLAS laws only ({', '.join(TWIN_LAWS)}); got law {m.spec.law!r}")


def _prior(pm, name: str, family: str, loc, scale, dims=None):
    if family == "lognormal":
        return pm.LogNormal(name, mu=loc, sigma=scale, dims=dims)
    return pm.Normal(name, mu=loc, sigma=scale, dims=dims)


def _per_target(pm, pt, name: str, m: ModelInputs):
    """Mirror of ``models._per_target``: a law parameter's values per target, ``(lang,)``."""
    spec, n = m.spec, m.spec.n_lang
    fixed = dict(spec.fixed)
    if name in fixed:
        return pt.as_tensor_variable(np.full(n, fixed[name]))
    family = priors_lib.family(name)
    loc, scale = (np.asarray(a, dtype=float) for a in m.priors[name])
    if n > 1 and name in models.POOLED and spec.pooling == "full":
        return pt.ones(n) * _prior(pm, name, family, loc.mean(), scale.mean())
    if n > 1 and name in models.POOLED and spec.pooling == "partial":
        mu = pm.Normal(f"mu_{name}", mu=loc.mean(), sigma=scale.mean())  # the spread is fixed: pool_sd
        return _prior(pm, name, family, mu, float(m.priors["pool_sd"][1]), dims="lang")
    return _prior(pm, name, family, loc, scale, dims="lang")


def _amplitude(pm, pt, name: str, exponent, m: ModelInputs, *, scaled_input: bool):
    """Mirror of ``models._amplitude``: samples ``<name>_ref``, reports the natural amplitude."""
    scale_ref = m.N0 if name == "A" else m.D0
    fixed = dict(m.spec.fixed)
    if name in fixed:
        if scaled_input:
            return fixed[name] * pt.power(np.asarray(scale_ref, float), -exponent)
        return pt.as_tensor_variable(np.full(m.spec.n_lang, fixed[name]))
    loc, scale = (np.asarray(a, dtype=float) for a in m.priors[name])
    ref = pm.LogNormal(f"{name}_ref", mu=loc, sigma=scale, dims="lang")
    natural = pm.Deterministic(name, ref * pt.power(np.asarray(scale_ref, float), exponent), dims="lang")
    return ref if scaled_input else natural


def _transfer(pm, pt, m: ModelInputs):
    """Mirror of ``models._transfer``: the ``(lang, slot)`` matrix of per-source weights."""
    spec = m.spec
    n = len(spec.tau_pairs)
    fixed = dict(spec.fixed_tau)
    free = np.array([i for i in range(n) if i not in fixed], dtype=int)
    values = pt.zeros(n)
    if free.size:
        loc, scale = (np.asarray(a, dtype=float) for a in m.priors["tau"])
        values = pt.set_subtensor(values[free], pm.Normal("tau", mu=loc[free], sigma=scale[free], dims="pair"))
    for i, v in fixed.items():
        values = pt.set_subtensor(values[i], v)
    rows = np.array([p[0] for p in spec.tau_pairs], dtype=int)
    cols = np.array([p[1] for p in spec.tau_pairs], dtype=int)
    for source in dict.fromkeys(spec.tau_names):
        idx = np.array([i for i, s in enumerate(spec.tau_names) if s == source], dtype=int)
        pm.Deterministic(f"tau_{source}", pt.set_subtensor(pt.fill(pt.zeros(spec.n_lang), np.nan)[rows[idx]], values[idx]),
                         dims="lang")
    return pt.set_subtensor(pt.zeros((spec.n_lang, spec.slots))[rows, cols], values)


def _replicate_logp(pt, resid, weight, group_sizes, group_lang, sigma_seed, sigma_law):
    """Mirror of :func:`atlas_bayes.models.replicate_log_density` (same closed form, same block order)."""
    total, start, g0 = 0.0, 0, 0
    for k, count in group_sizes:
        stop = start + k * count
        r = resid[start:stop].reshape((count, k))
        w = weight[start:stop].reshape(count, k)
        n, s1, s2 = w.sum(axis=1), (w * r).sum(axis=1), (w * r**2).sum(axis=1)
        lang = group_lang[g0:g0 + count]
        s, t = sigma_seed[lang] ** 2, sigma_law[lang] ** 2
        quad = s2 / s - t * s1**2 / (s * (s + n * t))
        logdet = (n - 1.0) * pt.log(s) + pt.log(s + n * t)
        total = total - 0.5 * pt.sum(quad + logdet + n * math.log(2 * math.pi))
        start, g0 = stop, g0 + count
    return total


def pymc_model(m: ModelInputs) -> pm.Model:
    """The PyMC twin of ``m.model`` (the NumPyro ATLAS model), over the same arrays and priors.

    Random variables are named like the NumPyro sites (``E, A_ref, B_ref, alpha, beta, lam,
    tau_other, tau, sigma``; ``mu_<p>`` under partial pooling, ``sigma_law``/
    ``sigma_seed`` with replicates, ``nu`` for Student-t); ``A``, ``B`` (natural units) and
    ``tau_<lang>`` (NaN for a target without that weight) are deterministics, as in NumPyro.
    Held-out observations (weight 0) are left out of the likelihood.
    """
    _check(m)
    import pymc as pm
    import pytensor.tensor as pt

    spec, obs = m.spec, m.obs
    law = registry.get_law(spec.law)
    order = m.order
    lang = np.asarray(obs.lang[order], dtype=int)
    weight = np.asarray(m.weights[order], dtype=float)
    x = models.scale_inputs({k: v[order] for k, v in obs.x.items()}, lang, m.N0, m.D0)
    loss = np.asarray(obs.loss[order], dtype=float)
    coords = {"lang": list(obs.targets)}
    if spec.tau_pairs:
        fixed_tau = dict(spec.fixed_tau)
        coords["pair"] = [f"{obs.targets[t]}<-{s}" for i, ((t, _), s) in enumerate(zip(spec.tau_pairs, spec.tau_names))
                          if i not in fixed_tau]

    with pm.Model(coords=coords) as model:
        alpha = _per_target(pm, pt, "alpha", m)
        beta = _per_target(pm, pt, "beta", m)
        params = {
            "E": _per_target(pm, pt, "E", m),
            "A": _amplitude(pm, pt, "A", alpha, m, scaled_input=True),
            "B": _amplitude(pm, pt, "B", beta, m, scaled_input=False),
            "alpha": alpha,
            "beta": beta,
            "lam": _per_target(pm, pt, "lam", m),
        }
        if law.transfer != "none":
            params["tau_other"] = _per_target(pm, pt, "tau_other", m)
        per_obs = {k: v[lang] for k, v in params.items()}
        if law.transfer == "sources" and spec.slots:
            per_obs["tau"] = _transfer(pm, pt, m)[lang]
        log_mu = pt.log(atlas_law(x, per_obs, transfer=law.transfer))
        nu = pm.Gamma("nu", alpha=float(m.priors["nu"][0]), beta=float(m.priors["nu"][1])) if spec.likelihood == "student_t" else None
        if spec.n_groups:
            sigma_law = pm.HalfNormal("sigma_law", sigma=float(m.priors["sigma"][1]), dims="lang")
            sigma_seed = pm.HalfNormal("sigma_seed", sigma=float(m.priors["sigma_seed"][1]), dims="lang")
            pm.Deterministic("sigma", pt.sqrt(sigma_law**2 + sigma_seed**2), dims="lang")
            log_y = np.log(loss)
            density = _replicate_logp(pt, log_y - log_mu, weight, spec.group_sizes, np.asarray(m.group_lang, dtype=int),
                                      sigma_seed, sigma_law)
            pm.Potential("loss_replicates", density - float(np.sum(weight * log_y)))  # density of L, not log L
            return model
        sigma = pm.HalfNormal("sigma", sigma=float(m.priors["sigma"][1]), dims="lang")
        fitted = np.flatnonzero(weight > 0)
        model.add_coord("obs", fitted)
        if spec.likelihood == "normal":
            pm.LogNormal("loss", mu=log_mu[fitted], sigma=sigma[lang[fitted]], observed=loss[fitted], dims="obs")
        else:
            # Student-t on log L; the Jacobian -sum(log L) makes it a density over L, as in NumPyro
            log_y = np.log(loss[fitted])
            pm.StudentT("log_loss", nu=nu, mu=log_mu[fitted], sigma=sigma[lang[fitted]], observed=log_y, dims="obs")
            pm.Potential("loss_jacobian", pt.as_tensor_variable(-float(np.sum(log_y))))
    return model


# ----------------------------------------------------------------------------- sampling


def fit_pymc(
    cube: xr.Dataset,
    law: str = "atlas",
    *,
    target: str | Sequence[str] | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int | None = None,
    seed: int = 0,
    initvals: Mapping[str, Any] | None = None,
    mode: str | None = None,
    sample_kwargs: Mapping[str, Any] | None = None,
    **model_kwargs: Any,
) -> az.InferenceData:
    """Sample the PyMC twin with PyMC's default sampler (``pm.sample``: NUTS, jitter + diagonal adaptation).

    ``model_kwargs`` go to :func:`atlas_bayes.inference.build_model` (``fix``, ``prior``,
    ``likelihood``, ``pooling``, ``replicates``, ``weights``...), so the twin fits exactly the model
    :func:`atlas_bayes.inference.fit_bayes` would. ``cores=None`` is PyMC's default (parallel chain
    processes, up to 4); ``cores=1`` samples the chains one after another in this process.
    ``mode`` is a PyTensor compile mode for every function PyMC compiles (``None``: PyMC's
    default, C; ``"NUMBA"`` compiles several times faster on a cold cache).
    Returns PyMC's ``InferenceData`` (posterior with the site names and deterministics ``A``,
    ``B``, ``tau_<lang>``; a ``lang`` dim, kept also for a single target).
    """
    import pymc as pm

    from atlas_bayes.inference import build_model

    m = build_model(cube, law, target=target, **model_kwargs)
    model = pymc_model(m)
    options = dict(draws=draws, tune=tune, chains=chains, random_seed=seed, progressbar=False,
                   compute_convergence_checks=False)
    if cores is not None:
        options["cores"] = cores
    if initvals is not None:
        options["initvals"] = dict(initvals)
    options.update(sample_kwargs or {})
    import pytensor

    with model, pytensor.config.change_flags(**({"mode": mode} if mode is not None else {})):
        return pm.sample(**options)


def posterior_like_numpyro(idata: az.InferenceData, names: Sequence[str] | None = None) -> xr.Dataset:
    """The twin's posterior laid out like a single-target :class:`~atlas_bayes.results.FitResult`'s.

    Drops the ``lang`` dim when it has one entry and keeps ``names`` (default: every variable
    without other dims), so ``posterior[name]`` is ``(chain, draw)`` or ``(chain, draw, lang)``.
    """
    post = idata.posterior
    if post.sizes.get("lang", 0) == 1:
        post = post.isel(lang=0, drop=True)
    keep = [str(k) for k, v in post.data_vars.items() if set(v.dims) <= {"chain", "draw", "lang"}]
    return post[list(names) if names is not None else keep]
