"""Pretrain from scratch or finetune? The crossover token count with its credible interval.

For one target ``t`` and model size ``N``, a model pretrained from scratch on ``t`` has the learning
curve ``L_pt(D)``, one finetuned on ``t`` from a multilingual base ``L_ft(D)`` (``D`` = tokens of
``t``; :mod:`atlas_bayes.curves` fits both, the finetune with an offset ``D0``: it starts from a
trained base). The crossover (Longpre et al. 2025, section 6; SPEC section 3) is

.. math:: D^* = \\min\\{D : L_{pt}(D) < L_{ft}(D)\\}

the budget beyond which training from scratch is better; the paper treats the base's compute as
sunk. With ``include_base_compute`` both sides get the same *total* compute: the scratch model
also gets the base's ``D_base`` tokens, ``L_pt(D + D_base) < L_ft(D)``, so finetuning pays only
while the base is worth more than its own cost. Every posterior draw of the curves gives one
``D*`` (``inf`` if the curves never cross within 100x the data): ``D*`` has a posterior, and
across sizes ``C*(N) = 6 N D* = k N^gamma`` is fitted with each size's ``D*`` uncertainty
propagated (:func:`fit_power_law`).
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes import cube as cube_lib
from atlas_bayes import laws
from atlas_bayes.nuts import warn_diagnostics

__all__ = ["CrossoverRuns", "CrossoverResult", "find_crossover_runs", "crossover", "fit_power_law", "to_json"]

_TOL = 1e-6
SEARCH = 100.0  # the crossover is searched up to this factor beyond the last observed token count
_GRID = 512


class CrossoverRuns(NamedTuple):
    """Per model size: pretraining units, finetune units (:func:`atlas_bayes.curves.group_units`) and
    the finetunes' base tokens (NaN if unknown)."""

    target: str
    sizes: list[float]
    pretrain: dict[float, list[tuple[int, ...]]]
    finetune: dict[float, list[tuple[int, ...]]]
    D_base: dict[float, float]


class CrossoverResult(NamedTuple):
    target: str
    units: str
    include_base_compute: bool
    budget: float | None
    level: float
    table: pd.DataFrame  # one row per size
    power_law: dict | None  # C*(N) = k N^gamma (None: fewer than 2 usable sizes); {"sunk", "total"} with base compute
    curves: list[dict]  # for plots: per size D grid and (median, lower, upper) of each curve
    diagnostics: dict
    draws: dict[float, np.ndarray]  # D* draws per size


def _base_tokens(fin: xr.Dataset, runs: list[int], override: float | None) -> float:
    if override is not None:
        return float(override)
    if "D_base" in fin:
        v = fin["D_base"].values[runs].astype(float)
        if np.all(v > 0):
            return float(np.median(v))
    if "base" in fin:
        ids = [str(r) for r in fin["run"].values]
        bases = {str(b) for b in fin["base"].values[runs]}
        if all(b in ids for b in bases):
            return float(np.median([fin["D"].values[ids.index(b)] for b in bases]))
    return float("nan")


def find_crossover_runs(cube: xr.Dataset, *, target: str, base_tokens: float | None = None) -> CrossoverRuns:
    """Pretraining (``kind='pretrain'``, mix ``t=1``) and finetune (``kind='finetune'``, mix ``t=1``) runs
    of ``target``, paired by model size. Errors name the runs to add."""
    from atlas_bayes.curves import fresh_data, group_units

    fin = cube_lib.final(cube)
    langs = cube_lib.languages(fin)
    srcs = [str(s) for s in fin["src"].values]
    if target not in langs or target not in srcs:
        raise ValueError(f"target {target!r} must be both trained on and evaluated; evaluated languages {langs}, "
                         f"training languages {srcs}")
    if "kind" not in fin:
        raise ValueError(f"no finetune runs: the cube has no kind variable; add finetune runs of {target!r} (kind='finetune', "
                         f"mix {target}=1, from a multilingual base) and pretraining runs of {target!r} at the same sizes")
    only_t = (np.abs(fin["mix"].sel(src=target).values - 1.0) < _TOL) & fresh_data(cube)  # no repeated-data runs
    kind = fin["kind"].values
    pre, ft = np.flatnonzero(only_t & (kind == "pretrain")), np.flatnonzero(only_t & (kind == "finetune"))
    if not len(ft):
        raise ValueError(f"no finetune runs of {target!r} (kind='finetune', mix {target}=1): add runs that continue "
                         f"training a multilingual base on {target!r} alone, at the sizes of the pretraining runs")
    N = fin["N"].values
    ft_sizes = sorted({float(n) for n in N[ft]})
    missing = [n for n in ft_sizes if not np.isclose(N[pre], n, rtol=_TOL).any()]
    if missing:
        raise ValueError(f"no pretraining run of {target!r} from scratch (kind='pretrain', mix {target}=1) at N = "
                         f"{', '.join(f'{n:g}' for n in missing)}: add them to compare with the finetunes of that size")
    out_pre, out_ft, d_base = {}, {}, {}
    for n in ft_sizes:
        out_pre[n] = group_units(cube, pre[np.isclose(N[pre], n, rtol=_TOL)])
        f = ft[np.isclose(N[ft], n, rtol=_TOL)]
        out_ft[n] = group_units(cube, f)
        d_base[n] = _base_tokens(fin, list(f), base_tokens)
    return CrossoverRuns(target=target, sizes=ft_sizes, pretrain=out_pre, finetune=out_ft, D_base=d_base)


def _first_crossing(D: np.ndarray, diff: np.ndarray) -> np.ndarray:
    """Per row of ``diff`` (``L_pt - L_ft`` on the log grid ``D``), the first D where it turns negative
    (log-linear interpolation); ``D[0]`` if negative from the start; ``inf`` if never."""
    neg = diff < 0
    first = np.argmax(neg, axis=1)
    ever = neg.any(axis=1)
    i = np.clip(first, 1, len(D) - 1)
    rows = np.arange(diff.shape[0])
    d0, d1 = diff[rows, i - 1], diff[rows, i]
    frac = np.clip(d0 / np.where(d0 - d1 == 0, 1.0, d0 - d1), 0.0, 1.0)
    logD = np.log(D)
    cross = np.exp(logD[i - 1] + frac * (logD[i] - logD[i - 1]))
    return np.where(~ever, np.inf, np.where(first == 0, D[0], cross))


def _q(v: np.ndarray, level: float) -> tuple[float, float, float]:
    lo, med, hi = np.quantile(v, [(1 - level) / 2, 0.5, (1 + level) / 2], method="inverted_cdf")
    return float(lo), float(med), float(hi)


def fit_power_law(N: np.ndarray, draws: list[np.ndarray], *, level: float = 0.9, samples: int = 4000,
                  seed: int = 0) -> dict:
    """Posterior of ``C*(N) = k N^gamma`` from per-size draws of ``C*``.

    Each size's uncertainty enters as the mean ``m_i`` and sd ``s_i`` of its ``log C*`` draws:
    ``m_i ~ N(log k + gamma log N_i, sqrt(s_i^2 + tau^2))`` with flat priors on ``log k`` and ``gamma``
    and, with 3 or more sizes, a scatter ``tau ~ HalfNormal(0.5)`` about the power law (with 2 sizes
    the line is exact and ``tau = 0``). The posterior is sampled exactly (``tau`` on a grid, then
    ``(log k, gamma)`` from their Gaussian conditional): iid draws, no sampler diagnostics needed.
    """
    x = np.log(np.asarray(N, dtype=float))
    m = np.array([np.mean(np.log(d)) for d in draws])
    s = np.array([np.std(np.log(d), ddof=1) for d in draws])
    n = len(x)
    if n < 2:
        raise ValueError("C*(N) = k N^gamma needs crossovers at 2 or more model sizes; add finetune and pretraining runs "
                         "of the target at another size")
    xc = x - x.mean()
    X = np.stack([np.ones(n), xc], axis=1)
    taus = np.r_[0.0, np.geomspace(1e-3, 3.0, 199)] if n >= 3 else np.array([0.0])

    def conditional(tau):
        w = 1.0 / (s**2 + tau**2)
        P = X.T @ (X * w[:, None])
        cov = np.linalg.inv(P)
        mean = cov @ (X.T @ (w * m))
        r = m - X @ mean
        # log marginal likelihood of tau (flat priors on the line), up to a constant
        logml = 0.5 * np.sum(np.log(w)) - 0.5 * np.linalg.slogdet(P)[1] - 0.5 * np.sum(w * r**2)
        return mean, cov, logml

    parts = [conditional(t) for t in taus]
    logp = np.array([p[2] for p in parts]) - 0.5 * (taus / 0.5) ** 2
    prob = np.exp(logp - logp.max())
    prob /= prob.sum()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(taus), size=samples, p=prob)
    coef = np.empty((samples, 2))
    for k in np.unique(pick):
        sel = pick == k
        coef[sel] = rng.multivariate_normal(parts[k][0], parts[k][1], size=int(sel.sum()))
    gamma = coef[:, 1]
    log_k = coef[:, 0] - gamma * x.mean()
    summ = lambda v: dict(zip(("lower", "median", "upper"), _q(v, level))) | {"mean": float(np.mean(v))}  # noqa: E731
    k_lo, k_med, k_hi = _q(np.exp(log_k), level)
    return {"gamma": summ(gamma), "log10_k": summ(log_k / np.log(10)), "k": {"lower": k_lo, "median": k_med, "upper": k_hi},
            "tau": summ(taus[pick]), "sizes": n, "level": level,
            "note": None if n >= 3 else "two sizes: the line goes through both; no check of the power law itself"}


def crossover(
    cube: xr.Dataset,
    *,
    target: str,
    include_base_compute: bool = False,
    budget: float | None = None,
    base_tokens: float | None = None,
    points: str = "auto",
    level: float = 0.9,
    draws: int = 1000,
    warmup: int = 1000,
    chains: int = 4,
    seed: int = 0,
    target_accept: float = 0.9,
) -> CrossoverResult:
    """Posterior of the crossover ``D*`` of ``target`` at each model size, and ``C*(N)`` across sizes.

    ``budget`` (tokens of the target) adds ``p_finetune_better``, the posterior probability that the
    finetuned model has the lower loss at that budget. Returns a :class:`CrossoverResult`; its
    ``table`` has one row per size with ``D_star_*`` (``median, lower, upper``; ``mean`` over finite
    draws), ``p_cross`` (share of draws that cross within the search range), ``extrapolated`` (share
    that read the pretraining curve beyond its data), ``below_range`` (share where scratch is better
    from the first finetune point), ``C_star_*`` (``6 N D*``) and ``p_finetune_better``.
    ``include_base_compute`` adds the same columns prefixed ``total_`` for equal total compute
    (the scratch model also gets the base's ``D_base`` tokens; ``C* = 6 N (D* + D_base)``), with
    ``D_base`` from the cube's ``D_base`` variable or base run, else ``base_tokens``.
    """
    from atlas_bayes.curves import choose_points, fit_curves, stack_curves, unit_curve

    if budget is not None and not budget > 0:
        raise ValueError(f"--budget must be a positive token count; got {budget}")
    runs = find_crossover_runs(cube, target=target, base_tokens=base_tokens)
    if include_base_compute:
        unknown = [n for n in runs.sizes if not np.isfinite(runs.D_base[n])]
        if unknown:
            raise ValueError(f"--include-base-compute needs the base model's tokens, unknown for the finetunes at N = "
                             f"{', '.join(f'{n:g}' for n in unknown)} (no D_base variable or base run in the cube); "
                             "give them with --base-tokens")
    items = [(n, "pretrain", u) for n in runs.sizes for u in runs.pretrain[n]] + \
            [(n, "finetune", u) for n in runs.sizes for u in runs.finetune[n]]
    mode = choose_points(cube, [u for _, _, u in items], points)
    ids = [str(r) for r in cube["run"].values]
    D, loss = stack_curves([unit_curve(cube, u, target, mode) for _, _, u in items])
    fit = fit_curves(D, loss, offset=np.array([k == "finetune" for _, k, _ in items], dtype=float), draws=draws,
                     warmup=warmup, chains=chains, seed=seed, target_accept=target_accept,
                     labels=[f"{k} run {ids[u[-1]]!r} on {target!r}" for _, k, u in items])
    warn_diagnostics(fit.diagnostics, what=f"learning-curve fits behind the crossover of {target!r}", stacklevel=2)
    E, B, beta, D0 = (fit.flat(k) for k in ("E", "B", "beta", "D0"))
    S = E.shape[0]

    def curve(i, d):
        return np.asarray(laws.learning_curve(d, E=E[:, i, None], B=B[:, i, None], beta=beta[:, i, None],
                                              D0=D0[:, i, None], D_ref=fit.D_ref[i]), dtype=float)

    rows, plot_curves, all_draws, total_draws = [], [], {}, {}
    for n in runs.sizes:
        pt = [i for i, (m, k, _) in enumerate(items) if m == n and k == "pretrain"]
        ft = [i for i, (m, k, _) in enumerate(items) if m == n and k == "finetune"]
        lo = float(min(fit.D_range[i, 0] for i in pt + ft))
        hi = float(max(fit.D_range[i, 1] for i in pt + ft))
        pt_hi = float(max(fit.D_range[i, 1] for i in pt))
        grid = np.geomspace(min(fit.D_range[i, 0] for i in ft), hi * SEARCH, _GRID)
        pairings = list(itertools.product(pt, ft))
        pick = np.arange(S) % len(pairings)
        row = {"N": n, "D_base": runs.D_base[n], "pairings": len(pairings), "D_observed_min": lo, "D_observed_max": hi}
        # sunk base (the paper), then, if asked, the same total compute on both sides
        for prefix, shift in [("", 0.0)] + ([("total_", runs.D_base[n])] if include_base_compute else []):
            dstar = np.empty(S)
            better = np.full(S, False)
            for p, (a, b) in enumerate(pairings):
                rows_p = pick == p
                diff = curve(a, grid + shift)[rows_p] - curve(b, grid)[rows_p]
                dstar[rows_p] = _first_crossing(grid, diff)
                if budget is not None:
                    better[rows_p] = (curve(b, np.array([budget])) < curve(a, np.array([budget + shift])))[rows_p, 0]
            (total_draws if shift else all_draws)[n] = dstar
            finite = np.isfinite(dstar)
            q = _q(dstar, level)
            cq = _q(6.0 * n * (dstar + shift), level)
            row |= {
                f"{prefix}D_star_median": q[1], f"{prefix}D_star_lower": q[0], f"{prefix}D_star_upper": q[2],
                f"{prefix}D_star_mean": float(np.mean(dstar[finite])) if finite.any() else np.inf,
                f"{prefix}p_cross": float(finite.mean()),
                # share of draws that read the pretraining curve beyond its last point
                f"{prefix}extrapolated": float((dstar + shift > pt_hi * (1 + _TOL)).mean()),
                f"{prefix}below_range": float((dstar <= grid[0]).mean()),
                f"{prefix}C_star_median": cq[1], f"{prefix}C_star_lower": cq[0], f"{prefix}C_star_upper": cq[2],
                f"{prefix}p_finetune_better": float(better.mean()) if budget is not None else np.nan,
            }
        rows.append(row)
        d_plot = np.geomspace(lo, hi, 60)
        entry = {"N": n, "D": d_plot}
        for kind, idx in (("pretrain", pt[0]), ("finetune", ft[0])):
            c = curve(idx, d_plot)
            entry[kind] = tuple(np.quantile(c, [0.5, (1 - level) / 2, (1 + level) / 2], axis=0))
        plot_curves.append(entry)
    table = pd.DataFrame(rows)

    def law(draws_by_size, prefix, shift_of):
        usable = [n for n, r in zip(runs.sizes, rows) if r[f"{prefix}p_cross"] >= 0.95 and r[f"{prefix}below_range"] < 0.05]
        if len(usable) < 2:
            return None
        out = fit_power_law(np.array(usable), [6.0 * n * (draws_by_size[n][np.isfinite(draws_by_size[n])] + shift_of(n))
                                                for n in usable], level=level, seed=seed)
        return out | {"N": usable}

    power = law(all_draws, "", lambda n: 0.0)
    if include_base_compute:
        power = {"sunk": power, "total": law(total_draws, "total_", lambda n: runs.D_base[n])}
    return CrossoverResult(target=target, units=str(cube["loss"].attrs.get("units", "")),
                           include_base_compute=include_base_compute, budget=budget, level=level, table=table,
                           power_law=power, curves=plot_curves, diagnostics=fit.diagnostics | {"points": mode},
                           draws=all_draws)


def to_json(result: CrossoverResult) -> dict[str, Any]:
    """The ``--json`` object of ``atlas crossover``."""
    return {"target": result.target, "units": result.units, "include_base_compute": result.include_base_compute,
            "budget": result.budget, "level": result.level, "sizes": result.table.to_dict("records"),
            "power_law": result.power_law, "diagnostics": result.diagnostics}
