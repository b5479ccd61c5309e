"""Priors of the Bayesian models: weakly informative defaults and the ``paper`` option.

Every law parameter gets one prior, stated on its *sampling scale* (the log for positive
quantities) so that the NumPyro models (:mod:`atlas_bayes.models`) and the PyMC twin read the same
numbers from :func:`prior_arrays`.

The amplitudes are not given priors directly. The models sample them at reference scales, the
geometric means ``N0``, ``D0`` of each target's runs (see :mod:`atlas_bayes.models`):

.. math:: a = A N_0^{-\\alpha}, \\qquad b = B D_0^{-\\beta}

are the size and data terms of the loss at the reference run, quantities a person can reason
about ("a quarter of the loss"), unlike ``A ~ e^{20}``. ``E``, ``L_inf``, ``a`` and ``b`` are
scaled by the target's typical observed loss ``L_ref`` (the median), so the same defaults serve
losses in nats/token, bits/byte or anything else (the autoscaling convention of rstanarm).

Default priors (``prior="default"``), with ``LogNormal(m, s)`` meaning ``log x ~ Normal(log m, s)``:

============  ==============================  ====================================================
parameter     prior                            reason
============  ==============================  ====================================================
E, L_inf      LogNormal(0.5 L_ref, 0.5)        irreducible loss: a fraction of the observed loss
a (from A)    LogNormal(0.25 L_ref, 1.0)       size term at N0: a share of the loss, x/÷ 2.7 per sd
b (from B)    LogNormal(0.25 L_ref, 1.0)       data term at D0, likewise
alpha, beta   LogNormal(0.3, 0.6)              90% in [0.11, 0.8]: every published exponent inside
lam           LogNormal(1/15, 1.0)             1/R_D*, Muennighoff et al.'s R_D* ~ 15 epochs
R_D_star      LogNormal(15, 1.0)               repeated data loses worth over ~15 epochs
R_N_star      LogNormal(5, 1.0)                excess parameters over ~5x
gamma         Normal(0, 0.2)                   mixture-share exponent, small either way
phi, psi      Normal(0, 0.2)                   curse exponents, small either way
tau_<lang>    Normal(0, 0.25)                  0 = neutral; the paper's BTS in -0.5..0.5 is tau -0.2..0.33
tau_other     Normal(0, 0.15)                  it weighs most of a many-language mixture's tokens:
                                               strong interference there would leave no data
sigma         HalfNormal(0.1)                  log-loss noise: seeds differ by ~1%
sigma_seed    HalfNormal(0.1)                  seed-to-seed part (replicated configurations)
nu            Gamma(2, 0.1)                    Student-t degrees of freedom (Juarez & Steel 2010)
mu_<p>        the parameter's prior above      partial pooling: common value of log E, log alpha ...
(spread)      0.25, fixed (``POOL_SD``)        of the targets around mu_<p> (see atlas_bayes.models)
============  ==============================  ====================================================

``prior="paper"`` centres what was published, with stated widths (sd on the natural scale; for
positive parameters the log-normal with that relative width):

- exponents: Chinchilla (Hoffmann et al. 2022) alpha 0.34 +- 0.1, beta 0.28 +- 0.1 for chinchilla,
  msl and the ATLAS variants (the ATLAS paper prints no exponents of its own); DCSL (Muennighoff et
  al. 2023) alpha = beta = 0.3527 +- 0.1, R_D* 15.39 and R_N* 5.31 (x/÷ 1.65); curse (Longpre et
  al. 2025) phi 0.11 +- 0.05, psi -0.04 +- 0.05, alpha 0.45 +- 0.1, beta 0.15 +- 0.05;
- lam: 1/R_D* = 1/15.39, x/÷ 1.65;
- transfer weights: ``tau_s = BTS / (2 - BTS)`` (SPEC section 2, derived) from the paper's 38 x 38
  matrix (``data/paper_transfer_matrix.csv``), sd 0.15 inside the measured 9 x 9 block and 0.3 for
  the entries the authors predicted with a random forest; pairs outside the matrix keep the default.

Amplitudes, ``E`` and the noise keep their defaults under ``paper``: published values belong to
other corpora and tokenisers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib.resources import files
from typing import Literal, NamedTuple, get_args

import numpy as np

from atlas_bayes import registry

__all__ = [
    "PriorName",
    "PRIORS",
    "Prior",
    "DEFAULT",
    "PAPER",
    "family",
    "prior_arrays",
    "paper_tau",
    "describe",
    "lookup",
    "POOL_SD",
]

PriorName = Literal["default", "paper"]
PRIORS: tuple[str, ...] = get_args(PriorName)
Family = Literal["normal", "lognormal", "halfnormal", "gamma"]

# The measured block of the paper's transfer matrix (the rest was predicted by a random forest).
MEASURED = ("en", "ru", "es", "fr", "de", "pt", "zh", "vi", "ja")
TAU_SD_MEASURED = 0.15
TAU_SD_PREDICTED = 0.3
POOL_SD = 0.25


class Prior(NamedTuple):
    """A prior on a parameter's sampling scale.

    ``lognormal``: ``log x ~ Normal(loc, scale)``; ``normal``: ``x ~ Normal(loc, scale)``;
    ``halfnormal``: ``x ~ HalfNormal(scale)``; ``gamma``: ``x ~ Gamma(loc, scale)`` (shape, rate).
    ``relative``: ``loc`` is ``log`` of a fraction of the target's typical loss ``L_ref``.
    """

    family: Family
    loc: float
    scale: float
    relative: bool
    doc: str


def _lognormal(value: float, sd: float, doc: str) -> Prior:
    """Log-normal with median ``value`` and relative width ``sd / value`` (delta method)."""
    return Prior("lognormal", math.log(value), sd / value, False, doc)


DEFAULT: dict[str, Prior] = {
    "E": Prior("lognormal", math.log(0.5), 0.5, True, "irreducible loss, median L_ref / 2"),
    "L_inf": Prior("lognormal", math.log(0.5), 0.5, True, "irreducible loss, median L_ref / 2"),
    "A": Prior("lognormal", math.log(0.25), 1.0, True, "size term A N0^-alpha at the reference size"),
    "B": Prior("lognormal", math.log(0.25), 1.0, True, "data term B D0^-beta at the reference tokens"),
    "alpha": Prior("lognormal", math.log(0.3), 0.6, False, "model-size exponent"),
    "beta": Prior("lognormal", math.log(0.3), 0.6, False, "data exponent"),
    "lam": Prior("lognormal", math.log(1 / 15), 1.0, False, "repetition decay 1/R_D*"),
    "R_D_star": Prior("lognormal", math.log(15.0), 1.0, False, "repeated-data decay constant"),
    "R_N_star": Prior("lognormal", math.log(5.0), 1.0, False, "excess-parameter decay constant"),
    "gamma": Prior("normal", 0.0, 0.2, False, "mixture-share exponent"),
    "phi": Prior("normal", 0.0, 0.2, False, "capacity cost per added language"),
    "psi": Prior("normal", 0.0, 0.2, False, "data benefit per added language"),
    "tau": Prior("normal", 0.0, 0.25, False, "transfer weight of a co-sampled language (tau_<lang>)"),
    "tau_other": Prior("normal", 0.0, 0.15, False, "transfer weight of every other language"),
    "sigma": Prior("halfnormal", 0.0, 0.1, False, "log-loss noise of a new run"),
    "sigma_seed": Prior("halfnormal", 0.0, 0.1, False, "seed-to-seed log-loss noise"),
    "nu": Prior("gamma", 2.0, 0.1, False, "Student-t degrees of freedom"),
}

_CHIN = {"alpha": _lognormal(0.34, 0.1, "Hoffmann et al. 2022"), "beta": _lognormal(0.28, 0.1, "Hoffmann et al. 2022")}
_LAM = {"lam": _lognormal(1 / 15.39, 0.5 / 15.39, "1/R_D*, Muennighoff et al. 2023")}
PAPER: dict[str, dict[str, Prior]] = {
    "chinchilla": _CHIN,
    "msl": _CHIN,
    "atlas_mono": _CHIN | _LAM,
    "atlas_other": _CHIN | _LAM,
    "atlas": _CHIN | _LAM,
    "dcsl": {
        "alpha": _lognormal(0.3527, 0.1, "Muennighoff et al. 2023"),
        "beta": _lognormal(0.3527, 0.1, "Muennighoff et al. 2023"),
        "R_D_star": _lognormal(15.39, 0.5 * 15.39, "Muennighoff et al. 2023"),
        "R_N_star": _lognormal(5.31, 0.5 * 5.31, "Muennighoff et al. 2023"),
    },
    "curse": {
        "alpha": _lognormal(0.45, 0.1, "implied by Longpre et al. 2025's iso-loss exponents"),
        "beta": _lognormal(0.15, 0.05, "implied by Longpre et al. 2025's iso-loss exponents"),
        "phi": Prior("normal", 0.11, 0.05, False, "Longpre et al. 2025"),
        "psi": Prior("normal", -0.04, 0.05, False, "Longpre et al. 2025"),
    },
}


def _check_prior(prior: str) -> None:
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; valid priors: {', '.join(PRIORS)}")


def _key(name: str) -> str:
    return "tau" if name.startswith("tau_") and name != "tau_other" else name


def family(name: str) -> Family:
    """The distribution family of parameter ``name`` (the same under every prior option)."""
    return DEFAULT[_key(name)].family


def lookup(law: str, name: str, prior: PriorName = "default") -> Prior:
    """The prior of one parameter of ``law``."""
    _check_prior(prior)
    if prior == "paper" and _key(name) in PAPER.get(law, {}):
        return PAPER[law][_key(name)]
    return DEFAULT[_key(name)]


@lru_cache(maxsize=1)
def _transfer_matrix() -> tuple[tuple[str, ...], np.ndarray]:
    import pandas as pd

    table = pd.read_csv(files("atlas_bayes") / "data" / "paper_transfer_matrix.csv", index_col=0)
    langs = tuple(str(c) for c in table.columns)
    return langs, table.loc[list(langs), list(langs)].to_numpy(dtype=float)


def paper_tau(target: str, source: str) -> tuple[float, float] | None:
    """``(mean, sd)`` of the paper prior on ``tau_source`` for ``target``, or None off the matrix.

    ``tau = BTS / (2 - BTS)`` (SPEC section 2): the weight ATLAS gives the source's tokens if it
    explains the bilingual run of the transfer score.

    Examples
    --------
    >>> mean, sd = paper_tau("fr", "es")  # BTS(es -> fr) = 0.2
    >>> round(mean, 4), sd
    (0.1111, 0.15)
    """
    langs, bts = _transfer_matrix()
    if target not in langs or source not in langs or target == source:
        return None
    value = bts[langs.index(target), langs.index(source)]
    if not np.isfinite(value):
        return None
    sd = TAU_SD_MEASURED if target in MEASURED and source in MEASURED else TAU_SD_PREDICTED
    return float(value / (2.0 - value)), sd


def prior_arrays(
    law: registry.Law | str,
    *,
    prior: PriorName = "default",
    targets: Sequence[str],
    tau_pairs: Sequence[tuple[str, str]] = (),
    L_ref: np.ndarray,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (loc, scale)}`` on the sampling scale, the numbers the models read.

    Law parameters get arrays over ``targets`` (``E``, ``A``, ``B`` relative to each target's
    ``L_ref``); ``"tau"`` gets arrays over ``tau_pairs``, the ``(target, source)`` pairs of the
    per-source transfer weights; ``sigma``, ``sigma_seed``, ``nu`` and ``pool_sd`` are scalars.
    """
    _check_prior(prior)
    law = registry.get_law(law) if isinstance(law, str) else law
    L_ref = np.asarray(L_ref, dtype=float)
    if L_ref.shape != (len(targets),):
        raise ValueError(f"L_ref must have one value per target ({len(targets)}); got shape {L_ref.shape}")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for spec in law.params:
        p = lookup(law.name, spec.name, prior)
        loc = np.full(len(targets), p.loc) + (np.log(L_ref) if p.relative else 0.0)
        out[spec.name] = (loc, np.full(len(targets), p.scale))
    if law.transfer == "sources":
        base = lookup(law.name, "tau", "default")
        locs, scales = [], []
        for target, source in tau_pairs:
            hit = paper_tau(target, source) if prior == "paper" else None
            locs.append(hit[0] if hit else base.loc)
            scales.append(hit[1] if hit else base.scale)
        out["tau"] = (np.asarray(locs, dtype=float), np.asarray(scales, dtype=float))
    for name in ("sigma", "sigma_seed", "nu"):
        out[name] = (np.asarray(DEFAULT[name].loc), np.asarray(DEFAULT[name].scale))
    out["pool_sd"] = (np.asarray(0.0), np.asarray(POOL_SD))
    return out


def describe(law: registry.Law | str, *, prior: PriorName = "default", sources: Sequence[str] = (),
             target: str | None = None) -> list[dict]:
    """One row per parameter of ``law``: family, loc, scale (sampling scale) and where it comes from."""
    _check_prior(prior)
    law = registry.get_law(law) if isinstance(law, str) else law
    rows = []
    for name in law.param_names(sources):
        p = lookup(law.name, name, prior)
        hit = paper_tau(target, name[4:]) if prior == "paper" and name.startswith("tau_") and name != "tau_other" and target else None
        loc, scale = (hit if hit else (p.loc, p.scale))
        rows.append({"param": name, "family": p.family, "loc": loc, "scale": scale,
                     "relative_to_L_ref": p.relative, "doc": "paper transfer matrix" if hit else p.doc})
    return rows

