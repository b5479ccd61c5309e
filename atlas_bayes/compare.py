"""Law comparison: the paper's Table 1 protocol (held-out R^2 per split), with uncertainty.

Each split of :mod:`atlas_bayes.splits` (SPEC section 4: ``random``, ``N``, ``D``, ``C``, ``M``)
divides the comparison points of every target into a training and a held-out part; every law is
fitted on the training part and scored on the held-out part. The points are the same for every law,
and a law is fitted on all of its observations with 0/1 weights
(:func:`atlas_bayes.inference.fit_bayes`, :func:`atlas_bayes.point.fit_point_arrays`), so its fits on
the five splits share one compiled program. Laws a cube cannot support (DCSL without ``U``, ATLAS or
MSL without multilingual mixtures) are skipped, with the reason, for the targets concerned.

Scores (:func:`compare`), per law, split and target:

``r2``, ``r2_lower``, ``r2_upper``
    the posterior of the held-out ``R^2 = 1 - SS_res / SS_tot`` of the noise-free law, one value
    per posterior draw (bootstrap refit for ``method="point"``): median and central ``level``
    interval;
``r2_pred``
    ``R^2`` of the posterior mean prediction (of the estimate, for a point fit: the paper's number);
``coverage``
    share of held-out losses inside the central ``level`` posterior predictive interval (noise
    included): near ``level`` when the law and its uncertainty are right;
``lpd``
    mean log predictive density of the held-out losses (nats per point; higher is better, a proper
    score that rewards honest intervals);
``elpd_loo``, ``elpd_loo_se``, ``p_loo``, ``pareto_k_max``, ``pareto_k_bad``, ``elpd_diff``, ``elpd_diff_se``
    PSIS-LOO (ArviZ) of the ``random`` split's fit on its training points, and the difference to
    the best law with the standard error of the difference (Bayesian methods only).

``lang="all"`` holds the average over targets of each draw's ``R^2`` (Table 1 averages over target
languages), coverage and ``lpd`` pooled over every held-out point, and elpd summed over targets.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes import registry
from atlas_bayes.splits import ALL, SPLIT_LABELS, SPLITS, Points, SplitName, comparison_targets, points, split_mask

__all__ = [
    "SplitName",
    "SPLITS",
    "SPLIT_LABELS",
    "DEFAULT_LAWS",
    "ALL",
    "ParetoKWarning",
    "Points",
    "comparison_targets",
    "points",
    "split_mask",
    "compare",
    "to_frame",
    "to_json",
]

DEFAULT_LAWS = ("chinchilla", "dcsl", "msl", "atlas")
PARETO_K = 0.7  # PSIS-LOO is unreliable for points above this shape (Vehtari et al. 2017)


class ParetoKWarning(UserWarning):
    """PSIS-LOO points with Pareto k above 0.7: their elpd contribution is unreliable."""


# ----------------------------------------------------------------------------- fits


class _LawData(NamedTuple):
    law: registry.Law
    targets: tuple[str, ...]  # the targets this law is fitted on
    obs: Any  # inference.Observations over ``targets``
    point: np.ndarray  # (obs,) index of each observation's comparison point, -1 if not one


def _law_data(cube: xr.Dataset, name: str, targets: Sequence[str], pts: Points) -> tuple[_LawData | None, dict[str, str]]:
    from atlas_bayes import inference

    law = registry.get_law(name)
    ok, skipped = [], {}
    for t in targets:
        try:
            d = registry.design(cube, law, target=t)
        except ValueError as err:
            skipped[t] = str(err).strip()
            continue
        if name == "msl":
            mine = np.isin(d.run, pts.run[pts.target == t])
            shares = np.unique(np.round(d.x["p"][mine], 9))
            if shares.size < 2:
                skipped[t] = (f"law 'msl' fits the mixture-share exponent gamma, which needs runs that train on {t!r} at "
                              f"different shares; every run has p = {shares[0]:g} (MSL is then Chinchilla rescaled)")
                continue
        ok.append(t)
    if not ok:
        return None, skipped
    obs = inference.observations(cube, law, target=list(ok))
    index = {(t, r): i for i, (t, r) in enumerate(zip(pts.target, pts.run))}
    point = np.array([index.get((obs.targets[lang], str(r)), -1) for lang, r in zip(obs.lang, obs.run)], dtype=int)
    return _LawData(law, tuple(ok), obs, point), skipped


class _Fitted(NamedTuple):
    draws: dict[str, dict[str, np.ndarray]]  # per target: {param: (S,)}, with sigma (and nu)
    estimate: dict[str, dict[str, float]] | None  # per target: the point estimate (point method)
    sources: dict[str, tuple[str, ...]]
    fit: Any  # the FitResult (Bayesian methods) or None
    diagnostics: dict[str, Any]


def _fit_bayes(cube, ld: _LawData, weights: np.ndarray, method: str, options: dict) -> _Fitted:
    from atlas_bayes import inference, results

    fit = inference.fit_bayes(cube, ld.law, method=method, target=list(ld.targets), weights=weights, check=False, **options)
    draws = {t: fit.params_for(t) for t in ld.targets}
    return _Fitted(draws, None, {t: fit.sources_for(t) for t in ld.targets}, fit, results.diagnostics(fit))


# A lighter search than atlas fit's (a fixed random 256 of the paper's start grid, a shorter polish): one
# comparison makes 5 x targets point fits per law, each with its bootstrap. Same optimum on the test cubes.
_POINT_SETTINGS = dict(max_starts=256, polish=64, polish_iter=200, refine=4, max_iter=1000, tol=1e-8)


def _fit_point(ld: _LawData, weights: np.ndarray, *, bootstrap: int, seed: int) -> _Fitted:
    import jax

    from atlas_bayes.point import fit_point_arrays

    obs = ld.obs
    n_max = int(np.bincount(obs.lang).max())
    draws, estimate, sources = {}, {}, {}
    info = {"n_starts": 0, "bootstrap": bootstrap, "bootstrap_failed": 0}
    for i, t in enumerate(ld.targets):
        rows = np.flatnonzero(obs.lang == i)
        # every target padded to one length (weight 0): one compilation per law
        pad = np.concatenate([rows, np.full(n_max - rows.size, rows[0])])
        w = np.concatenate([weights[rows], np.zeros(n_max - rows.size)])
        k_t = len(obs.sources[i])
        x = {k: (v[pad][:, :k_t] if k in ("D_src", "U_src") and ld.law.transfer == "sources" else v[pad]) for k, v in obs.x.items()}
        pf = fit_point_arrays(ld.law, x, obs.loss[pad], sources=obs.sources[i], weights=w, bootstrap=bootstrap,
                              key=jax.random.fold_in(jax.random.key(seed), i), **_POINT_SETTINGS)
        estimate[t] = dict(pf.params, sigma=pf.sigma)
        draws[t] = pf.draws if pf.draws else {k: np.array([v]) for k, v in estimate[t].items()}
        sources[t] = tuple(obs.sources[i])
        info["n_starts"] = pf.n_starts
        info["bootstrap_failed"] += pf.bootstrap_failed
    return _Fitted(draws, estimate, sources, None, info)


# ----------------------------------------------------------------------------- scores


def _law_values(law: registry.Law, x: dict, params: dict, sources) -> np.ndarray:
    """``(S, n)`` noise-free losses for ``(S,)`` draws of ``params`` at ``n`` inputs ``x`` (float64)."""
    import jax
    import jax.numpy as jnp

    names = law.param_names(sources)
    with jax.enable_x64(True):
        p = {k: jnp.asarray(np.asarray(params[k], dtype=float).reshape(-1, 1)) for k in names}
        return np.asarray(law.evaluate({k: jnp.asarray(v) for k, v in x.items()}, p, sources), dtype=float)


def _log_density(mu: np.ndarray, y: np.ndarray, params: dict, likelihood: str) -> np.ndarray:
    """``(S, n)`` log density of the observed losses ``y`` (the fit's observation model)."""
    import jax
    import jax.numpy as jnp

    from atlas_bayes.models import loss_distribution

    with jax.enable_x64(True):
        sigma = jnp.asarray(np.asarray(params["sigma"], float).reshape(-1, 1))
        nu = jnp.asarray(np.asarray(params["nu"], float).reshape(-1, 1)) if likelihood == "student_t" else None
        d = loss_distribution(jnp.log(jnp.asarray(mu)), sigma, nu, likelihood)
        return np.asarray(d.log_prob(jnp.asarray(y)), dtype=float)


def _r2(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """R^2 of each row of predictions ``mu`` ``(S, n)`` against ``y`` ``(n,)``; NaN for fewer than 2 points."""
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if y.size < 2 or ss_tot == 0:
        return np.full(mu.shape[:-1], np.nan)
    return 1.0 - np.sum((y - mu) ** 2, axis=-1) / ss_tot


def _score_target(ld: _LawData, fitted: _Fitted, t: str, test: np.ndarray, *, level: float, likelihood: str,
                  key) -> dict[str, Any]:
    """Held-out scores of target ``t``; ``test`` is a bool mask over the target's observations.

    The law, the noise and the densities are evaluated at every observation of the target and the
    held-out ones picked afterwards: the same array shapes on every split, so JAX compiles each
    operation once per law, not once per split.
    """
    from atlas_bayes.noise import sample_log_noise

    obs, law = ld.obs, ld.law
    i = ld.targets.index(t)
    rows = np.flatnonzero(obs.lang == i)
    k_t = len(obs.sources[i])
    x = {k: (v[rows][:, :k_t] if k in ("D_src", "U_src") and law.transfer == "sources" else v[rows]) for k, v in obs.x.items()}
    params = fitted.draws[t]
    mu_all = _law_values(law, x, params, fitted.sources[t])
    eps = np.asarray(sample_log_noise(key, params, (rows.size,), likelihood=likelihood))
    ll = _log_density(mu_all, obs.loss[rows], params, likelihood)[:, test]
    mu, y = mu_all[:, test], obs.loss[rows][test]
    if fitted.estimate is not None:
        center = _law_values(law, x, fitted.estimate[t], fitted.sources[t])[0][test]
    else:
        center = mu.mean(axis=0)
    rep = mu * np.exp(eps[:, test])
    lo, hi = np.quantile(rep, [(1 - level) / 2, (1 + level) / 2], axis=0)
    inside = (y >= lo) & (y <= hi)
    m = ll.max(axis=0)
    lpd = m + np.log(np.mean(np.exp(ll - m), axis=0))  # log of the posterior mean density, per point
    return {"r2_draws": _r2(y, mu), "r2_pred": float(_r2(y, center[None])[0]), "inside": inside, "lpd": lpd}


def _summaries(r2_draws: np.ndarray, level: float) -> tuple[float, float, float]:
    ok = r2_draws[np.isfinite(r2_draws)]
    if ok.size == 0:
        return (math.nan,) * 3
    lo, mid, hi = np.quantile(ok, [(1 - level) / 2, 0.5, (1 + level) / 2])
    return float(mid), float(lo), float(hi)


def _loo(fit, obs_idx: np.ndarray) -> dict[str, Any]:
    """PSIS-LOO (ArviZ) over observations ``obs_idx`` of a Bayesian fit."""
    import arviz as az

    ll = fit.idata.log_likelihood["loss"].isel(obs=obs_idx)
    post = fit.idata.posterior
    n_samples = post.sizes["chain"] * post.sizes["draw"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns on high Pareto k; we count and warn ourselves
        if fit.method == "nuts":
            # relative efficiency as ArviZ computes it, NaN-aware (a pooled fit's tau_<lang> is NaN for
            # the targets that do not co-sample <lang>)
            values = []
            for v in post.data_vars.values():
                flat = np.asarray(v.values, dtype=float).reshape(v.shape[0], v.shape[1], -1)
                values += [float(az.ess(flat[..., c], method="mean")) for c in range(flat.shape[-1])
                           if np.isfinite(flat[..., c]).all()]
            reff = float(np.nanmean(values)) / n_samples
        else:
            reff = 1.0  # independent draws from the approximation
        data = az.InferenceData(posterior=post, log_likelihood=xr.Dataset({"loss": ll}))
        res = az.loo(data, pointwise=True, reff=max(reff, 1e-3))
    k = np.asarray(res.pareto_k.values, dtype=float)
    return {"elpd_loo": float(res.elpd_loo), "elpd_loo_se": float(res.se), "p_loo": float(res.p_loo),
            "pareto_k_max": float(np.nanmax(k)), "pareto_k_bad": int((k > PARETO_K).sum()),
            "pointwise": np.asarray(res.loo_i.values, dtype=float)}


def _fill_scores(cell: dict, a: int, j: int, langs: Sequence[str], ld: _LawData, fitted: _Fitted, held: np.ndarray, *,
                 level: float, likelihood: str, key) -> None:
    """Held-out scores of law ``a`` on split ``j``: every target's, and over all of them (``lang="all"``)."""
    import jax

    ok_point = ld.point >= 0
    scores = {}
    for i, t in enumerate(ld.targets):
        mine = ld.obs.lang == i
        test = (ok_point & held[np.maximum(ld.point, 0)])[mine]
        scores[t] = _score_target(ld, fitted, t, test, level=level, likelihood=likelihood, key=jax.random.fold_in(key, i))
        k = langs.index(t)
        cell["r2"][a, j, k], cell["r2_lower"][a, j, k], cell["r2_upper"][a, j, k] = _summaries(scores[t]["r2_draws"], level)
        cell["r2_pred"][a, j, k] = scores[t]["r2_pred"]
        cell["coverage"][a, j, k] = float(scores[t]["inside"].mean())
        cell["lpd"][a, j, k] = float(scores[t]["lpd"].mean())
    # the average over targets of each draw's R^2 (bootstrap draws of different targets: as many as the fewest)
    n_draws = min(v["r2_draws"].size for v in scores.values())
    per_draw = np.stack([v["r2_draws"][:n_draws] for v in scores.values()])
    avg = per_draw.mean(axis=0) if np.isfinite(per_draw).any(axis=1).all() else np.full(n_draws, math.nan)
    cell["r2"][a, j, -1], cell["r2_lower"][a, j, -1], cell["r2_upper"][a, j, -1] = _summaries(avg, level)
    cell["r2_pred"][a, j, -1] = float(np.mean([v["r2_pred"] for v in scores.values()]))
    cell["coverage"][a, j, -1] = float(np.concatenate([v["inside"] for v in scores.values()]).mean())
    cell["lpd"][a, j, -1] = float(np.concatenate([v["lpd"] for v in scores.values()]).mean())


def _fill_loo(loo: dict, pointwise: dict, a: int, langs: Sequence[str], ld: _LawData, fit, weights: np.ndarray) -> int:
    """PSIS-LOO of law ``a``'s random-split fit over its training points, per target and over all."""
    train = np.flatnonzero(weights > 0)
    for i, t in enumerate([*ld.targets, ALL]):
        sel = train if t == ALL else train[ld.obs.lang[train] == i]
        res = _loo(fit, sel)
        k = langs.index(t)
        for name in ("elpd_loo", "elpd_loo_se", "p_loo", "pareto_k_max", "pareto_k_bad"):
            loo[name][a, k] = res[name]
        pointwise[(a, t)] = (ld.point[sel], res["pointwise"])
    return int(train.size)


# ----------------------------------------------------------------------------- the comparison

_PER_CELL = ("r2", "r2_lower", "r2_upper", "r2_pred", "coverage", "lpd")
_PER_LOO = ("elpd_loo", "elpd_loo_se", "p_loo", "pareto_k_max", "pareto_k_bad", "elpd_diff", "elpd_diff_se")
_PER_FIT = ("max_r_hat", "min_ess_bulk", "divergences", "pareto_k_approx", "seconds")


def _parse_list(value, valid: Sequence[str], what: str, flag: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else [str(v) for v in value]
    if not items:
        raise ValueError(f"{flag} is empty; choose from {', '.join(valid)}")
    bad = [v for v in items if v not in valid]
    if bad:
        raise ValueError(f"unknown {what} {bad} in {flag}; valid: {', '.join(valid)}")
    dups = sorted({v for v in items if items.count(v) > 1})
    if dups:
        raise ValueError(f"{what} {dups} given twice in {flag}")
    return items


def compare(
    cube: xr.Dataset,
    *,
    laws: str | Sequence[str] = DEFAULT_LAWS,
    splits: str | Sequence[str] = "auto",
    target: str | Sequence[str] | None = None,
    method: Literal["nuts", "svi", "laplace", "point"] = "nuts",
    level: float = 0.9,
    holdout: float = 0.2,
    seed: int = 0,
    prior: str = "default",
    likelihood: str = "normal",
    pooling: str = "none",
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 500,
    target_accept: float = 0.8,
    bootstrap: int = 100,
    check: bool = True,
    progress: Callable[[str], None] | None = None,
) -> xr.Dataset:
    """Fit every law on every split's training part and score it on the held-out part.

    Parameters
    ----------
    cube
        A run cube.
    laws
        Registry law names (a list or ``"chinchilla,atlas"``). A law the cube cannot support is
        skipped, with the reason, for the targets concerned (``skipped`` in the result).
    splits
        Split names (:data:`SPLITS`), or ``"auto"``: every split the cube can form (the others are
        listed with the reason in ``attrs["splits_left_out"]``). A split given by name that has an
        empty training or held-out part raises ``ValueError`` naming it and what the cube lacks.
    target
        Target languages (default: every evaluation language that is also a training language).
    method
        ``"nuts"`` (default), ``"svi"``, ``"laplace"`` or ``"point"`` (Huber/L-BFGS with a bootstrap
        of ``bootstrap`` refits standing in for the posterior; no PSIS-LOO).
    level
        Level of the R^2 interval and of the predictive intervals whose coverage is scored.
    holdout
        Share of the points held out by the ``random``, ``N``, ``D`` and ``C`` splits.
    seed
        Seed of the random split and of the samplers.
    prior, likelihood, pooling, num_chains, num_warmup, num_samples, target_accept
        As :func:`atlas_bayes.inference.fit_bayes`; ``pooling`` defaults to ``"none"``: one
        independent law per target, as in the paper.
    check
        Warn (once per law, naming the splits) when fit diagnostics are bad, and when PSIS-LOO has
        Pareto k above 0.7 (:class:`ParetoKWarning`).
    progress
        Called with a line of text before each fit.

    Returns
    -------
    ``xr.Dataset`` with dims ``law``, ``split``, ``lang`` (the targets and ``"all"``): the scores of
    the module docstring ``(law, split, lang)``, ``n_train``, ``n_test`` ``(split, lang)``, PSIS-LOO
    ``(law, lang)``, fit diagnostics and ``status``/``reason`` ``(law, split)``, ``skipped``
    ``(law, lang)`` (the reason, ``""`` when fitted).
    """
    from atlas_bayes.results import DiagnosticsWarning

    methods = ("nuts", "svi", "laplace", "point")
    if method not in methods:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(methods)}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.9); got {level}")
    if method == "point" and likelihood != "normal":
        raise ValueError(f"likelihood {likelihood!r} needs a Bayesian --method (the point fit's noise is the RMS of log residuals)")
    law_names = _parse_list(laws, list(registry.LAWS), "law(s)", "--laws")
    targets = comparison_targets(cube, target)
    pts = points(cube, targets)
    left_out: dict[str, str] = {}
    masks: dict[str, np.ndarray] = {}
    if isinstance(splits, str) and splits.strip() == "auto":
        for s in SPLITS:
            try:
                masks[s] = split_mask(pts, s, holdout=holdout, seed=seed)
            except ValueError as err:
                left_out[s] = str(err)
        if not masks:
            raise ValueError("the cube supports none of the splits: " + "; ".join(left_out.values()))
    else:
        for s in _parse_list(splits, SPLITS, "split(s)", "--splits"):
            masks[s] = split_mask(pts, s, holdout=holdout, seed=seed)
    split_names = list(masks)
    langs = list(targets) + [ALL]
    nan = math.nan
    cell = {k: np.full((len(law_names), len(split_names), len(langs)), nan) for k in _PER_CELL}
    loo = {k: np.full((len(law_names), len(langs)), nan) for k in _PER_LOO}
    per_fit = {k: np.full((len(law_names), len(split_names)), nan) for k in _PER_FIT}
    status = np.full((len(law_names), len(split_names)), "ok", dtype=object)
    reason = np.full((len(law_names), len(split_names)), "", dtype=object)
    skipped = np.full((len(law_names), len(langs)), "", dtype=object)
    n_train = np.zeros((len(split_names), len(langs)), dtype=int)
    n_test = np.zeros((len(split_names), len(langs)), dtype=int)
    for j, s in enumerate(split_names):
        for k, t in enumerate(targets):
            rows = pts.target == t
            n_test[j, k], n_train[j, k] = int((masks[s] & rows).sum()), int((~masks[s] & rows).sum())
        n_test[j, -1], n_train[j, -1] = int(masks[s].sum()), int((~masks[s]).sum())
    options = dict(prior=prior, likelihood=likelihood, pooling=pooling, num_chains=num_chains, num_warmup=num_warmup,
                   num_samples=num_samples, target_accept=target_accept, seed=seed)
    pointwise: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}  # (law, lang) -> (point ids, loo_i)
    import jax

    key = jax.random.key(seed)
    for a, name in enumerate(law_names):
        ld, skip = _law_data(cube, name, targets, pts)
        for t, why in skip.items():
            skipped[a, langs.index(t)] = why
        if ld is None:
            skipped[a, -1] = "no target can be fitted"
            status[a, :] = "skipped"
            reason[a, :] = "; ".join(f"{t}: {w}" for t, w in skip.items())
            continue
        if len(ld.targets) < len(targets):
            skipped[a, -1] = f"averaged over {', '.join(ld.targets)} only"
        bad: list[str] = []
        for j, s in enumerate(split_names):
            held = masks[s]
            weights = ((ld.point >= 0) & ~held[np.maximum(ld.point, 0)]).astype(float)
            if progress is not None:
                progress(f"{name}: split {s} ({int(weights.sum())} training points, {len(ld.targets)} target(s))")
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    if method == "point":
                        fitted = _fit_point(ld, weights, bootstrap=bootstrap, seed=seed)
                    else:
                        fitted = _fit_bayes(cube, ld, weights, method, options)
            except ValueError as err:
                status[a, j], reason[a, j] = "failed", str(err).strip()
                if check:
                    warnings.warn(f"compare: the {name} fit on split {s!r} failed: {err}", UserWarning, stacklevel=2)
                continue
            for w in caught:
                if check or not issubclass(w.category, DiagnosticsWarning):
                    warnings.warn(f"{name} on split {s!r}: {w.message}", w.category, stacklevel=2)
            per_fit["seconds"][a, j] = time.perf_counter() - t0
            d = fitted.diagnostics
            problems = _problems(d)
            if problems:
                bad.append(f"{s} ({', '.join(problems)})")
            for k in ("max_r_hat", "min_ess_bulk", "divergences"):
                per_fit[k][a, j] = nan if d.get(k) is None else float(d[k])
            per_fit["pareto_k_approx"][a, j] = nan if d.get("pareto_k") is None else float(d["pareto_k"])
            _fill_scores(cell, a, j, langs, ld, fitted, held, level=level, likelihood=likelihood,
                         key=jax.random.fold_in(key, 100 * a + j))
            if s == "random" and fitted.fit is not None:
                n_fitted = _fill_loo(loo, pointwise, a, langs, ld, fitted.fit, weights)
                if check and loo["pareto_k_bad"][a, -1] > 0:
                    warnings.warn(
                        f"PSIS-LOO of {name} on the random split: {int(loo['pareto_k_bad'][a, -1])} of {n_fitted} training "
                        f"points have Pareto k > {PARETO_K} (max {loo['pareto_k_max'][a, -1]:.2f}): their elpd is unreliable; "
                        "trust the held-out scores, or refit without those runs for an exact LOO", ParetoKWarning, stacklevel=2)
        if check and bad:
            higher = next((v for v in (0.9, 0.95, 0.99, 0.995, 0.999) if v > target_accept), 0.999)
            fix = (f"raise --warmup and --draws, or --target-accept (now {target_accept:g}; e.g. {higher:g}) against "
                   "divergences" if method == "nuts" else "use --method nuts")
            warnings.warn(f"{name}: fit diagnostics are bad on split(s) {'; '.join(bad)}: the intervals and scores there "
                          f"are not trustworthy yet; {fix}", DiagnosticsWarning, stacklevel=2)
    _elpd_differences(loo, pointwise, law_names, langs)
    return _dataset(cube, law_names, split_names, langs, cell, loo, per_fit, status, reason, skipped, n_train, n_test,
                    attrs=dict(level=level, holdout=holdout, seed=seed, method=method, prior=prior, likelihood=likelihood,
                               pooling=pooling, num_chains=num_chains, num_warmup=num_warmup, num_samples=num_samples,
                               target_accept=target_accept,
                               bootstrap=bootstrap if method == "point" else 0, targets=list(targets),
                               splits_left_out=left_out, points_left_out=pts.left_out,
                               mixtures_named=pts.named_mixtures))


def _problems(d: dict[str, Any]) -> list[str]:
    """Short texts of the diagnostics past :data:`atlas_bayes.results.THRESHOLDS` (empty when fine)."""
    from atlas_bayes.results import THRESHOLDS

    out = []
    if d.get("max_r_hat") is not None and not d["max_r_hat"] <= THRESHOLDS["r_hat"]:
        out.append(f"max R-hat {d['max_r_hat']:.3f}")
    for kind in ("bulk", "tail"):
        ess = d.get(f"min_ess_{kind}")
        if ess is not None and not ess >= THRESHOLDS["ess"]:
            out.append(f"min {kind} ESS {ess:.0f}")
    if d.get("divergences"):
        out.append(f"{d['divergences']} divergences")
    if d.get("pareto_k") is not None and not d["pareto_k"] <= THRESHOLDS["pareto_k"]:
        out.append(f"Pareto k {d['pareto_k']:.2f}")
    return out


def _elpd_differences(loo: dict, pointwise: dict, law_names: Sequence[str], langs: Sequence[str]) -> None:
    """``elpd_diff`` against the best law of each ``lang`` and the se of the (paired) difference.

    Differences need the same points: among the laws with PSIS-LOO, those fitted on the most common
    set of points (a law skipped for a target has fewer under ``lang="all"``) are compared; the
    others keep their elpd without a difference.
    """
    for k, t in enumerate(langs):
        have = [a for a in range(len(law_names)) if (a, t) in pointwise]
        sets: dict[tuple, list[int]] = {}
        for a in have:
            sets.setdefault(tuple(np.sort(pointwise[(a, t)][0])), []).append(a)
        if not sets:
            continue
        ids, group = max(sets.items(), key=lambda kv: (len(kv[1]), len(kv[0])))
        best = max(group, key=lambda a: loo["elpd_loo"][a, k])
        loo_b = pointwise[(best, t)][1][np.argsort(pointwise[(best, t)][0])]
        for a in group:
            loo_a = pointwise[(a, t)][1][np.argsort(pointwise[(a, t)][0])]
            diff = loo_a - loo_b
            loo["elpd_diff"][a, k] = float(diff.sum())
            loo["elpd_diff_se"][a, k] = float(np.sqrt(diff.size * np.var(diff))) if a != best else 0.0


def _dataset(cube, law_names, split_names, langs, cell, loo, per_fit, status, reason, skipped, n_train, n_test, *,
             attrs) -> xr.Dataset:
    dims3, dims_ll, dims_ls, dims_sl = ("law", "split", "lang"), ("law", "lang"), ("law", "split"), ("split", "lang")
    data = {k: (dims3, v) for k, v in cell.items()}
    data.update({k: (dims_ll, v) for k, v in loo.items()})
    data.update({k: (dims_ls, v) for k, v in per_fit.items()})
    data.update(status=(dims_ls, status), reason=(dims_ls, reason), skipped=(dims_ll, skipped),
                n_train=(dims_sl, n_train), n_test=(dims_sl, n_test))
    ds = xr.Dataset(
        data,
        coords={"law": np.asarray(law_names, dtype=object), "split": np.asarray(split_names, dtype=object),
                "lang": np.asarray(langs, dtype=object)},
        attrs={**attrs, "units": str(cube["loss"].attrs.get("units", ""))},
    )
    ds["coverage"].attrs["long_name"] = f"share of held-out losses inside the central {attrs['level']:.0%} predictive interval"
    ds["lpd"].attrs["units"] = "nats per held-out point"
    ds["elpd_loo"].attrs["long_name"] = "PSIS-LOO elpd on the random split's training points"
    return ds


# ----------------------------------------------------------------------------- output


_ROW = ("law", "split", "lang", "status", "reason", "n_train", "n_test", "r2", "r2_lower", "r2_upper", "r2_pred",
        "coverage", "lpd", *_PER_LOO, "max_r_hat", "min_ess_bulk", "divergences", "pareto_k_approx", "seconds")


def to_frame(ds: xr.Dataset) -> pd.DataFrame:
    """One row per law, split and ``lang`` (the CSV of ``atlas compare --out``); LOO columns on the random split."""
    rows = []
    for law in ds["law"].values:
        for split in ds["split"].values:
            for lang in ds["lang"].values:
                c = dict(law=law, split=split, lang=lang)
                skip = str(ds["skipped"].sel(law=law, lang=lang).values)
                st = str(ds["status"].sel(law=law, split=split).values)
                row: dict[str, Any] = {**c, "status": "skipped" if skip and lang != ALL and st == "ok" else st,
                                       "reason": skip or str(ds["reason"].sel(law=law, split=split).values),
                                       "n_train": int(ds["n_train"].sel(split=split, lang=lang)),
                                       "n_test": int(ds["n_test"].sel(split=split, lang=lang))}
                for k in _PER_CELL:
                    row[k] = float(ds[k].sel(c))
                for k in _PER_LOO:
                    row[k] = float(ds[k].sel(law=law, lang=lang)) if split == "random" else math.nan
                for k in _PER_FIT:
                    row[k] = float(ds[k].sel(law=law, split=split))
                rows.append(row)
    frame = pd.DataFrame(rows, columns=list(_ROW))
    frame["pareto_k_bad"] = frame["pareto_k_bad"].astype("Int64")
    frame["divergences"] = frame["divergences"].astype("Int64")
    return frame


def to_json(ds: xr.Dataset) -> dict[str, Any]:
    """The ``--json`` object of ``atlas compare``: settings, then :func:`to_frame`'s rows."""
    frame = to_frame(ds)
    rows = [{k: (None if (isinstance(v, float) and not math.isfinite(v)) or v is pd.NA else
                 (int(v) if isinstance(v, (np.integer,)) else v)) for k, v in r.items()}
            for r in frame.astype(object).to_dict(orient="records")]
    keys = ("method", "level", "holdout", "seed", "targets", "units", "splits_left_out", "points_left_out")
    return {**{k: ds.attrs.get(k) for k in keys}, "laws": [str(v) for v in ds["law"].values],
            "splits": [str(v) for v in ds["split"].values], "rows": rows}
