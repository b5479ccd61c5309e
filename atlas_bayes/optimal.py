"""Compute-optimal model size and data for a FLOP budget, per posterior draw.

For each draw of a fit's parameters, the ``(N, D)`` on the iso-FLOP line ``C = 6 N D`` with the
lowest predicted loss:

- closed form (Hoffmann et al. 2022, eq. 4; :func:`atlas_bayes.laws.compute_optimal`) for the
  Chinchilla law, and for MSL, whose mixture factor ``p^-gamma`` does not move the minimum;
- otherwise a vectorised search over ``log N`` on the line: a 64-point grid over twelve decades
  around ``sqrt(C/6)``, refined three times on 64 points around each draw's best (relative
  precision ~1e-5 in ``N``), all draws at once through the registry's law.

The spread of the draws' optima is the interval. A minimum on the edge of the search range, or an
optimum far outside the fitted runs, warns.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from atlas_bayes import laws, registry
from atlas_bayes.predict import (
    WARN_BEYOND,
    ExtrapolationWarning,
    _langs,
    _numbers,
    _warn_extrapolation,
    extrapolation,
    fit_inputs,
    parse_configs,
)
from atlas_bayes.results import FitResult

__all__ = ["optimal", "optimal_rows", "search_optimum", "CLOSED_FORM", "ExtrapolationWarning"]

CLOSED_FORM = ("chinchilla", "msl")
_POINTS, _LEVELS, _HALF_RANGE = 64, 4, 6.0 * np.log(10.0)


def search_optimum(loss_fn, C: float, n_draws: int) -> tuple[np.ndarray, bool]:
    """Per-draw ``argmin_N loss_fn(N, C / (6 N))`` over ``N``; ``loss_fn`` maps ``(draw, k)`` N to losses.

    Returns the optima ``(draws,)`` and whether any draw's minimum sat on the search range's edge.
    """
    centre = 0.5 * np.log(C / 6.0)
    lo, hi = max(centre - _HALF_RANGE, 0.0), min(centre + _HALF_RANGE, 2 * centre)  # N >= 1 and D >= 1
    grid = np.broadcast_to(np.linspace(lo, hi, _POINTS), (n_draws, _POINTS))
    edge = False
    for level in range(_LEVELS):
        N = np.exp(grid)
        values = np.asarray(loss_fn(N, C / (6.0 * N)))
        values = np.where(np.isfinite(values), values, np.inf)
        best = np.argmin(values, axis=1)
        if level == 0:
            edge = bool(np.any((best == 0) | (best == _POINTS - 1)))
        step = grid[:, 1] - grid[:, 0]
        centre_k = grid[np.arange(n_draws), best]
        grid = centre_k[:, None] + np.linspace(-2.0, 2.0, _POINTS)[None, :] * step[:, None]
        grid = np.clip(grid, lo, hi)
    return np.exp(centre_k), edge


def optimal(
    fit: FitResult,
    *,
    compute,
    mix=None,
    U=None,
    target: str | None = None,
    level: float = 0.9,
    method: Literal["auto", "closed", "search"] = "auto",
    warn_beyond: float = WARN_BEYOND,
) -> xr.Dataset:
    """Compute-optimal ``N``, ``D`` and loss for each budget in ``compute`` (FLOPs), with intervals.

    Returns an ``xr.Dataset`` with dims ``budget`` (coord ``C``) and ``lang``: ``N``, ``D``,
    ``loss`` (the law at the optimum, noise-free) and ``tokens_per_param`` as posterior medians,
    each with ``<name>_lower``/``<name>_upper`` (central ``level`` interval). ``mix`` and ``U``
    as in :func:`atlas_bayes.predict.parse_configs`; ``method="auto"`` uses the closed form where
    the law allows (:data:`CLOSED_FORM`), ``"search"`` forces the search.

    Examples
    --------
    >>> import jax
    >>> from atlas_bayes import simulate, point
    >>> runs = simulate.grid(N=[1e7, 3e7, 1e8, 3e8], D=[1e9, 3e9, 1e10, 3e10])
    >>> cube = simulate.simulate_cube("chinchilla", simulate.PAPER["chinchilla_refit"], runs, key=jax.random.key(0))
    >>> fit = point.fit_point(cube, "chinchilla", bootstrap=20, max_starts=100)
    >>> ds = optimal(fit, compute=1e18)
    >>> bool(ds["N_lower"] <= ds["N"]) and bool(ds["N"] <= ds["N_upper"])
    True
    """
    if method not in ("auto", "closed", "search"):
        raise ValueError(f"unknown method {method!r}; valid: auto, closed, search")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.9); got {level}")
    budgets = _numbers(compute, "--compute")
    law = registry.get_law(fit.law)
    if method == "closed" and law.name not in CLOSED_FORM:
        raise ValueError(f"law {law.name!r} has no closed-form optimum (those that do: {', '.join(CLOSED_FORM)}); "
                         "use method='search'")
    closed = law.name in CLOSED_FORM and method != "search"
    dummy = parse_configs(N=1.0, D=1.0, U=U, mix=mix)
    langs = _langs(fit, target, dummy)
    lo, hi = (1 - level) / 2, (1 + level) / 2
    names = ("N", "D", "loss", "tokens_per_param")
    out = {f"{k}{s}": np.full((len(budgets), len(langs)), np.nan) for k in names for s in ("", "_lower", "_upper")}
    edges = []
    for j, lang in enumerate(langs):
        params = fit.params_for(lang)
        n_draws = len(params["sigma"])
        mix_row, U_row, srcs, _ = fit_inputs(fit, dummy, [lang])
        for b, C in enumerate(budgets):
            if closed:
                with jax.enable_x64(True):
                    N_opt, D_opt = (np.asarray(v) for v in laws.compute_optimal(
                        C, **{k: jnp.asarray(params[k]) for k in ("A", "B", "alpha", "beta")}))
            else:
                def loss_fn(N, D, _mix=mix_row[:1], _U=U_row[:1]):
                    flat = _flat_draws(fit, lang, N.reshape(-1), D.reshape(-1), np.repeat(_mix, N.size, 0),
                                       np.repeat(_U, N.size, 0), srcs, N.shape[1])
                    return flat.reshape(N.shape)

                N_opt, edge = search_optimum(loss_fn, float(C), n_draws)
                D_opt = C / (6.0 * N_opt)
                if edge:
                    edges.append((lang, float(C)))
            loss = _diag_draws(fit, lang, N_opt, D_opt, np.repeat(mix_row[:1], n_draws, 0), np.repeat(U_row[:1], n_draws, 0), srcs)
            for name, v in (("N", N_opt), ("D", D_opt), ("loss", loss), ("tokens_per_param", D_opt / N_opt)):
                out[name][b, j] = np.median(v)
                out[f"{name}_lower"][b, j], out[f"{name}_upper"][b, j] = np.quantile(v, [lo, hi])
    if edges:
        warnings.warn(f"the loss of {edges[0][0]!r} at C={edges[0][1]:.3g} keeps falling to the edge of the searched "
                      "N range (12 decades): the law has no interior optimum there for some draws", UserWarning, stacklevel=2)
    flat_N, flat_D = out["N"].reshape(-1), out["D"].reshape(-1)
    factor, rng = extrapolation(fit, flat_N, flat_D)
    _warn_extrapolation(fit, factor, rng, flat_N, flat_D, what="the compute-optimal run", warn_beyond=warn_beyond,
                        stacklevel=2)
    return xr.Dataset(
        {k: (("budget", "lang"), v) for k, v in out.items()},
        coords={"budget": np.arange(len(budgets)), "C": ("budget", budgets), "lang": np.asarray(langs, dtype=object)},
        attrs={"level": level, "law": fit.law, "method": "closed form" if closed else "search", "units": fit.config.units,
               "source": "fit", "target": ",".join(langs)},
    )


def _flat_draws(fit: FitResult, lang: str, N, D, mix, U, srcs, k: int) -> np.ndarray:
    """Losses at ``(draw, k)`` flattened configurations, each draw at its own ``k`` points."""
    law = registry.get_law(fit.law)
    sources = fit.sources_for(lang)
    params = fit.params_for(lang)
    names = law.param_names(sources)
    with jax.enable_x64(True):
        p = {n: jnp.repeat(jnp.asarray(params[n]), k) for n in names}
        x = registry.inputs(law, N=N, D=D, mix=mix, U=U, srcs=srcs, target=lang, sources=sources)
        return np.asarray(law.evaluate({n: jnp.asarray(v) for n, v in x.items()}, p, sources))


def _diag_draws(fit: FitResult, lang: str, N, D, mix, U, srcs) -> np.ndarray:
    """Loss of draw ``i`` at its own ``(N[i], D[i])``."""
    return _flat_draws(fit, lang, N, D, mix, U, srcs, 1)


def optimal_rows(ds: xr.Dataset) -> list[dict[str, Any]]:
    """The ``--json`` rows of ``atlas optimal``: one per budget and language."""
    rows = []
    for b in range(ds.sizes["budget"]):
        for j, lang in enumerate(ds["lang"].values):
            row: dict[str, Any] = {"C": float(ds["C"].values[b]), "lang": str(lang)}
            for k in ("N", "D", "loss", "tokens_per_param"):
                for s in ("", "_lower", "_upper"):
                    row[f"{k}{s}"] = float(ds[f"{k}{s}"].values[b, j])
            row["method"] = ds.attrs["method"]
            rows.append(row)
    return rows

