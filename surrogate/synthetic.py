"""A simulated multilingual world for trying, testing and benchmarking the emulator.

:func:`multilingual_cube` draws runs from ATLAS (:func:`atlas_bayes.simulate.simulate_cube`) over
monolingual, bilingual (50/50), uniform and random (Dirichlet) mixtures, and adds what ATLAS
leaves out, so that an emulator has something to learn beyond the law: the curse of
multilinguality's capacity term (Longpre et al. 2025, eq. 5),

.. math:: L = L_{ATLAS}(N, D_{eff}) + A\\,\\frac{K^{\\phi} - 1}{N^{\\alpha}}

with ``K`` the number of training languages (the paper fits ``phi = 0.11`` on uniform mixtures; the
default here is a milder 0.05). :func:`held_out_mixture`
marks the mixtures of the paper's R^2(M) split (SPEC section 4): every mixture that is not
monolingual, bilingual or uniform.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import jax
import numpy as np
import xarray as xr

from atlas_bayes import cube as cube_lib
from atlas_bayes import simulate
from atlas_bayes.noise import sample_log_noise

__all__ = ["multilingual_cube", "truth", "held_out_mixture", "mixture_label"]

LANGS = ("en", "fr", "de", "ru", "zh", "sw")
_BASE = dict(A=400.0, B=2000.0, alpha=0.34, beta=0.36, lam=0.065, tau_other=0.15)
_RELATED = {frozenset(p) for p in (("en", "fr"), ("en", "de"), ("fr", "de"), ("ru", "de"), ("fr", "sw"), ("en", "sw"))}


def truth(langs: Sequence[str] = LANGS) -> dict[str, dict[str, float]]:
    """ATLAS parameters of each target: ``E`` rises along ``langs``; related pairs transfer more (tau 0.35 vs 0.05)."""
    out = {}
    for j, t in enumerate(langs):
        p = dict(_BASE, E=1.7 + 0.08 * j)
        for s in langs:
            if s != t:
                p[f"tau_{s}"] = 0.35 if frozenset((s, t)) in _RELATED else 0.05
        out[t] = p
    return out


def mixture_label(mix: np.ndarray) -> np.ndarray:
    """``"monolingual"``, ``"bilingual"``, ``"uniform"`` or ``"other"`` for each row of ``(run, src)`` weights."""
    mix = np.asarray(mix, float)
    k = (mix > 0).sum(axis=1)
    pos = np.where(mix > 0, mix, np.nan)
    equal = np.nanmax(pos, axis=1) - np.nanmin(pos, axis=1) < 1e-6
    return np.where(k == 1, "monolingual", np.where(k == 2, "bilingual", np.where(equal, "uniform", "other")))


def held_out_mixture(mix: np.ndarray) -> np.ndarray:
    """The R^2(M) split: True for the mixtures held out (neither monolingual, bilingual nor uniform)."""
    return mixture_label(mix) == "other"


def multilingual_cube(
    *,
    key: jax.Array,
    langs: Sequence[str] = LANGS,
    sizes: Sequence[float] = (1e7, 3e7, 1e8, 3e8),
    budgets: Sequence[float] = (1e9, 3e9, 1e10),
    n_random: int = 20,
    U: Mapping[str, float] | None = None,
    sigma: float = 0.01,
    phi: float = 0.05,
    min_weight: float = 0.03,
    seeds: int = 1,
    params: Mapping[str, Mapping[str, float]] | None = None,
) -> xr.Dataset:
    """A run cube: every size x budget x mixture (monolingual, 50/50 pairs, uniform, ``n_random`` random).

    Random mixtures pick ``K`` in ``2..len(langs)`` languages and Dirichlet(2) weights over them,
    dropping (and renormalising away) weights below ``min_weight``.
    ``U`` gives unique tokens per language (default: ``sw`` limited to 1e8 tokens, so it repeats);
    ``sigma`` is the log-scale observation noise; ``phi`` the misspecification (0: pure ATLAS).
    A run that never trains on a language is not scored on it (NaN), as in the paper's fits.

    Examples
    --------
    >>> cube = multilingual_cube(key=jax.random.key(0), langs=("en", "fr"), sizes=(1e7,), budgets=(1e9,), n_random=1)
    >>> dict(cube.sizes)
    {'run': 5, 'lang': 2, 'src': 2}
    """
    langs = tuple(langs)
    k_mix, k_noise = jax.random.split(key)
    mixtures: list[dict[str, float]] = [{lang: 1.0} for lang in langs]
    mixtures += [{a: 0.5, b: 0.5} for a, b in itertools.combinations(langs, 2)]
    if len(langs) > 2:
        mixtures.append({lang: 1.0 / len(langs) for lang in langs})
    for i in range(n_random):
        kk, kw = jax.random.split(jax.random.fold_in(k_mix, i))
        k = int(jax.random.randint(kk, (), 2, len(langs) + 1))
        chosen = np.asarray(jax.random.permutation(kk, len(langs)))[:k]
        w = np.asarray(jax.random.dirichlet(kw, np.full(k, 2.0)), dtype=float)
        w = np.where(w < min_weight, 0.0, w)  # a language at 0.1% is not in the mixture in any useful sense
        w = np.round(w / w.sum(), 4)
        w[-1] = 1.0 - w[:-1].sum()
        mixtures.append({langs[c]: float(v) for c, v in zip(chosen, w) if v > 0})
    U = {"sw": 1e8} if U is None and "sw" in langs else dict(U or {})
    runs = simulate.grid(N=sizes, D=budgets, mixtures=mixtures, U=U, seeds=seeds)
    order = [runs.srcs.index(s) for s in langs]
    runs = runs._replace(mix=runs.mix[:, order], U=runs.U[:, order], srcs=langs)
    params = truth(langs) if params is None else params
    clean = simulate.simulate_cube("atlas", params, runs, key=k_noise, targets=langs, sigma=0.0)
    K = (runs.mix > 0).sum(axis=1)
    loss = clean["loss"].values.copy()
    for j, t in enumerate(langs):
        p = params[t]
        loss[:, j] = loss[:, j] + p["A"] * (K**phi - 1.0) / runs.N ** p["alpha"]
    eps = np.asarray(sample_log_noise(k_noise, {"sigma": np.array([sigma])}, loss.shape))[0]
    return cube_lib.make_cube(
        loss=loss * np.exp(eps), N=runs.N, D=runs.D, mix=runs.mix, U=runs.U, lang=langs, src=langs, seed=runs.seed,
        attrs={"simulated_from": "atlas + curse capacity term", "phi": phi, "sigma": sigma,
               "truth": {t: dict(p) for t, p in params.items()}},
    )
