"""Surrogate files: :func:`save`, :func:`load`, :func:`is_surrogate_file` (netCDF, written atomically).

A file holds everything a prediction needs and nothing derived: the training runs (``N, D, mix,
U, kind`` and the losses), the fitted hyperparameters per language, the prior law's parameter
draws, the feature spec (which inputs, their centring and scale), the constant means and the
options (extrapolation factors). :func:`load` rebuilds the cached algebra through the same code
path as :func:`surrogate.emulate`, so predictions after a round trip are identical.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from atlas_bayes import cube as cube_lib
from surrogate import gp
from surrogate.emulator import Surrogate, _assemble, _make
from surrogate.features import FeatureSpec
from surrogate.prior import LawPrior

__all__ = ["save", "load", "is_surrogate_file"]

_MARKER = "atlas_surrogate"
_VERSION = 3  # 2: the mixture random effect (log_mix_sd), version 1 files load with none; 3: var_scale, older files load with 1


def _json(obj) -> str:
    return json.dumps(obj, allow_nan=True)


def save(model: Surrogate, path: str | os.PathLike) -> Path:
    """Write a surrogate to netCDF atomically: training runs, hyperparameters, prior draws, feature spec, ranges."""
    if model.state is None:
        raise ValueError("a law-only model (from_fit) is not saved as a surrogate; its fit file already holds it")
    h = jax.tree.map(np.asarray, model.state.hyper)
    t = model.train
    ds = xr.Dataset(
        {
            "train_N": (("run",), t["N"]), "train_D": (("run",), t["D"]), "train_finetune": (("run",), t["finetune"]),
            "train_mix": (("run", "src"), t["mix"]), "train_U": (("run", "src"), t["U"]),
            "train_loss": (("run", "lang"), t["loss"]),
            "log_amp": (("lang",), h.log_amp), "log_ell": (("lang", "feature"), h.log_ell),
            "log_c": (("lang",), h.log_c), "log_lin": (("lang", "feature"), h.log_lin),
            "log_sigma": (("lang",), h.log_sigma), "log_mix_sd": (("lang",), h.log_mix_sd),
            "const": (("lang",), model.const), "var_scale": (("lang",), np.asarray(model.state.var_scale)),
        },
        coords={"lang": np.asarray(model.langs, dtype=object), "src": np.asarray(model.srcs, dtype=object),
                "feature": np.asarray(model.spec.names, dtype=object)},
        attrs={
            _MARKER: _VERSION,
            "emulator": model.name,
            "units": model.units,
            "spec": _json({k: list(v) if isinstance(v, tuple) else v for k, v in model.spec.__dict__.items()}),
            "priors": _json({lang: {"law": p.law, "target": p.target, "sources": list(p.sources), "names": list(p.names),
                                    "draws": p.draws.tolist(), "sigma": p.sigma.tolist()} for lang, p in model.priors.items()}),
            "options": _json(model.options),
            "diagnostics": _json(model.diagnostics),
        },
    )
    return cube_lib.write_netcdf(ds, path)


def is_surrogate_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a surrogate written by :func:`save` (False for fits, cubes and missing files)."""
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            return _MARKER in ds.attrs
    except (OSError, ValueError, FileNotFoundError):
        return False


def load(path: str | os.PathLike) -> Surrogate:
    """Read a surrogate written by :func:`save`; predictions are identical to the saved model's."""
    ds = cube_lib.read_netcdf(path)
    if _MARKER not in ds.attrs:
        raise ValueError(f"{str(path)!r} is not a surrogate file (no {_MARKER!r} attribute); make one with `atlas emulate`")
    if int(ds.attrs[_MARKER]) > _VERSION:
        raise ValueError(f"{str(path)!r} was written by a newer atlas (surrogate format {ds.attrs[_MARKER]}); upgrade atlas")
    sd = json.loads(ds.attrs["spec"])
    spec = FeatureSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in sd.items()})
    priors = {lang: LawPrior(p["law"], p["target"], tuple(p["sources"]), tuple(p["names"]), np.asarray(p["draws"], float).reshape(-1, len(p["names"])),
                             np.asarray(p["sigma"], float)) for lang, p in json.loads(ds.attrs["priors"]).items()}
    langs = tuple(str(x) for x in ds["lang"].values)
    train = {"N": ds["train_N"].values, "D": ds["train_D"].values, "finetune": ds["train_finetune"].values,
             "mix": ds["train_mix"].values, "U": ds["train_U"].values, "loss": ds["train_loss"].values}
    with jax.enable_x64(True):
        no_effect = np.full(len(langs), -np.inf)  # a version-1 file: no mixture random effect
        hyper = gp.Hyper(*(jnp.asarray(ds[k].values if k in ds else no_effect, jnp.float64) for k in gp.Hyper._fields))
        var_scale = ds["var_scale"].values if "var_scale" in ds else None  # older files: the MAP variance
        _, state = _assemble(spec, langs, priors, ds["const"].values, hyper, train, var_scale=var_scale)
    return _make(spec, langs, str(ds.attrs.get("units", "")), state, priors, ds["const"].values, train,
                 json.loads(ds.attrs["options"]), json.loads(ds.attrs["diagnostics"]))

