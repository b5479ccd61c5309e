"""Scaling laws as plain ``jax.numpy`` functions: each formula exists once, here.

Every function is written like its equation, takes arrays that broadcast against each other and
keyword-only parameters named as in the ATLAS paper (``E, A, B, alpha, beta, lam, tau...``). The
point fitter, the NumPyro models, the surrogate's mean function and the plots all call these.
Nothing here knows about run cubes or xarray; :mod:`atlas_bayes.registry` connects the two.

Symbols: ``N`` parameters, ``D`` tokens seen (repeats included), ``U`` unique tokens available,
``C = 6 N D`` training FLOPs, ``K`` number of training languages, ``t`` target, ``s`` source.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

__all__ = [
    "chinchilla",
    "saturation",
    "n_opt",
    "dcsl",
    "msl",
    "effective_tokens",
    "atlas",
    "curse",
    "curse_scaling",
    "CurseScaling",
    "compute_optimal",
]

# Smallest effective data a law will see: ATLAS's D_eff can go non-positive when transfer weights
# are negative (interference); the floor keeps the loss finite (and large) instead of NaN.
_MIN_TOKENS = 1.0


def chinchilla(N: ArrayLike, D: ArrayLike, *, E, A, B, alpha, beta) -> Array:
    r"""Chinchilla scaling law (Hoffmann et al. 2022, eq. 2).

    .. math:: L(N, D) = E + \frac{A}{N^\alpha} + \frac{B}{D^\beta}

    Examples
    --------
    >>> round(float(chinchilla(1e9, 2e10, E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)), 3)
    2.58
    """
    return E + A * jnp.power(N, -alpha) + B * jnp.power(D, -beta)


def saturation(D: ArrayLike, U: ArrayLike, *, lam) -> Array:
    r"""Effective data of ``D`` tokens drawn from ``U`` unique ones (ATLAS's repetition term).

    .. math::
        S(D; U) = D \;\text{if}\; D \le U, \qquad
        S(D; U) = U \left(1 + \frac{1 - e^{-\lambda (D/U - 1)}}{\lambda}\right) \;\text{otherwise}

    Continuous with slope 1 at ``D = U``, tends to ``U (1 + 1/lam)`` as ``D -> inf``; with
    ``lam = 1 / R_D*`` it is the data term of the data-constrained law (Muennighoff et al. 2023).
    ``U = inf`` means unconstrained (``S = D``).

    Examples
    --------
    >>> float(saturation(4.0, 2.0, lam=0.5))  # 2 * (1 + (1 - exp(-0.5)) / 0.5)  # doctest: +ELLIPSIS
    3.57...
    """
    D = jnp.asarray(D)
    repeated = D > U
    # Double-where: in the branch not taken, U is replaced by D so that U = inf never enters the
    # arithmetic (whose gradient would be inf * 0 = NaN).
    U_ = jnp.where(repeated, U, jnp.maximum(D, 1e-30))
    R = D / U_ - 1.0
    saturated = U_ * (1.0 - jnp.expm1(-lam * R) / lam)
    return jnp.where(repeated, saturated, D)


def n_opt(U: ArrayLike, *, A, B, alpha, beta) -> Array:
    r"""Compute-optimal parameters for ``U`` training tokens under the Chinchilla law.

    .. math:: N_{opt}(U) = G\,(U G)^{\beta/\alpha}, \qquad G = \left(\frac{\alpha A}{\beta B}\right)^{1/(\alpha+\beta)}

    (Muennighoff et al. 2023, used for the parameter-excess term of DCSL).
    """
    G = jnp.power(alpha * A / (beta * B), 1.0 / (alpha + beta))
    return G * jnp.power(U * G, beta / alpha)


def dcsl(N: ArrayLike, D: ArrayLike, U: ArrayLike, *, E, A, B, alpha, beta, R_D_star, R_N_star) -> Array:
    r"""Data-constrained scaling law (Muennighoff et al. 2023, eq. 5).

    .. math::
        L = E + \frac{A}{N'^\alpha} + \frac{B}{D'^\beta}, \quad
        D' = S(D; U_D, 1/R_D^*), \quad N' = S(N; U_N, 1/R_N^*), \quad U_N = \min(N, N_{opt}(U_D))

    with ``U_D = min(D, U)`` the unique tokens actually seen.

    Examples
    --------
    >>> p = dict(E=1.8693, A=520.4, B=1488.6, alpha=0.35266, beta=0.35266, R_D_star=15.3878, R_N_star=5.3097)
    >>> round(float(dcsl(6.34e9, 242e9, 25e9, **p)), 3)  # README of huggingface/datablations: 2.2256
    2.226
    """
    D_prime = saturation(D, U, lam=1.0 / R_D_star)
    U_N = jnp.minimum(N, n_opt(jnp.minimum(D, U), A=A, B=B, alpha=alpha, beta=beta))
    N_prime = saturation(N, U_N, lam=1.0 / R_N_star)
    return chinchilla(N_prime, D_prime, E=E, A=A, B=B, alpha=alpha, beta=beta)


def msl(N: ArrayLike, D: ArrayLike, p: ArrayLike, *, E, A, B, alpha, beta, gamma) -> Array:
    r"""Multilingual scaling law of He et al. 2024 for one language (family) with mixture share ``p``.

    .. math:: L(N, D, p) = \left(E + \frac{A}{N^\alpha} + \frac{B}{D^\beta}\right) p^{-\gamma}
    """
    return chinchilla(N, D, E=E, A=A, B=B, alpha=alpha, beta=beta) * jnp.power(p, -gamma)


def effective_tokens(
    D_t: ArrayLike,
    U_t: ArrayLike,
    *,
    lam,
    D_src: ArrayLike | None = None,
    U_src: ArrayLike | None = None,
    tau: ArrayLike | None = None,
    D_other: ArrayLike | None = None,
    U_other: ArrayLike | None = None,
    tau_other=None,
) -> Array:
    r"""ATLAS effective data for target ``t`` (Longpre et al. 2025, eq. 3).

    .. math::
        D_{eff} = S(D_t; U_t) + \sum_{i \in K_t} \tau_i S(D_i; U_i) + \tau_{other} S(D_{other}; U_{other})

    ``D_src``, ``U_src`` have a trailing axis over the ``K_t`` co-sampled languages, matched by
    ``tau``. Terms left as ``None`` are absent (the law's smaller variants). The result is floored at
    one token, so that strong interference (negative ``tau``) gives a large loss rather than NaN.
    """
    d_eff = saturation(D_t, U_t, lam=lam)
    if tau is not None:
        lam_src = jnp.asarray(lam)[..., None]  # broadcast over the trailing source axis
        d_eff = d_eff + jnp.sum(jnp.asarray(tau) * saturation(D_src, U_src, lam=lam_src), axis=-1)
    if tau_other is not None:
        d_eff = d_eff + tau_other * saturation(D_other, U_other, lam=lam)
    return jnp.maximum(d_eff, _MIN_TOKENS)


def atlas(
    N: ArrayLike,
    D_t: ArrayLike,
    U_t: ArrayLike,
    *,
    E,
    A,
    B,
    alpha,
    beta,
    lam,
    D_src=None,
    U_src=None,
    tau=None,
    D_other=None,
    U_other=None,
    tau_other=None,
) -> Array:
    r"""ATLAS, the adaptive transfer scaling law (Longpre et al. 2025, eq. 2-3).

    .. math:: L_t(N, D) = E + \frac{A}{N^\alpha} + \frac{B}{D_{eff}^\beta}

    with :math:`D_{eff}` from :func:`effective_tokens`. Three variants: ``D_t`` only (no ``tau``
    terms); ``+ D_other`` (``tau_other``); full (``+ tau`` over the co-sampled ``K_t``).

    Examples
    --------
    >>> p = dict(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36, lam=0.065)
    >>> bool(atlas(1e9, 1e10, jnp.inf, **p) > atlas(1e9, 1e10, jnp.inf, D_other=1e10, U_other=jnp.inf, tau_other=0.3, **p))
    True
    """
    d_eff = effective_tokens(
        D_t, U_t, lam=lam, D_src=D_src, U_src=U_src, tau=tau, D_other=D_other, U_other=U_other, tau_other=tau_other
    )
    return chinchilla(N, d_eff, E=E, A=A, B=B, alpha=alpha, beta=beta)


def curse(K: ArrayLike, N: ArrayLike, D_t: ArrayLike, *, L_inf, A, B, alpha, beta, phi, psi) -> Array:
    r"""Curse-of-multilinguality law for ``K`` uniformly sampled languages (Longpre et al. 2025, eq. 5).

    .. math:: L(K, N, D_t) = L_\infty + \frac{A K^\phi}{N^\alpha} + \frac{B K^\psi}{D_t^\beta}

    ``D_t`` is the tokens seen in the target language. Paper: ``phi = 0.11``, ``psi = -0.04``.
    """
    return L_inf + A * jnp.power(K, phi) * jnp.power(N, -alpha) + B * jnp.power(K, psi) * jnp.power(D_t, -beta)


class CurseScaling(NamedTuple):
    """Multipliers that keep the loss fixed when the number of languages grows by ``r``."""

    N: Array
    D_t: Array
    D_tot: Array
    C: Array


def curse_scaling(r: ArrayLike, *, alpha, beta, phi, psi) -> CurseScaling:
    r"""Iso-loss scaling from ``K`` to ``r K`` languages at minimum compute (derived from :func:`curse`).

    .. math::
        N'/N = r^{\phi/\alpha}, \quad D_t'/D_t = r^{\psi/\beta}, \quad
        D_{tot}'/D_{tot} = r^{1 + \psi/\beta}, \quad C'/C = r^{1 + \phi/\alpha + \psi/\beta}

    Examples
    --------
    >>> s = curse_scaling(2.0, alpha=0.4526, beta=0.147, phi=0.11, psi=-0.04)  # paper: N x1.18, D_tot x1.66
    >>> round(float(s.N), 2), round(float(s.D_tot), 2)
    (1.18, 1.66)
    """
    r = jnp.asarray(r)
    n = jnp.power(r, phi / alpha)
    d_t = jnp.power(r, psi / beta)
    return CurseScaling(N=n, D_t=d_t, D_tot=r * d_t, C=r * n * d_t)


def compute_optimal(C: ArrayLike, *, A, B, alpha, beta) -> tuple[Array, Array]:
    r"""Compute-optimal ``(N, D)`` for a FLOP budget ``C = 6 N D`` under :func:`chinchilla`.

    .. math::
        N_{opt} = G \left(\frac{C}{6}\right)^{\beta/(\alpha+\beta)}, \quad
        D_{opt} = G^{-1} \left(\frac{C}{6}\right)^{\alpha/(\alpha+\beta)}, \quad
        G = \left(\frac{\alpha A}{\beta B}\right)^{1/(\alpha+\beta)}

    (Hoffmann et al. 2022, eq. 4).
    """
    G = jnp.power(alpha * A / (beta * B), 1.0 / (alpha + beta))
    c6 = jnp.asarray(C) / 6.0
    return G * jnp.power(c6, beta / (alpha + beta)), jnp.power(c6, alpha / (alpha + beta)) / G


# ----------------------------------------------------------------------------- analyses (issue 5)
# Learning curves, transfer scores, the curse's general iso-loss curve and the finetune crossover.


def learning_curve(D: ArrayLike, *, E, B, beta, D0=0.0, D_ref=1.0) -> Array:
    r"""One run's loss along its learning curve, a power law in the tokens seen so far.

    .. math:: L(D) = E + B \left(\frac{D + D_0}{D_{ref}}\right)^{-\beta}

    For a fixed model size this is :func:`chinchilla` with ``E + A / N^alpha`` folded into ``E``;
    ``D_0`` (default 0) is an offset in tokens: a finetune starts from a base that already holds
    the worth of ``D_0`` tokens of the target (ATLAS's ``tau S(D_base)``, so the curve starts
    finite). ``D_ref`` only sets the unit of ``B`` (keeps it O(1) in float32).

    Examples
    --------
    >>> float(learning_curve(4e9, E=2.0, B=1.0, beta=0.5, D_ref=1e9))
    2.5
    """
    return E + B * jnp.power((jnp.asarray(D) + D0) / D_ref, -beta)


def learning_curve_tokens(L: ArrayLike, *, E, B, beta, D0=0.0, D_ref=1.0) -> Array:
    r"""Tokens at which :func:`learning_curve` reaches loss ``L`` (its inverse); ``inf`` if ``L <= E``.

    .. math:: D(L) = D_{ref} \left(\frac{L - E}{B}\right)^{-1/\beta} - D_0

    Examples
    --------
    >>> float(learning_curve_tokens(2.5, E=2.0, B=1.0, beta=0.5, D_ref=1e9))
    4000000000.0
    """
    gap = jnp.asarray(L) - E
    reachable = gap > 0
    safe = jnp.where(reachable, gap, 1.0)
    D = D_ref * jnp.power(safe / B, -1.0 / beta) - D0
    return jnp.where(reachable, D, jnp.inf)


def bilingual_transfer_score(d_bi: ArrayLike, d_mono: ArrayLike) -> Array:
    r"""Bilingual transfer score (Longpre et al. 2025, section 4): :math:`BTS = 2 - d_{bi} / d_{mono}`.

    ``d_mono`` is the reference horizon of the monolingual run of the target, ``d_bi`` the total
    tokens (both languages) the 50/50 bilingual run needs to reach the same loss on the target.
    0 = neutral, > 0 positive transfer, < 0 interference; 1 = the source is worth the target itself.
    """
    return 2.0 - jnp.asarray(d_bi) / d_mono


def tau_from_bts(bts: ArrayLike) -> Array:
    r"""ATLAS transfer weight implied by a bilingual transfer score (derived): :math:`\tau = BTS / (2 - BTS)`.

    Under ATLAS a 50/50 run of ``D`` tokens has :math:`D_{eff} = (1 + \tau) D / 2`; equal loss with
    the monolingual run at ``d_mono`` gives :math:`d_{bi} = 2 d_{mono} / (1 + \tau)`.

    Examples
    --------
    >>> round(float(tau_from_bts(bts_from_tau(0.3))), 6)
    0.3
    """
    bts = jnp.asarray(bts)
    return bts / (2.0 - bts)


def bts_from_tau(tau: ArrayLike) -> Array:
    r"""Bilingual transfer score implied by an ATLAS transfer weight (derived): :math:`BTS = 2\tau / (1 + \tau)`."""
    tau = jnp.asarray(tau)
    return 2.0 * tau / (1.0 + tau)


def curse_shares(K: ArrayLike, N: ArrayLike, D_t: ArrayLike, *, A, B, alpha, beta, phi, psi) -> Array:
    r"""Share of the reducible loss of :func:`curse` that is the capacity (model-size) term.

    .. math:: w_N = \frac{A K^\phi N^{-\alpha}}{A K^\phi N^{-\alpha} + B K^\psi D_t^{-\beta}}, \qquad w_D = 1 - w_N
    """
    n_term = A * jnp.power(K, phi) * jnp.power(N, -alpha)
    d_term = B * jnp.power(K, psi) * jnp.power(D_t, -beta)
    return n_term / (n_term + d_term)


def curse_iso_loss(r: ArrayLike, s: ArrayLike, *, w_N, alpha, beta, phi, psi) -> Array:
    r"""General iso-loss curve of :func:`curse` (SPEC section 1): the ``D_t`` multiplier ``t`` that keeps the
    loss fixed when ``K -> r K`` and ``N -> s N``.

    .. math:: r^\phi w_N s^{-\alpha} + r^\psi (1 - w_N) t^{-\beta} = 1
              \;\Rightarrow\; t = \left(\frac{1 - r^\phi w_N s^{-\alpha}}{r^\psi (1 - w_N)}\right)^{-1/\beta}

    ``inf`` where the model is too small for any amount of data (``r^phi w_N s^-alpha >= 1``).
    """
    rest = 1.0 - jnp.power(r, phi) * w_N * jnp.power(s, -alpha)
    ok = rest > 0
    t = jnp.power(jnp.where(ok, rest, 1.0) / (jnp.power(r, psi) * (1.0 - w_N)), -1.0 / beta)
    return jnp.where(ok, t, jnp.inf)


def curse_min_compute(r: ArrayLike, *, w_N, alpha, beta, phi, psi) -> CurseScaling:
    r"""Minimum-compute point of :func:`curse_iso_loss` (derived, Lagrange condition
    :math:`\alpha\, r^\phi w_N s^{-\alpha} = \beta\, r^\psi w_D t^{-\beta}`):

    .. math:: s = \left(\frac{r^\phi w_N (\alpha + \beta)}{\beta}\right)^{1/\alpha}, \quad
              t = \left(\frac{r^\psi w_D (\alpha + \beta)}{\alpha}\right)^{1/\beta}, \quad
              C'/C = r s t

    From a compute-optimal start (:math:`w_N = \beta / (\alpha + \beta)`) it is :func:`curse_scaling`.

    Examples
    --------
    >>> p = dict(alpha=0.45, beta=0.15, phi=0.11, psi=-0.04)
    >>> a, b = curse_min_compute(2.0, w_N=0.15 / 0.6, **p), curse_scaling(2.0, **p)
    >>> round(float(a.C), 4) == round(float(b.C), 4)
    True
    """
    w_D = 1.0 - w_N
    s = jnp.power(jnp.power(r, phi) * w_N * (alpha + beta) / beta, 1.0 / alpha)
    t = jnp.power(jnp.power(r, psi) * w_D * (alpha + beta) / alpha, 1.0 / beta)
    r = jnp.asarray(r)
    return CurseScaling(N=s, D_t=t, D_tot=r * t, C=r * s * t)


def crossover_compute(N: ArrayLike, *, k, gamma) -> Array:
    r"""Compute at which pretraining from scratch overtakes finetuning, across model sizes
    (Longpre et al. 2025, section 6): :math:`C^*(N) = k N^\gamma` (paper: ``k = 1.114e6``, ``gamma = 1.65``).
    """
    return k * jnp.power(N, gamma)


__all__ += [
    "learning_curve",
    "learning_curve_tokens",
    "bilingual_transfer_score",
    "tau_from_bts",
    "bts_from_tau",
    "curse_shares",
    "curse_iso_loss",
    "curse_min_compute",
    "crossover_compute",
]
