"""Fit results: one type for every method (point, NUTS, SVI, Laplace), saved as ArviZ netCDF.

A :class:`FitResult` wraps an ``arviz.InferenceData`` with groups

``posterior``      one variable per parameter (SPEC names: ``E, A, B, alpha, ..., sigma``), dims
                   ``(chain, draw[, ...])``. For a point fit these are bootstrap refits (one chain),
                   for NUTS the posterior draws.
``sample_stats``   sampler statistics (``diverging``, ``energy``...), Bayesian methods only.
``observed_data``  ``loss(obs)``, the fitted observations.
``constant_data``  the law's inputs per observation (``N(obs)``, ``D_t(obs)``, ``D_src(obs, k)``...).
``cube``           the run cube the fit came from, so queries never need the original file.

and a :class:`FitConfig` (law, target, method, co-sampled sources, fixed parameters, options)
stored as JSON in ``posterior.attrs``. :func:`summary` and :func:`diagnostics` read it back the
same way whatever the method.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes import cube as cube_lib

__all__ = [
    "Method",
    "FitConfig",
    "FitResult",
    "make_result",
    "save_fit",
    "load_fit",
    "summary",
    "diagnostics",
    "check_diagnostics",
    "to_json",
    "DiagnosticsWarning",
    "THRESHOLDS",
]

Method = Literal["point", "nuts", "svi", "laplace"]
_CONFIG_ATTR = "atlas_fit_config"
_ESTIMATE_ATTR = "atlas_point_estimate"
THRESHOLDS = {"r_hat": 1.01, "ess": 400, "divergences": 0, "pareto_k": 0.7}


class DiagnosticsWarning(UserWarning):
    """A fit whose diagnostics say its posterior should not be trusted yet."""


@dataclass(frozen=True)
class FitConfig:
    """What was fitted and how; stored with the result."""

    law: str
    target: str
    method: Method
    sources: tuple[str, ...] = ()
    fixed: dict[str, float] = field(default_factory=dict)
    units: str = "nats/token"
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FitConfig:
        d = json.loads(text)
        d["sources"] = tuple(d.get("sources", ()))
        return cls(**d)


@dataclass(frozen=True)
class FitResult:
    """A fitted law: posterior (or bootstrap) draws plus everything needed to query it later."""

    idata: az.InferenceData
    config: FitConfig
    estimate: dict[str, float]

    @property
    def law(self) -> str:
        return self.config.law

    @property
    def target(self) -> str:
        return self.config.target

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(str(v) for v in self.idata.posterior.data_vars)

    @property
    def cube(self) -> xr.Dataset:
        return self.idata["cube"]

    @property
    def targets(self) -> tuple[str, ...]:
        """Target languages this fit covers (several for a fit pooled across targets)."""
        return tuple(self.config.options.get("targets", [self.config.target]))

    def sources_for(self, target: str | None = None) -> tuple[str, ...]:
        """The co-sampled languages ``K_t`` with their own ``tau`` for ``target``."""
        target = self._check_target(target)
        per_target = self.config.options.get("sources_by_target")
        return tuple(per_target[target]) if per_target else self.config.sources

    def params_for(self, target: str | None = None) -> dict[str, np.ndarray]:
        """Draws of the law's parameters for one target, ``{name: (samples,)}``, plus ``sigma``.

        This is how queries, the surrogate and analyses read a fit, whatever its layout: a
        pooled fit stores per-target parameters along a ``lang`` dim and this selects ``target``.
        """
        target = self._check_target(target)
        out = {}
        for name, da in self.idata.posterior.data_vars.items():
            if "lang" in da.dims:
                da = da.sel(lang=target)
            extra = [d for d in da.dims if d not in ("chain", "draw")]
            if extra:
                continue  # hyper-parameters with other dims (e.g. pooled scales) are not law inputs
            values = np.asarray(da.values, dtype=float).reshape(-1)
            if np.isnan(values).all():
                continue  # not a parameter of this target (a tau_<lang> of another target's K_t)
            out[str(name)] = values
        return out

    def _check_target(self, target: str | None) -> str:
        if target is None:
            if len(self.targets) > 1:
                raise ValueError(f"this fit covers targets {list(self.targets)}; choose one with --target")
            return self.targets[0]
        if target not in self.targets:
            raise ValueError(f"this fit is for target(s) {list(self.targets)}, not {target!r}; refit with --target {target}")
        return target

    def draws(self) -> dict[str, np.ndarray]:
        """Every parameter's draws, chains stacked: ``{name: (chain * draw, ...)}``."""
        post = self.idata.posterior
        return {
            str(k): np.asarray(v.values).reshape((-1,) + v.shape[2:]) for k, v in post.data_vars.items()
        }

    def save(self, path: str | os.PathLike) -> Path:
        return save_fit(self, path)


def make_result(
    *,
    config: FitConfig,
    posterior: Mapping[str, np.ndarray],
    estimate: Mapping[str, float],
    x: Mapping[str, np.ndarray],
    loss: np.ndarray,
    run: np.ndarray,
    cube: xr.Dataset,
    sample_stats: Mapping[str, np.ndarray] | None = None,
    log_likelihood: np.ndarray | None = None,
    extra_groups: Mapping[str, xr.Dataset] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    coords: Mapping[str, Sequence] | None = None,
    obs_coords: Mapping[str, np.ndarray] | None = None,
) -> FitResult:
    """Assemble a :class:`FitResult` from arrays.

    ``posterior`` values have shape ``(chain, draw, ...)``; ``x`` and ``loss`` are per observation.
    ``dims`` names a variable's dims after ``(chain, draw)`` (e.g. ``{"alpha": ("lang",)}``) and
    ``coords`` gives their coordinates; other extra dims are ``<name>_dim_<i>``. ``obs_coords``
    adds per-observation coordinates to ``constant_data`` (a multi-target fit's ``target``, the
    fit ``weight``). ``log_likelihood`` (``(chain, draw, obs)``) enables PSIS-LOO.
    """
    obs = np.arange(len(loss))
    dims = dict(dims or {})
    post = xr.Dataset(
        {
            k: (("chain", "draw") + tuple(dims.get(k) or (f"{k}_dim_{i}" for i in range(np.ndim(v) - 2))), np.asarray(v))
            for k, v in posterior.items()
        },
    )
    if coords:
        post = post.assign_coords({d: list(c) for d, c in coords.items() if d in post.dims})
    post.attrs[_CONFIG_ATTR] = config.to_json()
    post.attrs[_ESTIMATE_ATTR] = json.dumps({k: float(v) for k, v in estimate.items()})
    const = xr.Dataset(
        {k: (("obs",) if np.ndim(v) == 1 else ("obs", "k_src"), np.asarray(v, dtype=float)) for k, v in x.items()},
        coords={"obs": obs, "run": ("obs", np.asarray(run, dtype=object))},
    )
    if config.sources:
        const = const.assign_coords(k_src=list(config.sources))
    for name, values in (obs_coords or {}).items():
        const = const.assign_coords({name: ("obs", np.asarray(values))})
    groups: dict[str, xr.Dataset] = {
        "posterior": post,
        "observed_data": xr.Dataset({"loss": (("obs",), np.asarray(loss, dtype=float))}, coords={"obs": obs}),
        "constant_data": const,
        "cube": cube,
    }
    if sample_stats is not None:
        groups["sample_stats"] = xr.Dataset({k: (("chain", "draw"), np.asarray(v)) for k, v in sample_stats.items()})
    if log_likelihood is not None:
        groups["log_likelihood"] = xr.Dataset(
            {"loss": (("chain", "draw", "obs"), np.asarray(log_likelihood))}, coords={"obs": obs}
        )
    groups.update(extra_groups or {})
    return FitResult(idata=az.InferenceData(**groups), config=config, estimate={k: float(v) for k, v in estimate.items()})


def save_fit(fit: FitResult, path: str | os.PathLike) -> Path:
    """Write a fit to netCDF atomically (all groups, the cube included)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    idata = fit.idata
    cube = idata["cube"].copy()
    cube.attrs = cube_lib._encode_attrs(cube.attrs)
    for name in cube.variables:
        cube[name].attrs = cube_lib._encode_attrs(cube[name].attrs)
    groups = {g: (cube if g == "cube" else idata[g]) for g in idata.groups()}
    try:
        az.InferenceData(**groups).to_netcdf(str(tmp), engine="netcdf4")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_fit(path: str | os.PathLike) -> FitResult:
    """Read a fit written by :func:`save_fit`; the error says what the file is if not a fit."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    try:
        idata = az.from_netcdf(str(path), engine="netcdf4")
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{str(path)!r} is not a readable fit file ({err})") from None
    if "posterior" not in idata.groups() or _CONFIG_ATTR not in idata.posterior.attrs:
        raise ValueError(f"{str(path)!r} is not an atlas fit (no posterior with an atlas configuration); make one with `atlas fit`")
    idata = idata.load() if hasattr(idata, "load") else idata
    groups = {g: idata[g].load() for g in idata.groups()}
    cube = groups["cube"]
    cube.attrs = cube_lib._decode_attrs(cube.attrs)
    for name in cube.variables:
        cube[name].attrs = cube_lib._decode_attrs(cube[name].attrs)
        if cube[name].dtype.kind in "SU":
            cube[name] = cube[name].astype(object)
    post = groups["posterior"]
    config = FitConfig.from_json(post.attrs[_CONFIG_ATTR])
    estimate = json.loads(post.attrs.get(_ESTIMATE_ATTR, "{}"))
    return FitResult(idata=az.InferenceData(**groups), config=config, estimate=estimate)


def _bayesian(fit: FitResult) -> bool:
    return fit.method != "point" and fit.idata.posterior.sizes["chain"] >= 2


def _cells(da: xr.DataArray) -> list[dict[str, int]]:
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    return [{}] if not extra else [dict(zip(extra, idx)) for idx in np.ndindex(*[da.sizes[d] for d in extra])]


def _label(name: str, da: xr.DataArray, cell: Mapping[str, int]) -> str:
    return name + ("" if not cell else "[" + ",".join(str(da[d].values[i]) for d, i in cell.items()) + "]")


def _chain_diagnostics(values: np.ndarray) -> tuple[float, float, float]:
    """R-hat, bulk and tail ESS of one scalar's ``(chain, draw)`` draws (rank-normalised, ArviZ)."""
    if not np.all(np.isfinite(values)) or np.ptp(values) == 0:
        nan = float("nan")
        return (float("inf") if np.all(np.isfinite(values)) and np.ptp(values.mean(axis=1)) > 0 else nan), nan, nan
    return (float(az.rhat(values)), float(az.ess(values, method="bulk")), float(az.ess(values, method="tail")))


def _cell_table(fit: FitResult) -> list[tuple[str, str, dict, np.ndarray]]:
    """``(label, name, cell, (chain, draw) values)`` of every scalar cell that is a parameter.

    Cells whose draws are all NaN are left out: a multi-target fit's ``tau_<lang>`` is defined
    only for the targets that co-sample ``<lang>``.
    """
    out = []
    for name, da in fit.idata.posterior.data_vars.items():
        for cell in _cells(da):
            v = np.asarray(da.isel(cell).values, dtype=float)
            if np.isnan(v).all():
                continue
            out.append((_label(str(name), da, cell), str(name), cell, v))
    return out


def summary(fit: FitResult, *, level: float = 0.9) -> pd.DataFrame:
    """One row per scalar parameter: estimate, sd, central ``level`` interval, R-hat, ESS, fixed.

    ``estimate`` is the point fit's optimum for ``method="point"`` (its sd and interval come from
    the bootstrap), else the posterior mean. R-hat and ESS are NaN where they do not apply (a point
    fit, or a single chain); a parameter held fixed has ``fixed=True`` and NaN sd and interval.
    Per-target parameters of a multi-target fit are labelled ``name[lang]``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.9); got {level}")
    lo, hi = (1 - level) / 2, (1 + level) / 2
    rows = {}
    bayes = _bayesian(fit)
    nan = float("nan")
    for label, name, cell, values in _cell_table(fit):
        if name in fit.config.fixed:
            value = float(fit.config.fixed[name])
            rows[label] = dict(estimate=value, sd=nan, lower=nan, upper=nan, r_hat=nan, ess_bulk=nan, ess_tail=nan, fixed=True)
            continue
        v = values.reshape(-1)
        r_hat, ess_bulk, ess_tail = _chain_diagnostics(values) if bayes else (nan, nan, nan)
        rows[label] = {
            "estimate": fit.estimate.get(name, float(np.mean(v))) if not cell else float(np.mean(v)),
            "sd": float(np.std(v, ddof=1)) if v.size > 1 else nan,
            "lower": float(np.quantile(v, lo)),
            "upper": float(np.quantile(v, hi)),
            "r_hat": r_hat,
            "ess_bulk": ess_bulk,
            "ess_tail": ess_tail,
            "fixed": False,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "param"
    table.attrs["level"] = level
    return table


def diagnostics(fit: FitResult) -> dict[str, Any]:
    """Convergence diagnostics: worst R-hat, smallest bulk/tail ESS, divergences, chains, draws.

    SVI and Laplace fits report ``pareto_k``, the shape of the importance weights between the
    approximation and the posterior (Yao et al. 2018; above 0.7 the approximation is unreliable).
    """
    post = fit.idata.posterior
    out: dict[str, Any] = {"chains": int(post.sizes["chain"]), "draws": int(post.sizes["draw"]), "method": fit.method}
    if _bayesian(fit):
        stats = [_chain_diagnostics(v) for _, name, _, v in _cell_table(fit) if name not in fit.config.fixed]
        r_hat, bulk, tail = (np.array([s[i] for s in stats], dtype=float) for i in range(3))
        out["max_r_hat"] = float(np.nanmax(r_hat)) if np.isfinite(r_hat).any() or np.isinf(r_hat).any() else None
        out["min_ess_bulk"] = float(np.nanmin(bulk)) if np.isfinite(bulk).any() else None
        out["min_ess_tail"] = float(np.nanmin(tail)) if np.isfinite(tail).any() else None
    else:
        out.update(max_r_hat=None, min_ess_bulk=None, min_ess_tail=None)
    stats = fit.idata.get("sample_stats")
    out["divergences"] = int(stats["diverging"].sum()) if stats is not None and "diverging" in stats else None
    if fit.method == "point":
        out.update({k: v for k, v in fit.config.options.items() if k in ("objective", "n_starts", "starts_at_best", "bootstrap", "bootstrap_failed")})
    if fit.method in ("svi", "laplace"):
        out["pareto_k"] = fit.config.options.get("pareto_k")
    return out


def check_diagnostics(fit: FitResult, *, stacklevel: int = 2) -> list[str]:
    """Warn (``DiagnosticsWarning``) for each bad diagnostic, with the fix; return the messages."""
    d = diagnostics(fit)
    problems = []
    if d.get("max_r_hat") is not None and not d["max_r_hat"] <= THRESHOLDS["r_hat"]:
        problems.append(
            f"max R-hat = {d['max_r_hat']:.3f} > {THRESHOLDS['r_hat']}: chains disagree; run more warmup/draws "
            "(--warmup, --draws) or check the priors"
        )
    for kind in ("bulk", "tail"):
        ess = d.get(f"min_ess_{kind}")
        if ess is not None and not ess >= THRESHOLDS["ess"]:
            problems.append(f"min {kind} ESS = {ess:.0f} < {THRESHOLDS['ess']}: intervals are noisy; draw more samples (--draws)")
    k = d.get("pareto_k")
    if k is not None and not k <= THRESHOLDS["pareto_k"]:
        problems.append(
            f"Pareto k = {k:.2f} > {THRESHOLDS['pareto_k']}: the {fit.method} approximation is far from the posterior; "
            "use --method nuts for trustworthy intervals"
        )
    if d.get("divergences"):
        problems.append(
            f"{d['divergences']} divergent transitions: the posterior has regions the sampler cannot explore; "
            "raise --target-accept (e.g. 0.95) or use stronger priors"
        )
    for message in problems:
        warnings.warn(f"fit of {fit.law} for {fit.target!r}: {message}", DiagnosticsWarning, stacklevel=stacklevel)
    return problems


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def to_json(fit: FitResult, *, level: float = 0.9) -> dict[str, Any]:
    """The ``--json`` object of ``atlas fit``."""
    table = summary(fit, level=level)
    params = {
        name: {k: _clean(float(row[k])) for k in ("estimate", "sd", "lower", "upper", "r_hat", "ess_bulk", "ess_tail")}
        | {"fixed": bool(row["fixed"])}
        for name, row in table.iterrows()
    }
    return {
        "law": fit.law,
        "method": fit.method,
        "target": fit.target,
        "level": level,
        "units": fit.config.units,
        "n_obs": int(fit.idata.observed_data.sizes["obs"]),
        "sources": list(fit.config.sources),
        "fixed": fit.config.fixed,
        "params": params,
        "diagnostics": {k: _clean(v) for k, v in diagnostics(fit).items()},
    }
