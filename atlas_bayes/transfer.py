"""Cross-lingual transfer: bilingual transfer scores (BTS) with credible intervals.

The score of source ``s`` for target ``t`` (Longpre et al. 2025, section 4; SPEC section 2) compares a
monolingual run on ``t`` with a 50/50 ``(s, t)`` run of the same size:

.. math:: BTS(s \\to t) = 2 - d_{bi} / d_{mono}

where ``d_mono`` is a reference horizon (tokens) of the monolingual run and ``d_bi`` the total tokens
at which the bilingual run first reaches the monolingual run's loss ``L_t(d_mono)`` on ``t``. The
paper reads ``d_bi`` off one learning curve; here every learning curve gets a Bayesian fit
(:mod:`atlas_bayes.curves`), so for each posterior draw ``L_t(d_mono)`` is evaluated on the
monolingual curve and inverted on the bilingual one: ``d_bi``, hence BTS, has a posterior. With
several seeds of a configuration, every (monolingual seed, bilingual seed) pairing contributes
draws in equal number (the pooled posterior covers seed-to-seed scatter; ``seed_sd`` reports it).

:func:`transfer_scores` returns an ``xr.Dataset`` over ``(target, source, horizon[, draw])``;
:func:`compare_tau` sets the transfer weights of an ATLAS fit against ``tau = BTS / (2 - BTS)``.
The hierarchical model that predicts unmeasured pairs is :mod:`atlas_bayes.transfer_model`.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes import cube as cube_lib
from atlas_bayes import laws
from atlas_bayes.nuts import interval, warn_diagnostics

__all__ = ["BTS_FLOOR", "TransferRuns", "find_transfer_runs", "transfer_scores", "to_rows", "merge_model", "compare_tau"]

BTS_FLOOR = -10.0  # a draw whose bilingual curve never reaches the target loss (d_bi = inf) is set to this
_TOL = 1e-6


class TransferRuns(NamedTuple):
    """The runs a transfer analysis uses: *units* (:func:`atlas_bayes.curves.group_units`, the runs of
    one configuration and seed that differ only in budget) by position in the cube."""

    N: float
    mono: dict[str, list[tuple[int, ...]]]  # target -> monolingual units (one per seed)
    bi: dict[tuple[str, str], list[tuple[int, ...]]]  # (target, source) -> 50/50 units evaluated on target
    langs: list[str]


def _pretrain(fin: xr.Dataset) -> np.ndarray:
    if "kind" not in fin:
        return np.ones(fin.sizes["run"], dtype=bool)
    return np.asarray(fin["kind"].values == "pretrain")


def find_transfer_runs(cube: xr.Dataset, *, N: float | None = None) -> TransferRuns:
    """Monolingual and 50/50 bilingual pretraining runs on fresh data at one model size, checked for
    completeness (runs that repeat data, ``mix * D > U``, are left out).

    Raises ``ValueError`` naming the runs to add: no bilingual runs, several sizes without ``N``, or
    a bilingual cell without the monolingual baseline of its target.
    """
    from atlas_bayes.curves import fresh_data, group_units

    fin = cube_lib.final(cube)
    srcs = [str(s) for s in fin["src"].values]
    langs = cube_lib.languages(fin)
    mix = fin["mix"].values
    pre = _pretrain(fin) & fresh_data(cube)  # repeated-data runs are not baselines
    used = mix > _TOL
    is_mono = pre & (used.sum(1) == 1)
    is_bi = pre & (used.sum(1) == 2) & (np.abs(np.where(used, mix, 0.5) - 0.5) < _TOL).all(1)
    Ns = fin["N"].values
    if not is_bi.any():
        raise ValueError(
            "no bilingual 50/50 pretraining runs in the cube (two training languages at weight 0.5 each): "
            "add runs with mix s=0.5,t=0.5 and a monolingual run of each target (mix t=1) at the same N"
        )
    sizes = sorted({float(n) for n in Ns[is_bi]})
    if N is None:
        if len(sizes) > 1:
            raise ValueError(f"the bilingual runs have several model sizes N = {sizes}; choose one with --N")
        N = sizes[0]
    at_n = np.isclose(Ns, N, rtol=_TOL)
    if not (is_bi & at_n).any():
        raise ValueError(f"no bilingual 50/50 runs at N={N:g}; the bilingual runs have N = {sizes}")
    mono: dict[str, list[tuple[int, ...]]] = {}
    for unit in group_units(cube, np.flatnonzero(is_mono & at_n)):
        mono.setdefault(srcs[int(np.flatnonzero(used[unit[0]])[0])], []).append(unit)
    run_ids = [str(r) for r in fin["run"].values]
    bi: dict[tuple[str, str], list[tuple[int, ...]]] = {}
    missing: dict[str, list[str]] = {}
    loss = fin["loss"]
    for unit in group_units(cube, np.flatnonzero(is_bi & at_n)):
        pair = [srcs[j] for j in np.flatnonzero(used[unit[0]])]
        for t, s in (pair, pair[::-1]):
            if t not in langs or not np.isfinite(loss.isel(run=list(unit)).sel(lang=t).values).any():
                continue  # not evaluated on t: no cell
            if t not in mono:
                missing.setdefault(t, []).append(f"{run_ids[unit[-1]]} ({t}+{s})")
                continue
            bi.setdefault((t, s), []).append(unit)
    if missing:
        message = "; ".join(
            f"no monolingual baseline for target {t!r} at N={N:g}, needed by bilingual run(s) {', '.join(v[:4])}"
            f"{' and more' if len(v) > 4 else ''}: add a run with mix {t}=1 at N={N:g}"
            for t, v in sorted(missing.items())
        )
        if not bi:
            raise ValueError(message)
        # The other direction of those pairs is still measurable: score it, and say what is left out.
        warnings.warn(f"{message} (those cells are left out; the other direction of each pair is scored)",
                      UserWarning, stacklevel=3)
    if not bi:
        raise ValueError(f"the bilingual runs at N={N:g} have no finite loss on either of their languages; nothing to score")
    order = [x for x in langs if x in {p for pair in bi for p in pair}]
    return TransferRuns(N=float(N), mono=mono, bi=bi, langs=order)


def transfer_scores(
    cube: xr.Dataset,
    *,
    horizon: float | Sequence[float] | None = None,
    N: float | None = None,
    points: str = "auto",
    level: float = 0.9,
    draws: int = 1000,
    warmup: int = 1000,
    chains: int = 4,
    seed: int = 0,
    keep_draws: int = 1000,
    target_accept: float = 0.9,
    stretch: float = 3.0,
) -> xr.Dataset:
    """Bilingual transfer scores with credible intervals from the cube's learning curves.

    Parameters
    ----------
    cube
        A run cube holding, at one model size, monolingual runs of each target and 50/50
        bilingual runs (:func:`find_transfer_runs`), with learning curves: checkpoints along
        ``step`` or several token budgets per configuration (``points``).
    horizon
        Reference horizon(s) ``d_mono`` in tokens. Default: one horizon for every cell, as in the
        paper, the largest that keeps every monolingual curve inside its points and leaves each
        bilingual curve room down to ``BTS = 2 - stretch``: ``min(end of every monolingual curve,
        end of every bilingual curve / stretch)``.
    N
        Model size to use when the cube has several.
    points
        Which points make a learning curve (:func:`atlas_bayes.curves.choose_points`).
    level
        Central credible level of ``lower``/``upper``.
    draws, warmup, chains, seed, target_accept
        NUTS settings of the learning-curve fits.
    keep_draws
        Posterior draws of BTS kept in the result (evenly thinned).

    Returns
    -------
    ``xr.Dataset`` with dims ``target``, ``source``, ``horizon`` (tokens), ``draw``:
    ``bts(target, source, horizon, draw)`` (NaN where not measured), ``mean, sd, median, lower,
    upper, p_positive`` (P(BTS > 0)), ``uncertain`` (the interval contains 0), ``extrapolated``
    (share of draws whose ``d_bi`` lies beyond the bilingual curve's last point), ``p_unreachable``
    (share of draws where the bilingual run never reaches the loss; those draws are
    :data:`BTS_FLOOR`), ``seed_sd`` (sd between seed pairings), ``n_pairs``, ``measured``;
    attrs ``N``, ``level``, ``units``, ``points``, ``diagnostics`` (of the curve fits).
    """
    from atlas_bayes.curves import choose_points, fit_curves, stack_curves, unit_curve

    runs = find_transfer_runs(cube, N=N)
    if horizon is not None:
        bad = [float(h) for h in np.atleast_1d(np.asarray(horizon, dtype=float)) if not (np.isfinite(h) and h > 0)]
        if bad:
            raise ValueError(f"horizon must be a positive token count; got {bad}")
    needed = sorted({(u, t) for t, v in runs.mono.items() for u in v if any(t == c[0] for c in runs.bi)}
                    | {(u, t) for (t, _), v in runs.bi.items() for u in v})
    mode = choose_points(cube, [u for u, _ in needed], points)
    index = {c: i for i, c in enumerate(needed)}
    run_ids = [str(x) for x in cube["run"].values]
    D, loss = stack_curves([unit_curve(cube, u, t, mode) for u, t in needed])
    labels = [f"run {run_ids[u[-1]]!r}" + (f" (+{len(u) - 1} budgets)" if len(u) > 1 else "") + f" on {t!r}" for u, t in needed]
    fit = fit_curves(D, loss, draws=draws, warmup=warmup, chains=chains, seed=seed, target_accept=target_accept,
                     labels=labels)
    warn_diagnostics(fit.diagnostics, what="learning-curve fits behind the transfer scores", stacklevel=2)
    if horizon is None:
        mono_end = min(fit.D_range[index[(u, t)], 1] for t, v in runs.mono.items() for u in v if (u, t) in index)
        bi_end = min(fit.D_range[index[(u, t)], 1] for (t, _), v in runs.bi.items() for u in v)
        horizons = [float(min(mono_end, bi_end / stretch))]
    else:
        horizons = [float(h) for h in np.atleast_1d(np.asarray(horizon, dtype=float))]
    E, B, beta, D0 = (fit.flat(k) for k in ("E", "B", "beta", "D0"))
    S = E.shape[0]
    thin = np.unique(np.linspace(0, S - 1, min(keep_draws, S)).round().astype(int))

    langs = runs.langs
    n, H = len(langs), len(horizons)
    out = np.full((n, n, H, len(thin)), np.nan)
    extra = {k: np.full((n, n, H), np.nan) for k in ("extrapolated", "p_unreachable", "seed_sd")}
    n_pairs = np.zeros((n, n), dtype=int)
    for (t, s), bi_units in runs.bi.items():
        i, j = langs.index(t), langs.index(s)
        pairings = list(itertools.product(runs.mono[t], bi_units))
        n_pairs[i, j] = len(pairings)
        for h_i, h in enumerate(horizons):
            per = np.empty((len(pairings), S))
            over = np.empty((len(pairings), S), dtype=bool)
            for p, (um, ub) in enumerate(pairings):
                m, b = index[(um, t)], index[(ub, t)]
                target_loss = laws.learning_curve(h, E=E[:, m], B=B[:, m], beta=beta[:, m], D0=D0[:, m], D_ref=fit.D_ref[m])
                d_bi = np.asarray(laws.learning_curve_tokens(target_loss, E=E[:, b], B=B[:, b], beta=beta[:, b], D0=D0[:, b],
                                                             D_ref=fit.D_ref[b]), dtype=float)
                over[p] = d_bi > fit.D_range[b, 1] * (1 + _TOL)
                per[p] = np.asarray(laws.bilingual_transfer_score(d_bi, h), dtype=float)
            unreachable = ~np.isfinite(per)
            per = np.where(unreachable, BTS_FLOOR, np.maximum(per, BTS_FLOOR))
            pick = np.arange(S) % len(pairings)  # draw k comes from pairing k mod P: equal weight per pairing
            pooled = per[pick, np.arange(S)]
            out[i, j, h_i] = pooled[thin]
            extra["extrapolated"][i, j, h_i] = over[pick, np.arange(S)].mean()
            extra["p_unreachable"][i, j, h_i] = unreachable[pick, np.arange(S)].mean()
            extra["seed_sd"][i, j, h_i] = per.mean(axis=1).std(ddof=1) if len(pairings) > 1 else np.nan
    measured = n_pairs > 0
    summary = {k: np.full((n, n, H), np.nan) for k in ("mean", "sd", "median", "lower", "upper", "p_positive")}
    cells = out[measured]  # (cell, horizon, draw): only measured cells, so no all-NaN slices
    if cells.size:
        summary["mean"][measured] = cells.mean(-1)
        summary["sd"][measured] = cells.std(-1, ddof=1)
        summary["median"][measured] = np.median(cells, -1)
        summary["lower"][measured], summary["upper"][measured] = interval(cells, level)
        summary["p_positive"][measured] = (cells > 0).mean(-1)
    dims3 = ("target", "source", "horizon")
    ds = xr.Dataset(
        {
            "bts": (dims3 + ("draw",), out, {"long_name": "bilingual transfer score BTS(source -> target), draws"}),
            **{k: (dims3, v) for k, v in summary.items()},
            "uncertain": (dims3, (summary["lower"] < 0) & (summary["upper"] > 0)),
            **{k: (dims3, v) for k, v in extra.items()},
            "n_pairs": (("target", "source"), n_pairs),
            "measured": (("target", "source"), measured),
        },
        coords={"target": np.asarray(langs, dtype=object), "source": np.asarray(langs, dtype=object),
                "horizon": np.asarray(horizons, dtype=float), "draw": np.arange(len(thin))},
        attrs={
            "analysis": "transfer_scores",
            "N": runs.N,
            "level": level,
            "units": str(cube["loss"].attrs.get("units", "")),
            "bts_floor": BTS_FLOOR,
            "n_curves": len(needed),
            "points": mode,
            "diagnostics": {k: fit.diagnostics[k] for k in ("chains", "draws", "divergences", "max_r_hat",
                                                            "min_ess_bulk", "min_ess_tail")},
        },
    )
    ds["horizon"].attrs["units"] = "tokens"
    return ds


def _horizon_index(scores: xr.Dataset, horizon: float | None) -> int:
    hs = scores["horizon"].values
    if horizon is None:
        if len(hs) > 1:
            raise ValueError(f"the transfer result has several horizons {hs.tolist()}; choose one")
        return 0
    hit = np.flatnonzero(np.isclose(hs, horizon, rtol=1e-6))
    if not len(hit):
        raise ValueError(f"horizon {horizon:g} is not in the transfer result; its horizons are {hs.tolist()}")
    return int(hit[0])


def compare_tau(fit, scores: xr.Dataset, *, target: str | None = None, horizon: float | None = None,
                level: float = 0.9, seed: int = 0) -> pd.DataFrame:
    """ATLAS's fitted transfer weights next to the ones bilingual scores imply, ``tau = BTS / (2 - BTS)``.

    One row per co-sampled source ``s`` of the fit's target (``tau_<s>``) that the transfer result
    measured: ``fit_mean, fit_lower, fit_upper`` (the fit's draws), ``bts_mean, bts_lower,
    bts_upper`` (:func:`atlas_bayes.laws.tau_from_bts` of the BTS draws), and the difference
    ``diff_*`` (fit minus BTS, draws paired at random) with ``agree`` (its interval contains 0).
    The two need not agree: ATLAS's tau is fitted across mixtures and sizes, BTS at one size and
    horizon of a 50/50 run.
    """
    target = fit._check_target(target)
    sources = [s for s in fit.sources_for(target)]
    if not sources:
        raise ValueError(f"the fit of {fit.law!r} for {target!r} has no per-source transfer weights tau_<lang>; "
                         "fit the full law (--law atlas) on multilingual runs")
    if target not in scores["target"].values:
        raise ValueError(f"the transfer result has no scores for target {target!r}; it scores {scores['target'].values.tolist()}")
    h = _horizon_index(scores, horizon)
    params = fit.params_for(target)
    rng = np.random.default_rng(seed)
    rows = {}
    for s in sources:
        if s not in scores["source"].values or not bool(scores["measured"].sel(target=target, source=s)):
            continue
        bts = scores["bts"].sel(target=target, source=s).isel(horizon=h).values
        tau_b = np.asarray(laws.tau_from_bts(bts[np.isfinite(bts)]), dtype=float)
        tau_f = params[f"tau_{s}"]
        k = max(len(tau_f), len(tau_b))
        diff = rng.choice(tau_f, k) - rng.choice(tau_b, k)
        row = {}
        for name, v in (("fit", tau_f), ("bts", tau_b), ("diff", diff)):
            lo, hi = interval(v, level)
            row |= {f"{name}_mean": float(np.mean(v)), f"{name}_lower": float(lo), f"{name}_upper": float(hi)}
        row["agree"] = bool(row["diff_lower"] <= 0 <= row["diff_upper"])
        rows[s] = row
    if not rows:
        raise ValueError(f"none of the fit's co-sampled sources {sources} has a measured BTS for target {target!r}; "
                         "add bilingual runs of these pairs")
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "source"
    table.attrs.update(target=target, level=level, horizon=float(scores["horizon"].values[h]))
    return table


def to_rows(scores: xr.Dataset) -> list[dict]:
    """One dict per measured cell and horizon (the ``--json`` rows of ``atlas transfer``)."""
    rows = []
    for h_i, h in enumerate(scores["horizon"].values):
        sel = scores.isel(horizon=h_i)
        for i, j in zip(*np.nonzero(scores["measured"].values)):
            cell = sel.isel(target=i, source=j)
            row = {"target": str(scores["target"].values[i]), "source": str(scores["source"].values[j]), "horizon": float(h)}
            for k in ("mean", "sd", "median", "lower", "upper", "p_positive", "extrapolated", "p_unreachable", "seed_sd"):
                row[k] = float(cell[k])
            row["uncertain"] = bool(cell["uncertain"])
            row["n_pairs"] = int(cell["n_pairs"])
            rows.append(row)
    return rows


def merge_model(scores: xr.Dataset, model: xr.Dataset) -> xr.Dataset:
    """The transfer scores with the hierarchical model's variables added (one file for both)."""
    keep = model.drop_vars(["measured", "observed"])
    out = xr.merge([scores, keep], compat="no_conflicts", join="exact", combine_attrs="override")
    out.attrs = dict(scores.attrs) | {"model": dict(model.attrs)}
    return out
