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
