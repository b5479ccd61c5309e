"""Synthetic run cubes drawn from the laws: for tests, calibration and paper-scale what-ifs.

:func:`grid` lays out runs (every combination of sizes, token budgets, mixtures and seeds);
:func:`simulate_cube` evaluates a registry law on them and adds observation noise
(:mod:`atlas_bayes.noise`). :data:`PAPER` holds published parameter values.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import numpy as np
import xarray as xr

from atlas_bayes import cube as cube_lib
from atlas_bayes import registry
from atlas_bayes.noise import Likelihood, sample_log_noise

__all__ = ["PAPER", "Runs", "grid", "simulate_cube"]

PAPER: dict[str, dict[str, float]] = {
    # Hoffmann et al. 2022, Approach 3 as published.
    "chinchilla": dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
    # Besiroglu et al. 2024 refit of the same data (our point fit reproduces it).
    "chinchilla_refit": dict(E=1.817, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
    # Muennighoff et al. 2023: base law on C4 with alpha = beta, then the two decay constants.
    "dcsl": dict(E=1.87, A=521.0, B=1488.0, alpha=0.3527, beta=0.3527, R_D_star=15.39, R_N_star=5.31),
    # Longpre et al. 2025: phi, psi published; alpha, beta implied by the iso-loss exponents
    # (SPEC section 1, derived); L_inf, A, B are not published (illustrative values).
    "curse": dict(L_inf=1.8, A=400.0, B=60.0, alpha=0.45, beta=0.15, phi=0.11, psi=-0.04),
}


class Runs(NamedTuple):
    """Run configurations as arrays: ``N``, ``D``, ``seed`` are ``(run,)``; ``mix``, ``U`` ``(run, src)``."""

    N: np.ndarray
    D: np.ndarray
    mix: np.ndarray
    U: np.ndarray
    srcs: tuple[str, ...]
    seed: np.ndarray


def grid(
    *,
    N: Sequence[float],
    D: Sequence[float],
    mixtures: Sequence[Mapping[str, float]] = ({"xx": 1.0},),
    U: Mapping[str, float] | None = None,
    seeds: int = 1,
) -> Runs:
    """Every combination of ``N x D x mixtures x seeds``; ``U`` gives unique tokens per language."""
    srcs = tuple(dict.fromkeys(s for m in mixtures for s in m))
    rows = list(itertools.product(N, D, range(len(mixtures)), range(seeds)))
    mix = np.zeros((len(rows), len(srcs)))
    for r, (_, _, m, _) in enumerate(rows):
        for s, w in mixtures[m].items():
            mix[r, srcs.index(s)] = w
    u = np.array([[(U or {}).get(s, np.inf) for s in srcs]] * len(rows)).reshape(len(rows), len(srcs))
    return Runs(
        N=np.array([r[0] for r in rows], dtype=float),
        D=np.array([r[1] for r in rows], dtype=float),
        mix=mix,
        U=u,
        srcs=srcs,
        seed=np.array([r[3] for r in rows], dtype=np.int64),
    )


def simulate_cube(
    law: str,
    params: Mapping[str, float] | Mapping[str, Mapping[str, float]],
    runs: Runs,
    *,
    key: jax.Array,
    targets: Sequence[str] | None = None,
    sigma: float = 0.01,
    likelihood: Likelihood = "normal",
    nu: float = 4.0,
    units: str = "nats/token",
) -> xr.Dataset:
    """Draw a run cube from ``law``: ``loss = law(x; params) * exp(eps)``.

    Parameters
    ----------
    law
        A registry law name.
    params
        The law's parameters (SPEC names), one mapping for every target or ``{target: mapping}``.
        ATLAS's ``tau_<lang>`` missing for a co-sampled language falls back to ``tau_other``.
    runs
        Configurations from :func:`grid` (or built by hand).
    key
        PRNG key of the noise.
    targets
        Evaluation languages (default: every training language). A run that never trains on a
        target is left unevaluated (NaN) for laws that use the target's own tokens.
    sigma, likelihood, nu
        Observation noise on log-loss.

    Examples
    --------
    >>> import jax
    >>> runs = grid(N=[1e7, 1e8], D=[1e9, 1e10])
    >>> c = simulate_cube("chinchilla", PAPER["chinchilla"], runs, key=jax.random.key(0), sigma=0.0)
    >>> dict(c.sizes)
    {'run': 4, 'lang': 1, 'src': 1}
    """
    spec = registry.get_law(law)
    srcs = list(runs.srcs)
    targets = list(srcs if targets is None else targets)
    per_target = all(isinstance(v, Mapping) for v in params.values())
    loss = np.full((len(runs.N), len(targets)), np.nan)
    keys = jax.random.split(key, len(targets))
    for j, t in enumerate(targets):
        p = dict(params[t] if per_target else params)
        sources = cube_lib.cosampled_from_mix(runs.mix, srcs, t) if spec.transfer == "sources" else ()
        for s in sources:
            p.setdefault(f"tau_{s}", p.get("tau_other", 0.0))
        missing = [n for n in spec.param_names(sources) if n not in p]
        if missing:
            raise ValueError(f"parameters {missing} of law {law!r} are missing for target {t!r}")
        x = registry.inputs(spec, N=runs.N, D=runs.D, mix=runs.mix, U=runs.U, srcs=srcs, target=t, sources=sources)
        clean = np.asarray(spec.evaluate(x, {n: p[n] for n in spec.param_names(sources)}, sources), dtype=float)
        draws = {"sigma": np.array([sigma]), "nu": np.array([nu])}
        eps = np.asarray(sample_log_noise(keys[j], draws, clean.shape, likelihood=likelihood))[0]
        value = clean * np.exp(eps)
        if spec.target_tokens:
            value = np.where(x["D_t"] > 0, value, np.nan)
        loss[:, j] = value
    return cube_lib.make_cube(
        loss=loss,
        N=runs.N,
        D=runs.D,
        mix=runs.mix,
        U=runs.U,
        lang=targets,
        src=srcs,
        seed=runs.seed,
        units=units,
        attrs={"simulated_from": law, "sigma": sigma, "likelihood": likelihood},
    )
