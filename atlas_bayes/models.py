"""NumPyro models of the registry's laws: one function per law, over arrays.

Each model is ``model(data, priors, *, spec, loss=None)``: ``data`` a :class:`ModelData` of
per-observation arrays, ``priors`` the ``{name: (loc, scale)}`` arrays of
:func:`atlas_bayes.priors.prior_arrays`, ``spec`` a :class:`ModelSpec` (the static structure:
law, number of targets, pooling, likelihood), and the observed losses last. With ``loss=None`` the
same function draws prior or posterior predictive losses. The formula is the registry's
(:meth:`atlas_bayes.registry.Law.evaluate`, i.e. :mod:`atlas_bayes.laws`), never written here.

Sites (SPEC names): ``E, A, B, alpha, beta, lam, tau_<lang>, tau_other, R_D_star, R_N_star, gamma,
L_inf, phi, psi, sigma`` (plus ``nu`` for Student-t noise, ``sigma_seed``/``sigma_law`` with
replicated runs, ``mu_<p>``/``sd_<p>`` for partial pooling). Per-target parameters live in the
plate ``lang`` (the cube's evaluation-language dim), observations in ``obs``.

Parametrisation for sampling
----------------------------
The amplitudes are sampled at reference scales ``N0``, ``D0``, each target's geometric-mean run
(:func:`reference_scales`): ``A_ref = A N0^-alpha`` and ``B_ref = B D0^-beta`` are the size and
data terms of the loss at the reference run, and the models report ``A = A_ref N0^alpha``,
``B = B_ref D0^beta``. Sampled that way an amplitude and its exponent are nearly uncorrelated (in
natural units ``log A`` and ``alpha`` move together along ``log A - alpha log N0``). The model-size
input itself is passed in reference units, ``N / N0`` (every law is invariant under that change
of units when ``A`` follows; tested for every law), so the size term is of order one in float32.
Token counts stay in tokens: ATLAS floors its effective data at one token, a floor that is not
invariant under rescaling. Positive parameters are sampled on the log scale (NumPyro's transforms).

Likelihood
----------
On log-loss, :mod:`atlas_bayes.noise`: ``log L_obs = log L_law + eps``, Normal or Student-t, a
noise scale ``sigma`` per target. When several runs share a configuration (seeds), the noise splits
into a configuration-level misfit ``sigma_law`` (shared by the replicates) and the seed-to-seed
``sigma_seed``; the configuration effect is integrated out in closed form
(:func:`replicate_log_density`), so the sampler sees no extra dimensions, and
``sigma = sqrt(sigma_law^2 + sigma_seed^2)`` is the noise of a new run.

Pooling across targets (``pooling``, several targets only) applies to ``E``/``L_inf`` and the
exponents (``alpha, beta, gamma, phi, psi``): ``"none"`` independent priors per target,
``"partial"`` a hierarchical prior ``log alpha_t ~ Normal(mu_alpha, s)`` around a learned common
value ``mu_alpha`` with the spread ``s`` fixed (``pool_sd`` of :mod:`atlas_bayes.priors`, 0.25 on the
log scale: targets' exponents typically within 25% of each other), ``"full"`` one shared value.
The spread is not learned: with the handful of targets a cube has, it is barely identified, and
when the targets agree its posterior reaches zero, the neck of a funnel NUTS diverges in
(measured on a two-target ATLAS fit: 88 divergences in 600 transitions with a learned
``HalfNormal`` spread, 34 non-centred, 21 with a zero-avoiding ``Gamma(2)`` spread; none with the
spread fixed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions.transforms import ExpTransform

from atlas_bayes import priors as priors_lib
from atlas_bayes import registry
from atlas_bayes.noise import Likelihood

__all__ = [
    "Pooling",
    "POOLINGS",
    "POOLED",
    "ModelData",
    "ModelSpec",
    "MODELS",
    "get_model",
    "chinchilla",
    "dcsl",
    "msl",
    "atlas",
    "curse",
    "reference_scales",
    "scale_inputs",
    "slot_names",
    "loss_distribution",
    "replicate_log_density",
    "per_row",
    "DATA_INPUT",
]

Pooling = Literal["none", "partial", "full"]
POOLINGS: tuple[str, ...] = get_args(Pooling)
POOLED = ("E", "L_inf", "alpha", "beta", "gamma", "phi", "psi")
# The input the law's data term sees (for the reference scale D0); others use the target's tokens.
DATA_INPUT = {"chinchilla": "D", "msl": "D"}


class ModelData(NamedTuple):
    """Per-observation arrays of a model (a pytree: new values of the same shapes never recompile).

    ``x``: the law's inputs (:func:`scale_inputs`: ``N`` in units of ``N0``), ``(obs,)`` or ``(obs, slot)``;
    ``lang``: target index of each observation; ``weight``: 1 = fitted, 0 = held out; ``N0``,
    ``D0``: reference scales per target; ``group``: replicate group of each observation and
    ``group_lang`` the target of each group (used when ``spec.n_groups > 0``; the observations
    are then sorted so that each group's replicates are consecutive, see ``spec.group_sizes``).
    """

    x: dict
    lang: jax.Array
    weight: jax.Array
    N0: jax.Array
    D0: jax.Array
    group: jax.Array
    group_lang: jax.Array


@dataclass(frozen=True)
class ModelSpec:
    """The static structure of a model (hashable: one compilation per spec and data shape).

    ``slots``: per-source transfer columns of ``x["D_src"]`` (the largest ``K_t``, padded);
    ``tau_pairs``: ``(target index, slot)`` of every per-source weight, ``tau_names`` its source
    language; ``fixed``: law parameters held at values, ``fixed_tau``: ``(pair index, value)``.
    """

    law: str
    n_lang: int = 1
    slots: int = 0
    tau_pairs: tuple[tuple[int, int], ...] = ()
    tau_names: tuple[str, ...] = ()
    pooling: Pooling = "none"
    likelihood: Likelihood = "normal"
    n_groups: int = 0
    group_sizes: tuple[tuple[int, int], ...] = ()
    fixed: tuple[tuple[str, float], ...] = ()
    fixed_tau: tuple[tuple[int, float], ...] = ()

    def __post_init__(self):
        registry.get_law(self.law)
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; valid: {', '.join(POOLINGS)}")


def slot_names(k: int) -> tuple[str, ...]:
    """Positional source names: ``Law.evaluate`` reads ``tau__k0``... for them."""
    return tuple(f"_k{i}" for i in range(k))


# ----------------------------------------------------------------------------- units


def reference_scales(x: Mapping[str, np.ndarray], lang: np.ndarray, n_lang: int, law: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N0, D0)`` per target: geometric means of ``N`` and of the law's data input (numpy)."""
    key = DATA_INPUT.get(law, "D_t")
    N0, D0 = np.ones(n_lang), np.ones(n_lang)
    for t in range(n_lang):
        rows = np.asarray(lang) == t
        N0[t] = np.exp(np.mean(np.log(np.asarray(x["N"], float)[rows])))
        d = np.asarray(x[key], float)[rows]
        d = d[np.isfinite(d) & (d > 0)]
        D0[t] = np.exp(np.mean(np.log(d))) if d.size else 1.0
    return N0, D0


def scale_inputs(x: Mapping[str, np.ndarray], lang: np.ndarray, N0: np.ndarray, D0: np.ndarray | None = None) -> dict:
    """The law's inputs as the models take them: ``N / N0`` per target, everything else as is (numpy)."""
    lang = np.asarray(lang)
    return {k: np.asarray(v, dtype=float) / (N0[lang] if k == "N" else 1.0) for k, v in x.items()}


# ----------------------------------------------------------------------------- building blocks


def _dist(family: str, loc, scale):
    return dist.LogNormal(loc, scale) if family == "lognormal" else dist.Normal(loc, scale)


def _per_target(name: str, spec: ModelSpec, priors) -> jax.Array:
    """A law parameter's values per target, ``(lang,)``, natural scale."""
    fixed = dict(spec.fixed)
    if name in fixed:
        return jnp.full((spec.n_lang,), fixed[name])
    family = priors_lib.family(name)
    loc, scale = priors[name]
    if spec.n_lang > 1 and name in POOLED and spec.pooling == "full":
        return jnp.broadcast_to(numpyro.sample(name, _dist(family, jnp.mean(loc), jnp.mean(scale))), (spec.n_lang,))
    if spec.n_lang > 1 and name in POOLED and spec.pooling == "partial":
        mu = numpyro.sample(f"mu_{name}", dist.Normal(jnp.mean(loc), jnp.mean(scale)))
        with numpyro.plate("lang", spec.n_lang):
            return numpyro.sample(name, _dist(family, mu, priors["pool_sd"][1]))
    with numpyro.plate("lang", spec.n_lang):
        return numpyro.sample(name, _dist(family, loc, scale))


def _amplitude(name: str, exponent, scale_ref, spec: ModelSpec, priors, *, scaled_input: bool) -> jax.Array:
    """Samples ``A_ref`` (or ``B_ref``), the term at the reference scale, and reports ``A = A_ref N0^alpha``.

    Returns the amplitude the law takes: ``A_ref`` when its input is in reference units, else ``A``.
    """
    fixed = dict(spec.fixed)
    if name in fixed:
        return fixed[name] * jnp.power(scale_ref, -exponent) if scaled_input else jnp.full((spec.n_lang,), fixed[name])
    loc, scale = priors[name]
    with numpyro.plate("lang", spec.n_lang):
        ref = numpyro.sample(f"{name}_ref", dist.LogNormal(loc, scale))
    natural = numpyro.deterministic(name, ref * jnp.power(scale_ref, exponent))
    return ref if scaled_input else natural


def _transfer(spec: ModelSpec, priors) -> jax.Array:
    """Per-source transfer weights as a ``(lang, slot)`` matrix; reports ``tau_<lang>`` per target."""
    n = len(spec.tau_pairs)
    fixed = dict(spec.fixed_tau)
    free = np.array([i for i in range(n) if i not in fixed], dtype=int)
    values = jnp.zeros(n)
    if free.size:
        loc, scale = priors["tau"]
        with numpyro.plate("pair", free.size):
            values = values.at[free].set(numpyro.sample("tau", dist.Normal(loc[free], scale[free])))
    for i, v in fixed.items():
        values = values.at[i].set(v)
    rows = np.array([p[0] for p in spec.tau_pairs], dtype=int)
    cols = np.array([p[1] for p in spec.tau_pairs], dtype=int)
    for source in dict.fromkeys(spec.tau_names):
        idx = np.array([i for i, s in enumerate(spec.tau_names) if s == source], dtype=int)
        numpyro.deterministic(f"tau_{source}", jnp.full((spec.n_lang,), jnp.nan).at[rows[idx]].set(values[idx]))
    return jnp.zeros((spec.n_lang, spec.slots)).at[rows, cols].set(values)


def loss_distribution(log_mu, sigma, nu=None, likelihood: Likelihood = "normal"):
    """The distribution of an observed loss: ``exp`` of Normal/Student-t noise around ``log_mu``.

    A density over the loss itself (log-normal and its Student-t analogue), so that log-likelihoods
    of different noise models compare on the same scale (PSIS-LOO).
    """
    if likelihood == "normal":
        return dist.LogNormal(log_mu, sigma)
    return dist.TransformedDistribution(dist.StudentT(nu, log_mu, sigma), ExpTransform())


def per_row(values, onehot):
    """Per-target values ``(lang,)`` (or ``(lang, k)``) spread over rows: ``onehot @ values``.

    ``onehot`` is ``(rows, lang)``. A product rather than ``values[index]``: on CPU the gradient of
    a gather is a serial scatter-add, the gradient of a product another product (several times
    faster at a few thousand rows). A single target broadcasts its value.
    """
    if onehot.shape[1] == 1:
        return values[0]
    return onehot @ values


def replicate_log_density(resid, weight, group_sizes, group_lang, sigma_seed, sigma_law):
    r"""Log density of log-loss residuals whose replicates share a configuration effect.

    Within a group of ``n`` runs of one configuration, ``r_i = delta + eps_i`` with
    ``delta ~ N(0, sigma_law)``, ``eps_i ~ N(0, sigma_seed)``: a normal with covariance
    ``s I + t 1 1^T`` (``s = sigma_seed^2``, ``t = sigma_law^2``), whose log density is

    .. math:: -\tfrac12\Big[\frac{S_2}{s} - \frac{t S_1^2}{s (s + n t)} + (n-1)\log s + \log(s + n t) + n \log 2\pi\Big]

    with ``S_1 = sum r``, ``S_2 = sum r^2`` over the group's observations of weight 1.
    Observations come in model order: ``group_sizes`` ``((k, count), ...)`` blocks of ``count``
    groups of ``k`` consecutive observations each, and ``group_lang`` the target of each group.
    """
    n_lang = sigma_seed.shape[0]
    onehot = jax.nn.one_hot(group_lang, n_lang, dtype=resid.dtype)
    var = jnp.stack([sigma_seed**2, sigma_law**2], axis=-1)  # (lang, 2)
    total, start, g0 = 0.0, 0, 0
    for k, count in group_sizes:
        stop = start + k * count
        r = resid[start:stop].reshape(count, k)
        w = weight[start:stop].reshape(count, k).astype(resid.dtype)
        n, s1, s2 = w.sum(axis=1), (w * r).sum(axis=1), (w * r**2).sum(axis=1)
        st = per_row(var, onehot[g0 : g0 + count])
        s, t = st[..., 0], st[..., 1]
        quad = s2 / s - t * s1**2 / (s * (s + n * t))
        logdet = (n - 1.0) * jnp.log(s) + jnp.log(s + n * t)
        total = total - 0.5 * jnp.sum(quad + logdet + n * jnp.log(2 * jnp.pi))
        start, g0 = stop, g0 + count
    return total


def _observe(spec: ModelSpec, data: ModelData, priors, params: dict, loss) -> None:
    """Evaluate the law per observation and add the likelihood of ``loss`` (or draw it)."""
    law = registry.get_law(spec.law)
    onehot = jax.nn.one_hot(data.lang, spec.n_lang, dtype=data.weight.dtype)
    names = sorted(params)
    stacked = per_row(jnp.stack([jnp.broadcast_to(params[k], (spec.n_lang,)) for k in names], axis=-1), onehot)
    per_obs = {k: stacked[..., i] for i, k in enumerate(names)}
    log_mu = jnp.log(law.evaluate(data.x, per_obs, slot_names(spec.slots)))
    n_obs = data.lang.shape[0]
    nu = numpyro.sample("nu", dist.Gamma(*priors["nu"])) if spec.likelihood == "student_t" else None
    if spec.n_groups:
        with numpyro.plate("lang", spec.n_lang):
            sigma_law = numpyro.sample("sigma_law", dist.HalfNormal(priors["sigma"][1]))
            sigma_seed = numpyro.sample("sigma_seed", dist.HalfNormal(priors["sigma_seed"][1]))
        numpyro.deterministic("sigma", jnp.sqrt(sigma_law**2 + sigma_seed**2))
        if loss is None:
            with numpyro.plate("group", spec.n_groups):
                delta = numpyro.sample("delta", dist.Normal(0.0, sigma_law[data.group_lang]))
            with numpyro.plate("obs", n_obs):
                numpyro.sample("loss", dist.LogNormal(log_mu + delta[data.group], per_row(sigma_seed, onehot)))
            return
        log_y = jnp.log(loss)
        density = replicate_log_density(log_y - log_mu, data.weight, spec.group_sizes, data.group_lang, sigma_seed, sigma_law)
        numpyro.factor("loss_replicates", density - jnp.sum(data.weight * log_y))  # density of L, not log L
        return
    with numpyro.plate("lang", spec.n_lang):
        sigma = numpyro.sample("sigma", dist.HalfNormal(priors["sigma"][1]))
    with numpyro.plate("obs", n_obs), numpyro.handlers.mask(mask=data.weight > 0):
        numpyro.sample("loss", loss_distribution(log_mu, per_row(sigma, onehot), nu, spec.likelihood), obs=loss)


def _base(spec: ModelSpec, data: ModelData, priors, irreducible: str = "E") -> dict:
    alpha = _per_target("alpha", spec, priors)
    beta = _per_target("beta", spec, priors)
    return {
        irreducible: _per_target(irreducible, spec, priors),
        "A": _amplitude("A", alpha, data.N0, spec, priors, scaled_input=True),
        "B": _amplitude("B", beta, data.D0, spec, priors, scaled_input=False),
        "alpha": alpha,
        "beta": beta,
    }


# ----------------------------------------------------------------------------- the models


def chinchilla(data: ModelData, priors: Mapping, *, spec: ModelSpec, loss=None) -> None:
    r"""Chinchilla: ``log L ~ Normal(log(E + A/N^alpha + B/D^beta), sigma)`` (Hoffmann et al. 2022)."""
    _observe(spec, data, priors, _base(spec, data, priors), loss)


def dcsl(data: ModelData, priors: Mapping, *, spec: ModelSpec, loss=None) -> None:
    r"""Data-constrained law (Muennighoff et al. 2023): Chinchilla on ``N'``, ``D'`` with ``R_D*``, ``R_N*``."""
    params = _base(spec, data, priors)
    params["R_D_star"] = _per_target("R_D_star", spec, priors)
    params["R_N_star"] = _per_target("R_N_star", spec, priors)
    _observe(spec, data, priors, params, loss)


def msl(data: ModelData, priors: Mapping, *, spec: ModelSpec, loss=None) -> None:
    r"""Multilingual law of He et al. 2024: Chinchilla times ``p^-gamma``."""
    params = _base(spec, data, priors)
    params["gamma"] = _per_target("gamma", spec, priors)
    _observe(spec, data, priors, params, loss)


def atlas(data: ModelData, priors: Mapping, *, spec: ModelSpec, loss=None) -> None:
    r"""ATLAS (Longpre et al. 2025), all three variants (``spec.law``): ``D_t`` only, ``+ D_other``, full.

    ``L = E + A/N^alpha + B/D_eff^beta`` with the repetition decay ``lam`` and transfer weights
    ``tau_other`` and, for the full law, one ``tau_<lang>`` per co-sampled language of each target.
    """
    law = registry.get_law(spec.law)
    params = _base(spec, data, priors)
    params["lam"] = _per_target("lam", spec, priors)
    if law.transfer != "none":
        params["tau_other"] = _per_target("tau_other", spec, priors)
    if law.transfer == "sources" and spec.slots:
        mat = _transfer(spec, priors)
        for k, name in enumerate(slot_names(spec.slots)):
            params[f"tau_{name}"] = mat[:, k]
    _observe(spec, data, priors, params, loss)


def curse(data: ModelData, priors: Mapping, *, spec: ModelSpec, loss=None) -> None:
    r"""Curse of multilinguality: ``L = L_inf + A K^phi / N^alpha + B K^psi / D_t^beta`` (Longpre et al. 2025)."""
    params = _base(spec, data, priors, irreducible="L_inf")
    params["phi"] = _per_target("phi", spec, priors)
    params["psi"] = _per_target("psi", spec, priors)
    _observe(spec, data, priors, params, loss)


MODELS = {
    "chinchilla": chinchilla,
    "dcsl": dcsl,
    "msl": msl,
    "atlas_mono": atlas,
    "atlas_other": atlas,
    "atlas": atlas,
    "curse": curse,
}


def get_model(law: str):
    """The model function of a registered law; the error lists the valid laws."""
    registry.get_law(law)
    return MODELS[law]
