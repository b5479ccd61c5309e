"""Run cubes: a set of language-model training runs as one ``xarray.Dataset``.

Glossary of dims, variables and units
-------------------------------------
dims
    ``run``   one training run: a model of ``N`` parameters trained on ``D`` tokens of a mixture.
    ``lang``  evaluation language (the language a loss is measured on).
    ``src``   training (source) language, the languages a mixture samples from.
    ``step``  optional: checkpoint index along a run's learning curve.

Language names are free-form strings: ISO codes (``"en"``), or data domains (``"web"``, ``"code"``)
-- a mixture over domains is handled exactly like one over languages.

variables
    ``loss(run, lang[, step])``  evaluation loss; unit in ``loss.attrs["units"]`` (``"nats/token"``,
                                 ``"bits/byte"``, ...). NaN means "not evaluated" (a run not scored
                                 on that language, or a learning curve shorter than the longest).
    ``N(run)``                   parameters.
    ``D(run[, step])``           tokens seen in total, repeats included (NaN pads a short curve).
    ``mix(run, src)``            sampling weights of the training mixture; sum to 1 over ``src``.
    ``U(run, src)``              unique tokens available per training language; ``inf`` when the
                                 language is not data-constrained.
    ``seed(run)``                optional integer seed.
    ``kind(run)``                optional, ``"pretrain"`` or ``"finetune"``.
    ``base(run)``                optional, the checkpoint a finetune started from (``""`` if none).

Other variables (the trainer adds ``N_nonembed``, ``epochs``...) are kept and round-trip through
netCDF; ``attrs`` hold provenance (the resolved sweep configuration, the source table).

Derived quantities each have one function here: :func:`tokens_per_source`, :func:`epochs`,
:func:`compute`, :func:`num_languages`, :func:`cosampled`; :func:`final` takes the last checkpoint
of each run.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "CubeError",
    "KINDS",
    "make_cube",
    "validate",
    "save",
    "load",
    "final",
    "tokens_per_source",
    "epochs",
    "compute",
    "num_languages",
    "cosampled",
    "cosampled_from_mix",
    "languages",
    "write_netcdf",
    "read_netcdf",
]

KINDS = ("pretrain", "finetune")
MIX_TOL = 1e-6
_JSON_ATTRS = "_json_attrs"  # names of attrs stored as JSON text (netCDF has no dict/bool attrs)


class CubeError(ValueError):
    """A run cube or run table that cannot be used; the message lists every problem found."""

    def __init__(self, problems: Sequence[str], *, what: str = "run cube"):
        self.problems = list(problems)
        head = f"invalid {what}: {len(self.problems)} problem{'s' * (len(self.problems) > 1)}"
        super().__init__(head + "\n" + "\n".join(f"  - {p}" for p in self.problems))


def _fmt_list(items: Sequence[Any], limit: int = 6) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# ----------------------------------------------------------------------------- construction


def make_cube(
    *,
    loss: np.ndarray,
    N: np.ndarray,
    D: np.ndarray,
    mix: np.ndarray | None = None,
    U: np.ndarray | None = None,
    run: Sequence[str] | None = None,
    lang: Sequence[str] | None = None,
    src: Sequence[str] | None = None,
    step: Sequence[int] | None = None,
    seed: np.ndarray | None = None,
    kind: Sequence[str] | None = None,
    base: Sequence[str] | None = None,
    units: str = "nats/token",
    attrs: Mapping[str, Any] | None = None,
    extra: Mapping[str, tuple[tuple[str, ...], np.ndarray]] | None = None,
) -> xr.Dataset:
    """Build and validate a run cube from arrays.

    Parameters
    ----------
    loss
        ``(run, lang)`` or ``(run, lang, step)`` losses.
    N, D
        ``(run,)`` parameters; ``(run,)`` or ``(run, step)`` tokens seen.
    mix, U
        ``(run, src)`` sampling weights and unique-token budgets. ``mix`` may be left out when there
        is one training language; ``U`` defaults to ``inf``.
    run, lang, src, step
        Coordinates; default ``run`` ids are ``"r0000"``..., ``lang`` is ``["xx"]`` for one language.
    units
        Unit of ``loss``.
    extra
        More variables as ``{name: (dims, values)}``.

    Examples
    --------
    >>> import numpy as np
    >>> cube = make_cube(loss=np.array([[3.1], [2.9]]), N=np.array([1e6, 2e6]), D=np.array([1e8, 1e8]))
    >>> dict(cube.sizes)
    {'run': 2, 'lang': 1, 'src': 1}
    """
    loss = np.asarray(loss, dtype=float)
    if loss.ndim not in (2, 3):
        raise CubeError([f"loss must have dims (run, lang) or (run, lang, step); got {loss.ndim} dims"])
    n_run, n_lang = loss.shape[:2]
    run = [f"r{i:04d}" for i in range(n_run)] if run is None else [str(r) for r in run]
    lang = (["xx"] if n_lang == 1 else [f"l{i}" for i in range(n_lang)]) if lang is None else [str(x) for x in lang]
    src = list(lang) if src is None else [str(s) for s in src]
    if mix is None:
        if len(src) != 1:
            raise CubeError([f"mix is required when there are several training languages (src = {src})"])
        mix = np.ones((n_run, 1))
    mix = np.asarray(mix, dtype=float)
    U = np.full(mix.shape, np.inf) if U is None else np.asarray(U, dtype=float)
    has_step = loss.ndim == 3
    loss_dims = ("run", "lang", "step") if has_step else ("run", "lang")
    D = np.asarray(D, dtype=float)
    d_dims = ("run", "step") if D.ndim == 2 else ("run",)
    data: dict[str, Any] = {
        "loss": (loss_dims, loss, {"units": units, "long_name": "evaluation loss"}),
        "N": (("run",), np.asarray(N, dtype=float), {"long_name": "parameters"}),
        "D": (d_dims, D, {"units": "tokens", "long_name": "tokens seen in total"}),
        "mix": (("run", "src"), mix, {"long_name": "sampling weight of each training language"}),
        "U": (("run", "src"), U, {"units": "tokens", "long_name": "unique tokens available"}),
    }
    if seed is not None:
        data["seed"] = (("run",), np.asarray(seed, dtype=np.int64))
    if kind is not None:
        data["kind"] = (("run",), np.asarray([str(k) for k in kind], dtype=object))
    if base is not None:
        data["base"] = (("run",), np.asarray(["" if b is None else str(b) for b in base], dtype=object))
    for name, (dims, values) in (extra or {}).items():
        data[name] = (dims, np.asarray(values))
    coords: dict[str, Any] = {
        "run": np.asarray(run, dtype=object),
        "lang": np.asarray(lang, dtype=object),
        "src": np.asarray(src, dtype=object),
    }
    if has_step or D.ndim == 2:
        n_step = loss.shape[2] if has_step else D.shape[1]
        coords["step"] = np.arange(n_step) if step is None else np.asarray(step, dtype=np.int64)
    cube = xr.Dataset(data, coords=coords, attrs=dict(attrs or {}))
    validate(cube)
    return cube


# ----------------------------------------------------------------------------- validation


def _where(cube: xr.Dataset, mask: xr.DataArray, limit: int = 6) -> str:
    """Describe the coordinates where ``mask`` is true, e.g. ``run='r3' (N=2e+06, D=4e+07), lang='sw'``."""
    stacked = mask.stack(_cell=mask.dims) if mask.dims else mask
    hits = np.flatnonzero(np.asarray(stacked))
    labels = []
    for i in hits[:limit]:
        cell = stacked.isel(_cell=i) if mask.dims else stacked
        parts = []
        for dim in mask.dims:
            value = cell.coords[dim].item()
            if dim == "run" and "N" in cube:
                n = float(cube["N"].sel(run=value).item())
                parts.append(f"run={value!r} (N={n:.3g})")
            else:
                parts.append(f"{dim}={value!r}")
        labels.append(", ".join(parts))
    more = f"; and {len(hits) - limit} more" if len(hits) > limit else ""
    return "; ".join(labels) + more


def validate(cube: xr.Dataset) -> None:
    """Check a run cube; raise :class:`CubeError` listing every problem, each with its coordinates."""
    problems: list[str] = []
    if not isinstance(cube, xr.Dataset):
        raise CubeError([f"expected an xarray.Dataset, got {type(cube).__name__}"])
    for name, dims in {"loss": ("run", "lang"), "N": ("run",), "D": ("run",), "mix": ("run", "src"), "U": ("run", "src")}.items():
        if name not in cube:
            problems.append(f"missing variable {name!r}: a run cube needs loss, N, D, mix and U")
            continue
        missing = [d for d in dims if d not in cube[name].dims]
        if missing:
            problems.append(f"variable {name!r} has dims {cube[name].dims}; missing dim(s) {missing}")
        allowed = set(dims) | {"step"} if name in ("loss", "D") else set(dims)
        unknown = [d for d in cube[name].dims if d not in allowed]
        if unknown:
            problems.append(f"variable {name!r} has unexpected dim(s) {unknown}; expected {sorted(allowed)}")
    if problems:
        raise CubeError(problems)
    if cube.sizes["run"] == 0:
        raise CubeError(["the cube has no runs"])
    for dim in ("run", "lang", "src"):
        values = [str(v) for v in cube[dim].values]
        dups = sorted({v for v in values if values.count(v) > 1})
        if dups:
            problems.append(f"duplicate {dim} coordinate(s): {_fmt_list(dups)}")
    for name in ("loss", "N", "D", "mix", "U"):
        if not np.issubdtype(cube[name].dtype, np.number):
            problems.append(f"variable {name!r} must be numeric, got dtype {cube[name].dtype}")
    if problems:
        raise CubeError(problems)

    loss, D = cube["loss"], cube["D"]
    if not np.isfinite(loss.values).any():
        problems.append("no finite loss anywhere: the cube is empty")
    bad = np.isinf(loss)
    if bad.any():
        problems.append(f"loss is infinite at {_where(cube, bad)}")
    bad = loss <= 0
    if bad.any():
        problems.append(f"loss must be positive; non-positive at {_where(cube, bad)}")
    evaluated = np.isfinite(loss).any("lang")
    d_bad = evaluated & ~(np.isfinite(D) & (D > 0))
    if d_bad.any():
        problems.append(f"D must be a positive finite token count wherever a loss is recorded; bad at {_where(cube, d_bad)}")
    n = cube["N"]
    bad = ~(np.isfinite(n) & (n > 0))
    if bad.any():
        problems.append(f"N must be a positive finite parameter count; bad at {_where(cube, bad)}")
    mix = cube["mix"]
    bad = ~np.isfinite(mix) | (mix < 0)
    if bad.any():
        problems.append(f"mix weights must be finite and >= 0; bad at {_where(cube, bad)}")
    total = mix.sum("src")
    bad = np.abs(total - 1.0) > MIX_TOL
    if bad.any():
        sums = ", ".join(f"{float(s):.6g}" for s in total.values[np.asarray(bad)][:6])
        problems.append(f"mix must sum to 1 over src (tolerance {MIX_TOL:g}); sums {sums} at {_where(cube, bad)}")
    U = cube["U"]
    bad = np.isnan(U) | (U <= 0)
    if bad.any():
        problems.append(f"U must be a positive token count or inf (unconstrained); bad at {_where(cube, bad)}")
    if "kind" in cube:
        bad = ~cube["kind"].isin(list(KINDS))
        if bad.any():
            got = sorted({str(k) for k in cube["kind"].values[np.asarray(bad)]})
            problems.append(f"kind must be one of {list(KINDS)}; got {_fmt_list(got)} at {_where(cube, bad)}")
    if "step" in loss.dims and "step" not in D.dims:
        problems.append("loss has a step dim but D does not: give D(run, step), the tokens seen at each checkpoint")
    if "units" not in loss.attrs:
        problems.append("loss.attrs['units'] is missing: say what the loss measures (e.g. 'nats/token', 'bits/byte')")
    if problems:
        raise CubeError(problems)


# ----------------------------------------------------------------------------- netCDF IO


def _encode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out, encoded = {}, []
    for key, value in attrs.items():
        if isinstance(value, (str, int, float, np.integer, np.floating)) and not isinstance(value, bool):
            out[key] = value
        else:
            out[key] = json.dumps(value, default=str)
            encoded.append(key)
    if encoded:
        out[_JSON_ATTRS] = json.dumps(encoded)
    return out


def _decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    attrs = dict(attrs)
    encoded = json.loads(attrs.pop(_JSON_ATTRS, "[]"))
    for key in encoded:
        attrs[key] = json.loads(attrs[key])
    return attrs


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` atomically: a temporary file in the same folder, then a rename.

    A crash mid-write leaves the previous file (if any) untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = ds.copy()
    ds.attrs = _encode_attrs(ds.attrs)
    for name in ds.variables:
        ds[name].attrs = _encode_attrs(ds[name].attrs)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="netcdf4")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_netcdf(path: str | os.PathLike) -> xr.Dataset:
    """Read a file written by :func:`write_netcdf` fully into memory (the file is closed after)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except (OSError, ValueError) as err:
        raise CubeError([f"{str(path)!r} is not a readable netCDF file ({err})"], what="file") from None
    ds.attrs = _decode_attrs(ds.attrs)
    for name in ds.variables:
        ds[name].attrs = _decode_attrs(ds[name].attrs)
    for name in ds.variables:
        if ds[name].dtype.kind in "SU":
            ds[name] = ds[name].astype(object)
    return ds


def save(cube: xr.Dataset, path: str | os.PathLike) -> Path:
    """Validate ``cube`` and write it to netCDF atomically (exact round trip with :func:`load`)."""
    validate(cube)
    return write_netcdf(cube, path)


def load(path: str | os.PathLike) -> xr.Dataset:
    """Load and validate a run cube written by :func:`save`."""
    cube = read_netcdf(path)
    validate(cube)
    return cube


# ----------------------------------------------------------------------------- derived quantities


def languages(cube: xr.Dataset) -> list[str]:
    """Evaluation languages of the cube, in coordinate order."""
    return [str(x) for x in cube["lang"].values]


def final(cube: xr.Dataset) -> xr.Dataset:
    """The cube at each run's last checkpoint: drops ``step``, keeping the final finite loss and D.

    A cube without ``step`` is returned unchanged.
    """
    if "step" not in cube.dims:
        return cube
    has = np.isfinite(cube["D"]) if "step" in cube["D"].dims else np.isfinite(cube["loss"]).any("lang")
    last = (has * np.arange(cube.sizes["step"])).argmax("step")
    out = cube.isel(step=last).drop_vars("step", errors="ignore")
    return out


def tokens_per_source(cube: xr.Dataset) -> xr.DataArray:
    """Tokens drawn from each training language, ``mix * D``, dims ``(run, src[, step])``."""
    return (cube["mix"] * cube["D"]).rename("tokens").assign_attrs(units="tokens")


def epochs(cube: xr.Dataset) -> xr.DataArray:
    """Epochs over each language's unique data, ``mix * D / U`` (0 when U is inf).

    This is the count to check under temperature or Unimax sampling: the epochs follow the
    *sampling* weights ``mix``, not the languages' natural shares of the corpus.
    """
    return (tokens_per_source(cube) / cube["U"]).rename("epochs").assign_attrs(units="epochs")


def compute(cube: xr.Dataset) -> xr.DataArray:
    """Training compute ``C = 6 N D`` in FLOPs, dims ``(run[, step])``."""
    return (6.0 * cube["N"] * cube["D"]).rename("C").assign_attrs(units="FLOPs")


def num_languages(cube: xr.Dataset) -> xr.DataArray:
    """Number of training languages ``K`` of each run (sources with positive weight)."""
    return (cube["mix"] > 0).sum("src").rename("K")


def cosampled(cube: xr.Dataset, target: str, k: int = 3) -> tuple[str, ...]:
    """The ``k`` languages most often co-sampled with ``target`` (ATLAS's ``K_t``).

    Counts, over the runs whose mixture includes ``target``, how many also sample each other
    source; ties are broken by the summed weight of the source in those runs, then by name.
    Fewer than ``k`` are returned when fewer languages are ever co-sampled.
    """
    return cosampled_from_mix(cube["mix"].values, [str(s) for s in cube["src"].values], target, k=k)


def cosampled_from_mix(mix: np.ndarray, srcs: Sequence[str], target: str, *, k: int = 3) -> tuple[str, ...]:
    """:func:`cosampled` over a ``(run, src)`` array of mixture weights."""
    srcs = list(srcs)
    if target not in srcs:
        raise ValueError(f"target {target!r} is not a training language of this cube; src = {srcs}")
    mix = np.asarray(mix, dtype=float)
    with_t = mix[:, srcs.index(target)] > 0
    others = [j for j, s in enumerate(srcs) if s != target]
    sub = mix[with_t][:, others]
    counts, weight = (sub > 0).sum(axis=0), sub.sum(axis=0)
    order = sorted(range(len(others)), key=lambda i: (-counts[i], -weight[i], srcs[others[i]]))
    return tuple(srcs[others[i]] for i in order if counts[i] > 0)[:k]
