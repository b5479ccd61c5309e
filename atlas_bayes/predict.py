"""Posterior predictive queries on a fit: the loss a new run would observe, with intervals.

:func:`predict` evaluates the fitted law at configurations nobody ran (from :func:`parse_configs`)
for every posterior draw -- bootstrap refits for a point fit -- and adds the fit's observation
noise (:mod:`atlas_bayes.noise`). It returns the shared prediction schema (CONTRACTS.md), an
``xr.Dataset`` with dims ``config``, ``lang``, ``src``:

``N(config)``, ``D(config)``, ``mix(config, src)``, ``U(config, src)``
    the configurations;
``mean``, ``sd``, ``median``, ``lower``, ``upper`` ``(config, lang)``
    a new run's observed loss (noise included), central ``level`` interval;
``law_mean``, ``law_lower``, ``law_upper`` ``(config, lang)``
    the noise-free law (parameter uncertainty only);
``extrapolation(config)``
    the factor by which the configuration lies outside the fitted ``N``, ``D`` range (1 = inside).

:func:`to_rows` turns it into the ``--json`` rows of ``atlas predict``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes import cube as cube_lib
from atlas_bayes import registry
from atlas_bayes.noise import sample_log_noise
from atlas_bayes.results import FitResult

__all__ = ["Configs", "parse_configs", "predict", "to_rows", "ExtrapolationWarning", "law_draws", "fit_inputs",
           "extrapolation"]

WARN_BEYOND = 3.0  # extrapolating further than this factor outside the fitted N, D range warns
_CHUNK = 4096  # configurations per evaluation (draws x chunk values in memory)


class ExtrapolationWarning(UserWarning):
    """A query far outside the range of the runs the fit saw."""


class Configs(NamedTuple):
    """Run configurations to query: ``N``, ``D`` ``(n,)``; ``mix``, ``U`` ``(n, src)`` over ``srcs``.

    ``lang`` (``(n,)``, or None) restricts a row to one evaluation language. ``U`` is ``inf``
    where not given; ``U_given`` says where it was given (a fit fills the others with the unique
    tokens its cube records for that language, when the cube has one value).
    """

    N: np.ndarray
    D: np.ndarray
    mix: np.ndarray
    U: np.ndarray
    srcs: tuple[str, ...]
    lang: np.ndarray | None = None
    U_given: np.ndarray | None = None


def _numbers(value, flag: str) -> np.ndarray:
    if value is None:
        return np.array([])
    if isinstance(value, str):
        items = [v for v in value.replace(" ", "").split(",") if v]
        try:
            out = np.array([float(v) for v in items])
        except ValueError:
            raise ValueError(f"{flag} expects numbers separated by commas (e.g. 2e9,4e9); got {value!r}") from None
    else:
        out = np.atleast_1d(np.asarray(value, dtype=float)).reshape(-1)
    if out.size == 0 or not np.all(np.isfinite(out) & (out > 0)):
        raise ValueError(f"{flag} must be positive finite numbers; got {value!r}")
    return out


def _assignments(value, flag: str) -> dict[str, float]:
    from atlas_bayes.cli.common import parse_assignments

    if value is None:
        return {}
    if isinstance(value, str):
        return parse_assignments(value, flag=flag)
    return {str(k): float(v) for k, v in dict(value).items()}


def _check_mix(mix: np.ndarray, srcs: Sequence[str], where: str) -> None:
    if mix.shape[1] == 0:
        return
    bad = ~np.isfinite(mix) | (mix < 0)
    if bad.any():
        raise ValueError(f"{where}: mixture weights must be finite and >= 0; got {mix[bad.any(axis=1)][0].tolist()} over {list(srcs)}")
    total = mix.sum(axis=1)
    off = np.abs(total - 1.0) > cube_lib.MIX_TOL
    if off.any():
        raise ValueError(f"{where}: mixture weights must sum to 1; they sum to {total[off][0]:.6g} (over {list(srcs)})")


def parse_configs(*, N=None, D=None, U=None, mix=None, grid=None) -> Configs:
    """Configurations from flags or a grid file (shared by fit and surrogate queries).

    Parameters
    ----------
    N, D
        Numbers, sequences or comma-separated text (``"1e9,2e9"``): every combination of the
        ``N`` and ``D`` values is one configuration.
    U
        Unique tokens: ``"fr=1e9,en=inf"`` / a mapping per language, or one number for every
        language of the mixture. Not given: ``inf`` (see :class:`Configs`).
    mix
        ``"en=0.5,fr=0.5"`` or a mapping, for every configuration; must sum to 1.
    grid
        A CSV path (or DataFrame) with columns ``N, D, [lang], [mix:<lang>...], [U:<lang>...]``,
        one configuration per row (instead of ``N``/``D``; ``mix``/``U`` flags fill rows the
        file does not cover).

    Examples
    --------
    >>> c = parse_configs(N="1e9,2e9", D=1e10, mix="en=0.5,fr=0.5")
    >>> c.N.tolist(), c.srcs, c.mix.tolist()
    ([1000000000.0, 2000000000.0], ('en', 'fr'), [[0.5, 0.5], [0.5, 0.5]])
    """
    lang = None
    mix_flag = _assignments(mix, "--mix")
    if isinstance(U, (int, float, np.floating)) or (isinstance(U, str) and "=" not in U):
        value = float(_numbers(U, "--U")[0]) if not (isinstance(U, str) and U.strip() == "inf") else np.inf
        u_flag: dict[str, float] | float = value
    else:
        u_flag = _assignments(U, "--U")
    if grid is not None:
        if N is not None or D is not None:
            raise ValueError("give either --grid or --N/--D, not both")
        table = grid if isinstance(grid, pd.DataFrame) else _read_grid(grid)
        cols = [str(c) for c in table.columns]
        unknown = [c for c in cols if c not in ("N", "D", "lang") and not c.startswith(("mix:", "U:"))]
        if unknown or "N" not in cols or "D" not in cols:
            raise ValueError(f"grid columns must be N, D, [lang], [mix:<lang>...], [U:<lang>...]; "
                             f"got unknown {unknown}" if unknown else f"grid needs columns N and D; got {cols}")
        Nv = _numbers(table["N"].to_numpy(dtype=float), "grid column N")
        Dv = _numbers(table["D"].to_numpy(dtype=float), "grid column D")
        mix_cols = {c[4:]: table[c].to_numpy(dtype=float) for c in cols if c.startswith("mix:")}
        u_cols = {c[2:]: table[c].to_numpy(dtype=float) for c in cols if c.startswith("U:")}
        if "lang" in cols:
            lang = np.asarray([str(v) for v in table["lang"]], dtype=object)
    else:
        if N is None or D is None:
            raise ValueError("give --N and --D (or --grid configs.csv)")
        n_vals, d_vals = _numbers(N, "--N"), _numbers(D, "--D")
        Nv, Dv = (a.reshape(-1) for a in np.meshgrid(n_vals, d_vals, indexing="ij"))
        mix_cols, u_cols = {}, {}
    n = len(Nv)
    u_names = list(u_flag) if isinstance(u_flag, dict) else []
    srcs = tuple(dict.fromkeys([*mix_cols, *(mix_flag if not mix_cols else {}), *u_cols, *u_names]))
    mix_arr = np.zeros((n, len(srcs)))
    for j, s in enumerate(srcs):
        if mix_cols:
            mix_arr[:, j] = np.nan_to_num(mix_cols.get(s, np.zeros(n)), nan=0.0)
        else:
            mix_arr[:, j] = mix_flag.get(s, 0.0)
    U_arr = np.full((n, len(srcs)), np.inf)
    given = np.zeros((n, len(srcs)), dtype=bool)
    for j, s in enumerate(srcs):
        if s in u_cols:
            col = u_cols[s]
            given[:, j] = np.isfinite(col) | np.isinf(col)
            U_arr[:, j] = np.where(given[:, j], col, np.inf)
        elif isinstance(u_flag, dict) and s in u_flag:
            U_arr[:, j], given[:, j] = u_flag[s], True
        elif not isinstance(u_flag, dict):
            U_arr[:, j], given[:, j] = u_flag, True
    if not isinstance(u_flag, dict) and not srcs:
        raise ValueError("--U as one number applies to the languages of --mix; give --mix too, or --U LANG=VALUE")
    if np.any(~np.isnan(U_arr) & (U_arr <= 0)) or np.isnan(U_arr).any():
        raise ValueError("U must be positive token counts (or inf for unconstrained)")
    if srcs and (mix_cols or mix_flag):
        _check_mix(mix_arr, srcs, "--grid mix columns" if mix_cols else "--mix")
    return Configs(N=Nv, D=Dv, mix=mix_arr, U=U_arr, srcs=srcs, lang=lang, U_given=given)


def _read_grid(path) -> pd.DataFrame:
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    return pd.read_csv(path)


# ----------------------------------------------------------------------------- evaluation


def _fit_srcs(fit: FitResult) -> list[str]:
    return [str(s) for s in fit.cube["src"].values]


def fit_inputs(fit: FitResult, configs: Configs, langs: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str], tuple[str, ...]]:
    """``(mix, U, fit srcs, shown srcs)``: the configurations over the fit's training languages.

    Languages unknown to the fit are refused (the error lists the valid ones). Without a mixture,
    a single target gets its monolingual mixture; several targets need one unless the law ignores
    the mixture. ``U`` not given is the fit cube's value for that language when all its runs
    agree, else ``inf``.
    """
    law = registry.get_law(fit.law)
    srcs = _fit_srcs(fit)
    unknown = [s for s in configs.srcs if s not in srcs]
    if unknown:
        raise ValueError(f"unknown language(s) {unknown} in --mix/--U; the fit's training languages are {srcs}")
    n = len(configs.N)
    mix = np.zeros((n, len(srcs)))
    shown = tuple(configs.srcs)
    has_mix = configs.mix.size and np.any(configs.mix.sum(axis=1) > 0)
    if has_mix:
        for j, s in enumerate(configs.srcs):
            mix[:, srcs.index(s)] = configs.mix[:, j]
    elif len(langs) == 1 and langs[0] in srcs:
        mix[:, srcs.index(langs[0])] = 1.0
        shown = tuple(dict.fromkeys([langs[0], *configs.srcs]))
    elif law.target_tokens or "mix" in law.needs:
        raise ValueError(f"law {law.name!r} depends on the training mixture: give --mix (e.g. {langs[0]}=1.0) "
                         f"when predicting several targets {list(langs)}")
    U = np.full((n, len(srcs)), np.inf)
    final = cube_lib.final(fit.cube)
    for j, s in enumerate(srcs):
        values = np.unique(final["U"].sel(src=s).values)
        if values.size == 1:
            U[:, j] = values[0]
    given = configs.U_given if configs.U_given is not None else np.ones(configs.U.shape, dtype=bool)
    for j, s in enumerate(configs.srcs):
        U[:, srcs.index(s)] = np.where(given[:, j], configs.U[:, j], U[:, srcs.index(s)])
    return mix, U, srcs, shown


def law_draws(fit: FitResult, lang: str, N: np.ndarray, D: np.ndarray, mix: np.ndarray, U: np.ndarray,
              srcs: Sequence[str]) -> np.ndarray:
    """``(draws, n)`` noise-free losses of ``lang`` at ``n`` configurations (float64)."""
    law = registry.get_law(fit.law)
    sources = fit.sources_for(lang)
    params = fit.params_for(lang)
    names = law.param_names(sources)
    out = []
    with jax.enable_x64(True):
        p = {k: jnp.asarray(params[k])[:, None] for k in names}
        for i in range(0, len(N), _CHUNK):
            sl = slice(i, i + _CHUNK)
            x = registry.inputs(law, N=N[sl], D=D[sl], mix=mix[sl], U=U[sl], srcs=srcs, target=lang, sources=sources)
            out.append(np.asarray(law.evaluate({k: jnp.asarray(v) for k, v in x.items()}, p, sources)))
    return np.concatenate(out, axis=1)


def extrapolation(fit: FitResult, N: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Factor by which each ``(N, D)`` lies outside the fitted range (1 inside), and the range."""
    const = fit.idata.constant_data
    keep = np.asarray(const["weight"].values) > 0 if "weight" in const.coords else np.ones(const.sizes["obs"], bool)
    n_fit, d_fit = np.asarray(const["N"].values)[keep], np.asarray(const["D"].values)[keep]
    rng = {"N_min": float(n_fit.min()), "N_max": float(n_fit.max()), "D_min": float(d_fit.min()), "D_max": float(d_fit.max())}
    factor = np.maximum.reduce([np.ones_like(N), N / rng["N_max"], rng["N_min"] / N, D / rng["D_max"], rng["D_min"] / D])
    return factor, rng


def _warn_extrapolation(fit: FitResult, factor, rng, N, D, *, what: str, warn_beyond: float, stacklevel: int) -> None:
    worst = int(np.argmax(factor))
    if factor[worst] > warn_beyond:
        warnings.warn(
            f"{what} N={N[worst]:.3g}, D={D[worst]:.3g} lies {factor[worst]:.3g}x outside the fitted range "
            f"(N {rng['N_min']:.3g}..{rng['N_max']:.3g}, D {rng['D_min']:.3g}..{rng['D_max']:.3g}): the {fit.law} "
            "law extrapolates there; treat the interval as a lower bound on the uncertainty, or add runs nearer it",
            ExtrapolationWarning,
            stacklevel=stacklevel,
        )


def _langs(fit: FitResult, target: str | None, configs: Configs) -> list[str]:
    if target is not None:
        return [fit._check_target(target)]
    if configs.lang is not None:
        bad = sorted({str(v) for v in configs.lang if str(v) not in fit.targets})
        if bad:
            raise ValueError(f"grid lang {bad} not covered: this fit is for target(s) {list(fit.targets)}")
        return [t for t in fit.targets if t in set(configs.lang)]
    return list(fit.targets)


def predict(
    fit: FitResult,
    *,
    N=None,
    D=None,
    U=None,
    mix=None,
    grid=None,
    configs: Configs | None = None,
    target: str | None = None,
    level: float = 0.9,
    seed: int = 0,
    warn_beyond: float = WARN_BEYOND,
) -> xr.Dataset:
    """Posterior predictive loss of new runs (noise included) and of the law, per configuration.

    Configurations come from ``configs`` or :func:`parse_configs` (``N``, ``D``, ``U``, ``mix``,
    ``grid``); ``target`` picks one of a multi-target fit's languages (default: all). A
    configuration further than ``warn_beyond`` times outside the fitted ``N``, ``D`` range warns
    (:class:`ExtrapolationWarning`). Works on every fit: posterior draws, or bootstrap refits of a
    point fit.

    Examples
    --------
    >>> import jax
    >>> from atlas_bayes import simulate, point
    >>> runs = simulate.grid(N=[1e7, 3e7, 1e8, 3e8], D=[1e9, 3e9, 1e10, 3e10])
    >>> cube = simulate.simulate_cube("chinchilla", simulate.PAPER["chinchilla_refit"], runs, key=jax.random.key(0))
    >>> fit = point.fit_point(cube, "chinchilla", bootstrap=20, max_starts=100)
    >>> ds = predict(fit, N=1e8, D=1e10)
    >>> dict(ds.sizes), bool(ds["lower"] < ds["mean"] < ds["upper"])
    ({'config': 1, 'lang': 1, 'src': 1}, True)
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.9); got {level}")
    configs = configs if configs is not None else parse_configs(N=N, D=D, U=U, mix=mix, grid=grid)
    langs = _langs(fit, target, configs)
    mix_full, U_full, srcs, shown = fit_inputs(fit, configs, langs)
    n = len(configs.N)
    lo, hi = (1 - level) / 2, (1 + level) / 2
    likelihood = fit.config.options.get("likelihood", "normal")
    key = jax.random.key(seed)
    stats = {k: np.full((n, len(langs)), np.nan) for k in
             ("mean", "sd", "median", "lower", "upper", "law_mean", "law_lower", "law_upper")}
    for j, lang in enumerate(langs):
        clean = law_draws(fit, lang, configs.N, configs.D, mix_full, U_full, srcs)
        if clean.shape[0] < 2:
            warnings.warn(f"the fit has a single draw (bootstrap=0): the law interval for {lang!r} carries no parameter "
                          "uncertainty; refit with --bootstrap or a Bayesian --method", UserWarning, stacklevel=2)
        params = fit.params_for(lang)
        eps = np.asarray(sample_log_noise(jax.random.fold_in(key, j), params, (n,), likelihood=likelihood))
        observed = clean * np.exp(eps)
        stats["mean"][:, j] = observed.mean(axis=0)
        stats["sd"][:, j] = observed.std(axis=0, ddof=1) if observed.shape[0] > 1 else np.nan
        stats["median"][:, j] = np.median(observed, axis=0)
        stats["lower"][:, j], stats["upper"][:, j] = np.quantile(observed, [lo, hi], axis=0)
        stats["law_mean"][:, j] = clean.mean(axis=0)
        stats["law_lower"][:, j], stats["law_upper"][:, j] = np.quantile(clean, [lo, hi], axis=0)
        if configs.lang is not None:
            off = np.asarray([str(v) != lang for v in configs.lang])
            for v in stats.values():
                v[off, j] = np.nan
    factor, rng = extrapolation(fit, configs.N, configs.D)
    _warn_extrapolation(fit, factor, rng, configs.N, configs.D, what="query", warn_beyond=warn_beyond, stacklevel=2)
    idx = [srcs.index(s) for s in shown]
    ds = xr.Dataset(
        {
            "N": ("config", configs.N),
            "D": ("config", configs.D),
            "mix": (("config", "src"), mix_full[:, idx]),
            "U": (("config", "src"), U_full[:, idx]),
            **{k: (("config", "lang"), v) for k, v in stats.items()},
            "extrapolation": ("config", factor),
        },
        coords={"config": np.arange(n), "lang": np.asarray(langs, dtype=object), "src": np.asarray(shown, dtype=object)},
        attrs={"level": level, "units": fit.config.units, "source": "fit", "law": fit.law, "method": fit.method,
               "target": ",".join(langs), "targets": list(langs), **{f"fitted_{k}": v for k, v in rng.items()}},
    )
    return ds


def to_rows(ds: xr.Dataset) -> list[dict[str, Any]]:
    """The ``--json`` rows of a prediction: one per configuration and language with a prediction."""
    rows = []
    srcs = [str(s) for s in ds["src"].values]
    for c in range(ds.sizes["config"]):
        mix = {s: float(w) for s, w in zip(srcs, ds["mix"].values[c]) if w > 0}
        for j, lang in enumerate(ds["lang"].values):
            mean = float(ds["mean"].values[c, j])
            if not np.isfinite(mean):
                continue
            row = {"N": float(ds["N"].values[c]), "D": float(ds["D"].values[c]), "lang": str(lang)}
            for k in ("mean", "median", "lower", "upper", "law_mean", "law_lower", "law_upper", "sd"):
                row[k] = float(ds[k].values[c, j])
            row["mix"] = mix
            rows.append(row)
    return rows
