r"""The Gaussian process core of the emulator: kernel, marginal likelihood, fit, prediction (arrays only).

One GP per evaluation language ``l`` over the standardised features ``z`` of a configuration
(:mod:`surrogate.features`), on the log-loss, around a fixed mean function ``m_l(z)`` (the
posterior-mean ATLAS law when a fit is given, else the language's mean log-loss):

.. math::
    \log L_l = m_l(z) + g_l(z) + \varepsilon, \qquad \varepsilon \sim \mathcal N(0, \sigma_l^2), \qquad
    g_l \sim \mathcal{GP}(0, k_l)

    k_l(z, z') = a_l^2\, \mathrm{Matern}_{5/2}\!\big(\lVert (z - z') / \ell_l \rVert\big)
                 + c_l^2 + \textstyle\sum_j v_{lj} z_j z'_j + b_l^2\, [\,g = g'\,]

The Matern term (one length scale per feature, "ARD") absorbs smooth residual structure; the
constant and linear terms are a Bayesian linear mean with its coefficients integrated out, so the
predictive variance grows quadratically with the distance from the training runs: extrapolation
in ``log N`` or ``log D`` is penalised honestly instead of reverting to a constant sd. The last
term is a random effect of the data mixture ``g`` (a key of the mixture weights,
:func:`surrogate.features.mixture_key`): every mixture's runs share an offset of sd ``b_l`` that
the smooth terms do not explain, as a mixture's tokenisation or content makes all its runs a
little better or worse at every N and D. Its runs determine it for a trained mixture; a mixture
never run carries its full variance ``b_l^2``. Without it the smooth kernel, fitted on the few
mixtures a sweep runs (monolingual, 50/50, uniform), is confident between them -- measured in
BENCHMARKS.md, "Surrogate": 90% intervals covering only ~0.7 of the runs on mixtures left out.

Hyperparameters ``(a, l, c, v, sigma, b)`` per language maximise the log marginal likelihood plus
weak log-normal priors (type-II MAP), by Adam (one compiled step), for every language and
several starting length scales at once (``vmap``), keeping each language's best start. Languages
are observed on different runs (a run that never trains on a language is often not scored on it),
so each language keeps its own padded list of observations; padding rows are masked out exactly
(zero covariance, unit diagonal, zero residual: they change neither the solve nor the determinant).
A MAP point is confident where the runs say little about a hyperparameter (length scales along
mixture directions the designs never vary), so :func:`laplace_var_scale` draws hyperparameters from
a Laplace approximation of their posterior and scales each language's latent variance by how much
averaging over them widens it at mixtures never run (one factor per language, free at prediction).

The covariance algebra (Cholesky, log-determinant, log-probability, conditioning for
:mod:`surrogate.suggesting`'s fantasised runs) is tinygp's (:class:`tinygp.GaussianProcess` with a
custom :class:`tinygp.kernels.Kernel`); prediction of many configurations uses the cached Cholesky
factor's inverse and the weights ``alpha = K^{-1} r`` directly (tinygp's ``condition`` builds the full
test covariance, ``O(n_test^2)``, which 10,000 configurations do not need).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
import tinygp
from jax.scipy import linalg

__all__ = ["Hyper", "Data", "State", "EmulatorKernel", "kernel_of", "log_posterior", "fit_hyper", "precompute",
           "predict_latent", "loo", "posterior_at", "laplace_var_scale", "N_HYPER_STARTS", "LAPLACE_DRAWS"]

MIX_KEY_TOL = 1e-5  # two configurations share a mixture when their keys differ by less than this
N_HYPER_STARTS = 3  # length-scale starts per language: 0.5, 1, 2 (in standardised feature units)
_MIN_SIGMA = 1e-4  # floor of the observation noise sd on log-loss (float64 Cholesky stays stable)
_R2_EPS = 1e-12  # squared-distance floor: sqrt's gradient at 0 is infinite
LAPLACE_DRAWS = 16  # hyperparameter draws from the Laplace approximation behind the latent variance scale
_LAPLACE_MIN_PRECISION = 1.0 / 9.0  # no Laplace direction wider than the widest hyperparameter prior (sd 3)
ELL_PRIOR_SD = 1.5  # sd of the log-normal prior on length scales (standardised feature units), centred on 1


class Hyper(NamedTuple):
    """Unconstrained hyperparameters of one language (a leading axis stacks languages)."""

    log_amp: jax.Array  # ()   Matern amplitude a
    log_ell: jax.Array  # (d,) length scales
    log_c: jax.Array  # ()   constant-term sd c
    log_lin: jax.Array  # (d,) linear-term variances v
    log_sigma: jax.Array  # () observation noise sd above the floor
    log_mix_sd: jax.Array  # () sd b of the mixture random effect


class Data(NamedTuple):
    """Observations of every language, padded to a common length ``n`` (leading axis: language)."""

    z: jax.Array  # (L, n, d) features
    g: jax.Array  # (L, n) mixture keys
    r: jax.Array  # (L, n) log-loss minus the mean function (0 at padding)
    m: jax.Array  # (L, n) 1 = observed, 0 = padding


class State(NamedTuple):
    """A fitted emulator's cached algebra (leading axis: language)."""

    hyper: Hyper
    data: Data
    chol: jax.Array  # (L, n, n) Cholesky factor of K + diag
    alpha: jax.Array  # (L, n) K^{-1} r
    linv: jax.Array  # (L, n, n) inverse of the Cholesky factor
    var_scale: jax.Array  # (L,) latent-variance factor from marginalising the hyperparameters (laplace_var_scale)


def sigma_of(h: Hyper) -> jax.Array:
    return _MIN_SIGMA + jnp.exp(h.log_sigma)


class EmulatorKernel(tinygp.kernels.Kernel):
    """``mask * (a^2 Matern52(|z - z'| / ell) + c^2 + sum_j v_j z_j z'_j + b^2 [g = g']) * mask'`` on ``{"z", "g", "m"}``.

    ``evaluate`` is the per-pair definition tinygp expects; ``__call__`` computes whole matrices
    through one matrix product (the generic pairwise ``vmap`` materialises ``(n, n', d)``).
    """

    amp: jax.Array
    ell: jax.Array
    c: jax.Array
    lin: jax.Array
    mix_sd: jax.Array

    def _matern(self, r):
        arg = jnp.sqrt(5.0) * r
        return (1.0 + arg + arg**2 / 3.0) * jnp.exp(-arg)

    def evaluate(self, X1, X2):
        d2 = jnp.sum(((X1["z"] - X2["z"]) / self.ell) ** 2)
        k = self.amp**2 * self._matern(jnp.sqrt(jnp.maximum(d2, _R2_EPS))) + self.c**2 + jnp.sum(self.lin * X1["z"] * X2["z"])
        k = k + self.mix_sd**2 * (jnp.abs(X1["g"] - X2["g"]) < MIX_KEY_TOL)
        return X1["m"] * X2["m"] * k

    def evaluate_diag(self, X):
        return X["m"] ** 2 * (self.amp**2 + self.c**2 + jnp.sum(self.lin * X["z"] ** 2) + self.mix_sd**2)

    def __call__(self, X1, X2=None):
        if X2 is None:
            return jax.vmap(self.evaluate_diag)(X1)
        a, b = X1["z"] / self.ell, X2["z"] / self.ell
        d2 = jnp.sum(a**2, -1)[:, None] + jnp.sum(b**2, -1)[None, :] - 2.0 * a @ b.T
        k = self.amp**2 * self._matern(jnp.sqrt(jnp.maximum(d2, _R2_EPS)))
        k = k + self.c**2 + (X1["z"] * self.lin) @ X2["z"].T
        k = k + self.mix_sd**2 * (jnp.abs(X1["g"][:, None] - X2["g"][None, :]) < MIX_KEY_TOL)
        return X1["m"][:, None] * k * X2["m"][None, :]


def kernel_of(h: Hyper) -> EmulatorKernel:
    return EmulatorKernel(amp=jnp.exp(h.log_amp), ell=jnp.exp(h.log_ell), c=jnp.exp(h.log_c), lin=jnp.exp(h.log_lin),
                          mix_sd=jnp.exp(h.log_mix_sd))


def _gp(h: Hyper, z, g, m) -> tinygp.GaussianProcess:
    diag = m * sigma_of(h) ** 2 + (1.0 - m)  # padding: unit variance, no covariance
    return tinygp.GaussianProcess(kernel_of(h), {"z": z, "g": g, "m": m}, diag=diag)


def _log_prior(h: Hyper, h0: Hyper) -> jax.Array:
    """Weak log-normal priors: length scales around 1 (sd 1.5 in log), the rest around their starts (sd 3)."""
    lp = -0.5 * jnp.sum((h.log_ell / ELL_PRIOR_SD) ** 2)
    for name in ("log_amp", "log_c", "log_lin", "log_sigma", "log_mix_sd"):
        lp = lp - 0.5 * jnp.sum(((getattr(h, name) - getattr(h0, name)) / 3.0) ** 2)
    return lp


def log_posterior(h: Hyper, h0: Hyper, z, g, r, m) -> jax.Array:
    """Log marginal likelihood of one language's residuals ``r`` (observed where ``m``) + log prior."""
    return _gp(h, z, g, m).log_probability(r * m) + _log_prior(h, h0)


def _neg_log_posterior(h, h_init, z, g, r, m):
    return -log_posterior(h, h_init, z, g, r, m)


# (start, language) batch: languages share nothing, starts share the data
_batched_value_and_grad = jax.vmap(jax.vmap(jax.value_and_grad(_neg_log_posterior)), in_axes=(0, 0, None, None, None, None))


@partial(jax.jit, static_argnames=("lr",))
def _adam_step(h, opt_state, h_init, data, *, lr: float):
    value, grad = _batched_value_and_grad(h, h_init, data.z, data.g, data.r, data.m)
    grad = jax.tree.map(lambda x: jnp.where(jnp.isfinite(x), x, 0.0), grad)
    updates, opt_state = optax.adam(lr).update(grad, opt_state, h)
    return optax.apply_updates(h, updates), opt_state, value


@jax.jit
def _best_start(hs: Hyper, h0: Hyper, data: Data) -> tuple[Hyper, jax.Array]:
    lps = -jax.vmap(jax.vmap(_neg_log_posterior), in_axes=(0, 0, None, None, None, None))(hs, h0, data.z, data.g, data.r, data.m)
    lps = jnp.where(jnp.isfinite(lps), lps, -jnp.inf)
    best = jnp.argmax(lps, axis=0)  # (L,)
    pick = lambda x: jnp.take_along_axis(x, best.reshape((1, -1) + (1,) * (x.ndim - 2)), axis=0)[0]  # noqa: E731
    return jax.tree.map(pick, hs), jnp.max(lps, axis=0)


def fit_hyper(h0: Hyper, data: Data, *, steps: int = 500, lr: float = 0.03) -> tuple[Hyper, jax.Array]:
    """Type-II MAP hyperparameters for every language; ``h0`` has axes ``(start, language, ...)``.

    Adam on every (start, language) pair at once; returns the best start's hyperparameters per
    language and their log posterior ``(L,)``. The steps are a Python loop over one compiled step:
    on CPU, XLA runs the Cholesky factorisations several times slower inside a ``lax.scan``.
    """
    h = jax.tree.map(jnp.array, h0)
    opt_state = optax.adam(lr).init(h)
    for _ in range(steps):
        h, opt_state, _ = _adam_step(h, opt_state, h0, data, lr=float(lr))
    return _best_start(h, h0, data)


@jax.jit
def precompute(hyper: Hyper, data: Data, var_scale: jax.Array | None = None) -> State:
    """Cholesky factor, its inverse and ``alpha = K^{-1} r`` for every language (``var_scale`` default 1)."""

    def one(h, z, g, r, m):
        chol = _gp(h, z, g, m).solver.scale_tril
        alpha = linalg.cho_solve((chol, True), r * m)
        linv = linalg.solve_triangular(chol, jnp.eye(chol.shape[0], dtype=chol.dtype), lower=True)
        return chol, alpha, linv

    chol, alpha, linv = jax.vmap(one)(hyper, data.z, data.g, data.r, data.m)
    var_scale = jnp.ones(data.z.shape[0], data.z.dtype) if var_scale is None else jnp.asarray(var_scale, data.z.dtype)
    return State(hyper=hyper, data=data, chol=chol, alpha=alpha, linv=linv, var_scale=var_scale)


def predict_latent(state: State, zs: jax.Array, gs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Posterior mean and variance of the residual ``g_l`` at features ``zs (n*, d)``, mixture keys ``gs (n*,)``.

    Returns ``mu (L, n*)``, ``var (L, n*)`` (times ``state.var_scale``) and the observation noise variance ``(L,)``.
    """
    ones = jnp.ones(zs.shape[0], zs.dtype)

    def one(h, z, g, m, alpha, linv):
        k = kernel_of(h)
        xs = {"z": zs, "g": gs, "m": ones}
        ks = k(xs, {"z": z, "g": g, "m": m})  # (n*, n)
        w = ks @ linv.T
        var = k(xs) - jnp.sum(w**2, axis=-1)
        return ks @ alpha, jnp.maximum(var, 0.0)

    mu, var = jax.vmap(one)(state.hyper, state.data.z, state.data.g, state.data.m, state.alpha, state.linv)
    return mu, var * state.var_scale[:, None], jax.vmap(sigma_of)(state.hyper) ** 2


@jax.jit
def loo(state: State) -> tuple[jax.Array, jax.Array]:
    """Closed-form leave-one-out predictions of the residuals: mean and variance ``(L, n)`` (noise included)."""

    def one(alpha, linv, r, m):
        kinv_diag = jnp.sum(linv**2, axis=0)
        return r - alpha / kinv_diag, 1.0 / kinv_diag

    return jax.vmap(one)(state.alpha, state.linv, state.data.r, state.data.m)


def posterior_at(state: State, lang: int, zs: jax.Array, gs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Joint posterior of language ``lang``'s residual at ``zs``, keys ``gs``: mean ``(n*,)``, covariance ``(n*, n*)``.

    By tinygp's conditioning (exact; used for the small sets of points a decision depends on).
    """
    h = jax.tree.map(lambda x: x[lang], state.hyper)
    z, g, r, m = state.data.z[lang], state.data.g[lang], state.data.r[lang], state.data.m[lang]
    ones = jnp.ones(zs.shape[0], zs.dtype)
    cond = _gp(h, z, g, m).condition(r * m, {"z": zs, "g": gs, "m": ones}, diag=jnp.zeros(()))
    return cond.gp.loc, cond.gp.covariance * state.var_scale[lang]


def laplace_var_scale(hyper: Hyper, h0: Hyper, data: Data, zs: jax.Array, gs: jax.Array, *, key: jax.Array,
                      draws: int = LAPLACE_DRAWS) -> jax.Array:
    """Per-language factor ``(L,)`` by which marginalising the hyperparameters widens the latent variance.

    The type-II MAP point ignores how little the runs determine some hyperparameters (the length
    scales along mixture directions the training designs do not vary). A Laplace approximation of
    their posterior (the log posterior's Hessian at the MAP point, each direction no wider than the
    widest prior) gives ``draws`` hyperparameter sets; the latent variance at reference
    configurations ``zs, gs`` averaged over them, divided by the MAP variance, is summarised per
    language by its median (at least 1). Prediction multiplies the MAP latent variance by it: the
    marginal predictive's extra width at no extra cost per query (a full mixture over draws costs
    ``draws`` predictions). The noise variance stays the MAP one: the Laplace approximation is poor
    along ``log sigma`` when the noise is small against the latent signal (one-sided posterior).
    """
    from jax.flatten_util import ravel_pytree

    out = []
    for j in range(data.z.shape[0]):
        hj, h0j = jax.tree.map(lambda x: x[j], hyper), jax.tree.map(lambda x: x[j], h0)
        dj = jax.tree.map(lambda x: x[j:j + 1], data)
        flat, unravel = ravel_pytree(hj)
        H = jax.hessian(lambda v: _neg_log_posterior(unravel(v), h0j, dj.z[0], dj.g[0], dj.r[0], dj.m[0]))(flat)
        w, V = jnp.linalg.eigh(0.5 * (H + H.T))
        scale = V / jnp.sqrt(jnp.maximum(w, _LAPLACE_MIN_PRECISION))
        eps = jax.random.normal(jax.random.fold_in(key, j), (draws, flat.shape[0]), flat.dtype)
        hs = jax.vmap(unravel)(flat + eps @ scale.T)
        var_map = predict_latent(precompute(jax.tree.map(lambda x: x[None], hj), dj), zs, gs)[1][0]  # scale 1
        var_s = jax.vmap(lambda h: predict_latent(precompute(jax.tree.map(lambda x: x[None], h), dj), zs, gs)[1][0])(hs)
        ok = jnp.all(jnp.isfinite(var_s), axis=1)
        mean_var = jnp.sum(jnp.where(ok[:, None], var_s, 0.0), axis=0) / jnp.maximum(jnp.sum(ok), 1)
        out.append(jnp.maximum(jnp.median(mean_var / jnp.maximum(var_map, 1e-300)), 1.0))
    return jnp.stack(out)
