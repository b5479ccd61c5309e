"""The emulator a user trains, saves, loads and queries: :func:`emulate`, :class:`Surrogate`, :func:`load`.

Why a Gaussian process (and not an ensemble of small networks)
--------------------------------------------------------------
A run cube holds tens to a few hundred runs: a GP is exact at that size (one Cholesky factor per
evaluation language), its uncertainty grows with the distance from the runs by construction, a
fitted law slots in as its mean function, and conditioning on fantasised runs -- what
:func:`surrogate.suggest` needs -- is one rank-one update instead of retraining an ensemble. The
numbers behind the choice (held-out error and 90% coverage on mixtures left out of training, for
the GP, the ATLAS posterior alone and the GP around it; prediction time) are measured by
``bench/surrogate.py`` and recorded in BENCHMARKS.md, "Surrogate". Measured 2026-12-03 on 300
training and 204 held-out runs of a simulated six-language world (R^2(M) split): the GP reaches
R^2(M) 0.964 and log-loss RMSE 0.027 against a deep ensemble of 8 Haiku MLPs' 0.910 and 0.043 on
the same features, with 90% coverage 0.90 against the ensemble's 0.72 on those unseen mixtures
(0.77 before its latent variance was marginalised over the hyperparameters, :mod:`surrogate.gp`;
0.79 around an ATLAS posterior mean, still narrow), and predicts 10,000 configurations x 6 languages
in ~45 ms alone, ~72 ms with an ATLAS posterior as its mean, on 2 CPU cores under load ~5 (ensemble ~52 ms).
See :mod:`surrogate.gp` for the model.

Library: tinygp 0.3 (kernel, marginal likelihood, conditioning) and optax (Adam) on JAX.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache, partial
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from scipy import stats

from atlas_bayes import cube as cube_lib
from atlas_bayes.results import FitResult, load_fit
from surrogate import gp
from surrogate.features import FeatureSpec, features, make_spec, mixture_key
from surrogate.prior import LawPrior, law_moments, priors_from_fits

__all__ = [
    "Surrogate",
    "emulate",
    "from_fit",
    "ExtrapolationWarning",
    "EXTRAPOLATION_WARN",
    "EXTRAPOLATION_LIMIT",
    "MIX_TOL",
    "SHARE_WARN",
    "PRECISIONS",
]

EXTRAPOLATION_WARN = 2.0  # N or D beyond the trained range by more than this factor: warning
EXTRAPOLATION_LIMIT = 100.0  # ... by more than this: error
SHARE_WARN = 0.5  # a language's share below this times its smallest trained share: extrapolation warning
MIX_TOL = 1e-3  # mixture weights must sum to 1 within this (3-digit weights such as 0.333 x 3 pass)
PRECISIONS = ("float32", "float64")
Precision = Literal["float32", "float64"]


class ExtrapolationWarning(UserWarning):
    """A query lies outside the N or D range the emulator was trained on by more than the warning factor."""


@dataclass(frozen=True, eq=False)
class Surrogate:
    """A trained emulator of the loss per evaluation language. Build with :func:`emulate` or :func:`load`.

    ``state`` is ``None`` for a law-only model made from a fit by :func:`from_fit` (the fitted
    law's posterior alone, no GP).
    """

    spec: FeatureSpec
    langs: tuple[str, ...]
    units: str
    state: gp.State | None
    priors: dict[str, LawPrior]
    const: np.ndarray  # (L,) mean log-loss of the languages without a prior law
    train: dict[str, np.ndarray]  # N, D, finetune (run,); mix, U (run, src); loss (run, lang)
    ranges: dict[str, tuple[float, float]]
    default_U: np.ndarray  # (S,) U per source when a query gives none: the runs' one budget, else inf if some ran on fresh data, else NaN (must be given)
    kinds: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def srcs(self) -> tuple[str, ...]:
        return self.spec.srcs

    @property
    def name(self) -> str:
        if self.state is None:
            return "law:" + ",".join(sorted({p.law for p in self.priors.values()}))
        laws = sorted({p.law for p in self.priors.values()})
        return "gp" + ("+" + ",".join(laws) if laws else "")

    def __repr__(self) -> str:
        return (f"Surrogate({self.name}, langs={list(self.langs)}, srcs={list(self.srcs)}, "
                f"runs={len(self.train['N'])}, N in [{self.ranges['N'][0]:.3g}, {self.ranges['N'][1]:.3g}], "
                f"D in [{self.ranges['D'][0]:.3g}, {self.ranges['D'][1]:.3g}])")

    # ------------------------------------------------------------------ array layer

    @cached_property
    def _static(self):
        """The hashable structure of the model: equal structures share one compiled prediction."""
        meta = tuple((lang, p.law, p.target, p.sources, p.names) for lang, p in self.priors.items())
        return (self.spec, self.langs, meta, tuple(float(c) for c in self.const))

    @cached_property
    def _prior_arrays(self):
        return tuple((np.asarray(p.draws, float), np.asarray(p.sigma, float)) for p in self.priors.values())

    @property
    def _moments_fn(self):
        return partial(_moments_jit(), self._static)

    def _moments(self, state, N, D, mix, U, finetune):
        """Log-loss moments of every language: mean, latent variance, noise variance, each ``(L, n)``; traceable."""
        return _moments_core(self._static, state, self._prior_arrays, N, D, mix, U, finetune)

    @cached_property
    def _float32(self):
        """The state and prior draws in float32, for :meth:`log_moments` ``precision="float32"``."""
        def cast(x):
            return jnp.asarray(x, jnp.float32) if np.issubdtype(np.asarray(x).dtype, np.floating) else x

        return jax.tree.map(cast, self.state), jax.tree.map(cast, self._prior_arrays)

    def log_moments(self, N, D, mix, U, finetune, *, precision: Precision = "float64"):
        """:meth:`_moments` on NumPy arrays (checked arrays from :meth:`check_configs`); float64 results.

        ``precision="float32"`` evaluates in single precision, 2 to 3 times faster on a CPU; the
        Cholesky factor and weights are still computed in float64 at training. Measured against
        float64 by ``bench/surrogate.py`` (``float32_error``): means within ~0.1% and sds within
        ~0.2% of the predictive sd, also at the training runs, where the variance cancels most.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}; got {precision!r}")
        with jax.enable_x64(True):
            dtype = jnp.float64 if precision == "float64" else jnp.float32
            state, prior_arrays = (self.state, self._prior_arrays) if precision == "float64" else self._float32
            args = [jnp.asarray(a, dtype=dtype) for a in (N, D, mix, U, finetune)]
            return tuple(np.asarray(a, dtype=float) for a in self._moments_fn(state, prior_arrays, *args))

    # ------------------------------------------------------------------ boundary

    def check_configs(self, N, D, mix=None, U=None, *, srcs: Sequence[str] | None = None, kind="pretrain",
                      warn: bool = True, stacklevel: int = 3):
        """Validate configurations; return ``N, D (n,)``, ``mix, U (n, S)``, ``finetune (n,)``, ``extrapolation (n,)``.

        ``mix`` and ``U`` are mappings ``{src: value or (n,) array}`` or ``(n, len(srcs))`` arrays
        (columns named by ``srcs``, default the emulator's training languages).
        """
        N = np.atleast_1d(np.asarray(N, dtype=float))
        D = np.atleast_1d(np.asarray(D, dtype=float))
        try:
            N, D = np.broadcast_arrays(N, D)
        except ValueError:
            raise ValueError(f"N and D must have the same length (or one of them be a single value); got {N.size} and {D.size}") from None
        n = N.size
        N, D = N.ravel().copy(), D.ravel().copy()
        for name, v in (("N", N), ("D", D)):
            bad = np.flatnonzero(~(np.isfinite(v) & (v > 0)))
            if bad.size:
                raise ValueError(f"{name} must be a positive finite number; got {name}={float(v[bad[0]])!r} (config {bad[0]})")
        S = len(self.srcs)
        mix = self._columns(mix, srcs, n, what="mix", fill=0.0)
        if mix is None:
            if S != 1:
                raise ValueError(f"give the mixture (mix): the emulator was trained on {S} languages {list(self.srcs)}, "
                                 "e.g. --mix " + ",".join(f"{s}={1 / S:.3g}" for s in self.srcs)
                                 + " (or mix:<lang> columns in a --grid file)")
            mix = np.ones((n, 1))
        bad = np.argwhere(~np.isfinite(mix) | (mix < 0))
        if bad.size:
            i, j = bad[0]
            raise ValueError(f"mixture weights must be finite and >= 0; got {self.srcs[j]}={float(mix[i, j])!r} (config {i})")
        total = mix.sum(axis=1)
        bad = np.flatnonzero(np.abs(total - 1.0) > MIX_TOL)
        if bad.size:
            i = bad[0]
            text = ",".join(f"{s}={w:.6g}" for s, w in zip(self.srcs, mix[i]) if w > 0) or "(all zero)"
            raise ValueError(f"mixture weights must sum to 1 (within {MIX_TOL:g}); {text} sums to {total[i]:.6g} "
                             f"(config {i}, N={N[i]:.3g}, D={D[i]:.3g})")
        mix = mix / total[:, None]
        U_given = self._columns(U, srcs, n, what="U", fill=np.nan)
        U_full = np.broadcast_to(self.default_U, (n, S)).copy()
        if U_given is not None:
            U_full = np.where(np.isnan(U_given), U_full, U_given)
        for j, s in enumerate(self.srcs):
            need = np.isnan(U_full[:, j]) & (mix[:, j] > 0)
            if need.any():
                seen = sorted({float(u) for u in self.train["U"][:, j]})
                raise ValueError(f"give U for {s!r} (unique tokens available): the training runs used several budgets "
                                 f"{[f'{u:.3g}' for u in seen[:6]]}, so there is no default")
        U_full = np.where(np.isnan(U_full), np.inf, U_full)
        bad = np.argwhere(~(U_full > 0))
        if bad.size:
            i, j = bad[0]
            raise ValueError(f"U must be a positive token count or inf; got U:{self.srcs[j]}={float(U_full[i, j])!r} (config {i})")
        if warn and U_given is not None:
            self._check_U(U_full, mix, D, stacklevel=stacklevel + 1)
        kinds = np.broadcast_to(np.asarray(kind, dtype=object), (n,))
        unknown = sorted({str(k) for k in kinds} - set(cube_lib.KINDS))
        if unknown:
            raise ValueError(f"kind must be one of {list(cube_lib.KINDS)}; got {unknown[0]!r}")
        unseen = sorted({str(k) for k in kinds} - set(self.kinds))
        if unseen:
            raise ValueError(f"kind {unseen[0]!r} is outside what the emulator saw: its training runs are all {list(self.kinds)}")
        finetune = np.asarray([k == "finetune" for k in kinds], dtype=float)
        factor = self.extrapolation(N, D)
        worst = int(np.argmax(factor))
        limit = self.options.get("limit_factor", EXTRAPOLATION_LIMIT)
        warn_at = self.options.get("warn_factor", EXTRAPOLATION_WARN)
        where = (f"N={N[worst]:.3g}, D={D[worst]:.3g} lies {factor[worst]:.3g}x outside the trained range "
                 f"N in [{self.ranges['N'][0]:.3g}, {self.ranges['N'][1]:.3g}], D in [{self.ranges['D'][0]:.3g}, {self.ranges['D'][1]:.3g}]")
        if factor[worst] > limit:
            raise ValueError(f"{where}; the emulator refuses to extrapolate beyond {limit:g}x (config {worst})")
        if warn and factor[worst] > warn_at:
            count = int(np.sum(factor > warn_at))
            warnings.warn(f"{count} of {n} configuration(s) extrapolate beyond {warn_at:g}x; worst: {where}. "
                          "The sd grows with the distance, but check such predictions with a run", ExtrapolationWarning,
                          stacklevel=stacklevel)
        return N, D, mix, U_full, finetune, factor

    def _check_U(self, U, mix, D, *, stacklevel: int) -> None:
        """Warn where a given ``U`` lies outside the unique-token budgets the training runs used."""
        warn_at = self.options.get("warn_factor", EXTRAPOLATION_WARN)
        for j, s in enumerate(self.srcs):
            used = mix[:, j] > 0
            if s not in self.spec.u_srcs:
                repeats = used & np.isfinite(U[:, j]) & (mix[:, j] * D > U[:, j])
                if repeats.any():
                    warnings.warn(f"U for {s!r} makes the query repeat data, but no training run repeated {s!r} data: "
                                  "the emulator's GP does not see U there (only a prior law does); add repeated-data runs",
                                  UserWarning, stacklevel=stacklevel)
                continue
            seen = self.train["U"][self.train["mix"][:, j] > 0, j]
            seen = seen if seen.size else self.train["U"][:, j]  # no run trained on s: the budgets the cube lists
            lo, hi = float(seen.min()), float(seen.max())
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.where(np.isinf(U[:, j]), np.where(np.isinf(hi), 1.0, np.inf), np.maximum(U[:, j] / hi, lo / U[:, j]))
            bad = np.flatnonzero(used & (factor > warn_at))
            if bad.size:
                i = bad[0]
                trained = f"{lo:.3g}" if lo == hi else f"{lo:.3g} to {hi:.3g}"
                warnings.warn(f"{bad.size} configuration(s) give U:{s}={U[i, j]:.3g} (config {i}), outside the budgets "
                              f"the training runs used for {s!r} ({trained}) by more than {warn_at:g}x: the GP learned the "
                              "effect of repeated data only at those budgets, so the prediction extrapolates (its sd grows; "
                              "check it with a run, or give an ATLAS fit as --prior, whose law models U)",
                              ExtrapolationWarning, stacklevel=stacklevel)

    def _columns(self, value, srcs, n: int, *, what: str, fill: float):
        if value is None:
            return None
        S = len(self.srcs)
        out = np.full((n, S), fill, dtype=float)
        if isinstance(value, Mapping):
            items = list(value.items())
        else:
            arr = np.asarray(value, dtype=float)
            arr = arr.reshape(1, -1) if arr.ndim == 1 else arr
            names = list(self.srcs if srcs is None else srcs)
            if arr.ndim != 2 or arr.shape[1] != len(names) or arr.shape[0] not in (1, n):
                raise ValueError(f"{what} must have shape (n_configs, {len(names)}) over languages {names}; got {arr.shape}")
            items = [(s, arr[:, j]) for j, s in enumerate(names)]
        for s, v in items:
            v = np.broadcast_to(np.asarray(v, dtype=float), (n,))
            if str(s) not in self.srcs:
                if what == "mix" and not np.any(v > 0):
                    continue  # a zero weight on an unknown language changes nothing
                if what == "U" and not np.any(np.isfinite(v)):
                    continue
                raise ValueError(f"{what} names {str(s)!r}, which the emulator never saw in training; "
                                 f"its training languages are {list(self.srcs)}")
            out[:, self.srcs.index(str(s))] = v
        return out

    def extrapolation(self, N, D) -> np.ndarray:
        """Factor by which each ``(N, D)`` lies outside the trained ranges (1 = inside)."""
        (n_lo, n_hi), (d_lo, d_hi) = self.ranges["N"], self.ranges["D"]
        N, D = np.asarray(N, float), np.asarray(D, float)
        return np.maximum.reduce([np.ones_like(N), n_lo / N, N / n_hi, d_lo / D, D / d_hi])

    @cached_property
    def min_share(self) -> dict[str, float]:
        """Per evaluation language that is also a training language: its smallest mixture weight in a run scored on it."""
        out = {}
        for j, lang in enumerate(self.langs):
            if lang in self.srcs:
                scored = np.isfinite(self.train["loss"][:, j])
                out[lang] = float(self.train["mix"][scored, self.srcs.index(lang)].min())
        return out

    def _check_shares(self, mix, langs, keep, stacklevel: int) -> None:
        for j, lang in enumerate(langs):
            floor = self.min_share.get(lang, 0.0)
            low = np.flatnonzero((mix[:, self.srcs.index(lang)] < SHARE_WARN * floor) & keep[:, j]) if floor > 0 else []
            if len(low):
                i = low[0]
                warnings.warn(
                    f"{len(low)} configuration(s) ask for the loss on {lang!r} with a share {lang}={mix[i, self.srcs.index(lang)]:.3g} "
                    f"(config {i}), below the smallest share ({floor:.3g}) of any training run scored on {lang!r}: the "
                    "prediction extrapolates in the mixture (the sd grows, but check it with a run)",
                    ExtrapolationWarning, stacklevel=stacklevel,
                )

    def _check_langs(self, langs) -> list[str]:
        if langs is None:
            return list(self.langs)
        langs = [langs] if isinstance(langs, str) else list(langs)
        for lang in langs:
            if lang not in self.langs:
                raise ValueError(f"unknown evaluation language {lang!r}; the emulator predicts {list(self.langs)}")
        return langs

    # ------------------------------------------------------------------ the labelled layer

    def predict(self, N=None, D=None, mix=None, U=None, *, configs=None, srcs: Sequence[str] | None = None,
                langs: Sequence[str] | str | None = None, kind="pretrain", level: float = 0.9,
                precision: Precision = "float32") -> xr.Dataset:
        """Predicted loss of new runs, per configuration and evaluation language (the CONTRACTS schema).

        Parameters
        ----------
        N, D
            Parameters and tokens seen, ``(n,)`` or scalars.
        mix, U
            Mixture weights and unique-token budgets: ``{src: value}`` mappings, or ``(n, S)`` arrays
            over ``srcs``. ``U`` defaults to the training runs' budget of each language.
        configs
            Instead of ``N, D, mix, U``: an object with those fields and ``srcs`` (e.g.
            ``atlas_bayes.predict.parse_configs``'s result).
        langs
            Evaluation languages to return (default all).
        level
            Central interval level.
        precision
            Arithmetic of the prediction: ``"float32"`` (default; 10,000 configurations in well
            under 100 ms on a CPU, within ~0.2% of the sd of float64, see :meth:`log_moments`) or
            ``"float64"``.

        Returns
        -------
        xarray.Dataset with ``mean, sd, median, lower, upper`` (a new run's observed loss, noise
        included), ``law_mean, law_lower, law_upper`` (the latent loss, noise-free), ``extrapolation``.
        The loss is log-normal: the emulator is Gaussian on ``log L``.
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be between 0 and 1 (e.g. 0.9); got {level}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}; got {precision!r}")
        row_lang = None
        if configs is not None:
            N, D, srcs = configs.N, configs.D, tuple(configs.srcs)
            mix = configs.mix if srcs and np.all(np.asarray(configs.mix).sum(axis=1) > 0) else None
            given = getattr(configs, "U_given", None)
            U = np.where(given, configs.U, np.nan) if given is not None else configs.U
            U = U if srcs else None
            if getattr(configs, "lang", None) is not None:
                row_lang = np.asarray([str(v) for v in configs.lang])
                langs = [lang for lang in self.langs if lang in set(row_lang)] if langs is None else langs
                self._check_langs(sorted({str(v) for v in row_lang}))
        if N is None or D is None:
            raise ValueError("give N and D (or configs)")
        langs = self._check_langs(langs)
        N, D, mix, U, finetune, factor = self.check_configs(N, D, mix, U, srcs=srcs, kind=kind)
        idx = [self.langs.index(lang) for lang in langs]
        keep = np.ones((len(N), len(langs)), bool) if row_lang is None else row_lang[:, None] == np.asarray(langs)[None, :]
        self._check_shares(mix, langs, keep, stacklevel=3)
        mean, var, noise = self.log_moments(N, D, mix, U, finetune, precision=precision)
        mean = np.where(keep, mean[idx].T, np.nan)
        return self._dataset(N, D, mix, U, factor, mean, var[idx].T, noise[idx].T, langs, level)

    def _dataset(self, N, D, mix, U, factor, mu, var, noise, langs, level) -> xr.Dataset:
        z = stats.norm.ppf(0.5 + level / 2)
        tot = var + noise
        sd_log = np.sqrt(tot)

        def lognormal_mean(m, v):
            return np.exp(m + v / 2)

        dims = ("config", "lang")
        data = {
            "N": (("config",), N), "D": (("config",), D),
            "mix": (("config", "src"), mix), "U": (("config", "src"), U),
            "mean": (dims, lognormal_mean(mu, tot)),
            "sd": (dims, lognormal_mean(mu, tot) * np.sqrt(np.expm1(tot))),
            "median": (dims, np.exp(mu)),
            "lower": (dims, np.exp(mu - z * sd_log)),
            "upper": (dims, np.exp(mu + z * sd_log)),
            "law_mean": (dims, lognormal_mean(mu, var)),
            "law_lower": (dims, np.exp(mu - z * np.sqrt(var))),
            "law_upper": (dims, np.exp(mu + z * np.sqrt(var))),
            "extrapolation": (("config",), factor),
        }
        coords = {"config": np.arange(len(N)), "lang": np.asarray(langs, dtype=object), "src": np.asarray(self.srcs, dtype=object)}
        attrs = {"level": level, "units": self.units, "source": "surrogate", "law": self.name, "target": ",".join(langs),
                 "targets": list(langs)}
        return xr.Dataset(data, coords=coords, attrs=attrs)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the surrogate to netCDF (:func:`surrogate.files.save`)."""
        from surrogate.files import save

        return save(self, path)


def _moments_core(static, state, prior_arrays, N, D, mix, U, finetune):
    """Mean, latent variance and noise variance of every language's log-loss, ``(L, n)`` each."""
    spec, langs, meta, const = static
    priors = {m[0]: LawPrior(*m[1:], draws=a[0], sigma=a[1]) for m, a in zip(meta, prior_arrays)}
    n = N.shape[0]
    means, law_vars, noise = [], [], []
    for j, lang in enumerate(langs):
        if lang in priors:
            m, v = law_moments(priors[lang], N, D, mix, U, srcs=spec.srcs)
            s2 = jnp.mean(jnp.asarray(priors[lang].sigma, D.dtype) ** 2)
        else:
            m, v, s2 = jnp.full((n,), const[j], D.dtype), jnp.zeros((n,), D.dtype), jnp.zeros((), D.dtype)
        means.append(m)
        law_vars.append(v)
        noise.append(jnp.broadcast_to(s2, (n,)))
    mean, var, noise = jnp.stack(means), jnp.stack(law_vars), jnp.stack(noise)
    if state is not None:
        z = features(spec, N, D, mix, U, finetune)
        g_mu, g_var, g_noise = gp.predict_latent(state, z, mixture_key(mix))
        mean, var, noise = mean + g_mu, var + g_var, jnp.broadcast_to(g_noise[:, None], mean.shape)
    return mean, var, noise


@lru_cache(maxsize=1)
def _moments_jit():
    """The compiled prediction, with the sampler's CPU options (YNNPACK fusions off: ~1.15x at 10,000
    configurations x ~100 training runs, where XLA's own loops beat YNNPACK's small-matrix fusions)."""
    from atlas_bayes.inference import cpu_compiler_options

    return jax.jit(_moments_core, static_argnums=0, compiler_options=dict(cpu_compiler_options()))


# ---------------------------------------------------------------------------- training


def _training_arrays(cube: xr.Dataset) -> dict[str, np.ndarray]:
    cube_lib.validate(cube)
    fin = cube_lib.final(cube)
    kinds = np.asarray([str(k) for k in fin["kind"].values]) if "kind" in fin else np.full(fin.sizes["run"], "pretrain")
    return {
        "N": fin["N"].values.astype(float),
        "D": fin["D"].values.astype(float),
        "mix": fin["mix"].values.astype(float),
        "U": fin["U"].values.astype(float),
        "finetune": (kinds == "finetune").astype(float),
        "loss": fin["loss"].values.astype(float),
    }


_features_jit = jax.jit(features, static_argnums=0)


def _assemble(spec, langs, priors, const, hyper, train, *, var_scale=None, dtype=jnp.float64):
    """Padded per-language data and the cached algebra: the one path used by :func:`emulate` and :func:`load`."""
    srcs = spec.srcs
    args = [jnp.asarray(train[k], dtype=dtype) for k in ("N", "D", "mix", "U", "finetune")]
    z_all = np.asarray(_features_jit(spec, *args))
    g_all = np.asarray(mixture_key(args[2]))
    log_loss = np.log(train["loss"])
    counts = np.isfinite(log_loss).sum(axis=0)
    if counts.min() == 0:
        raise ValueError(f"evaluation language {langs[int(np.argmin(counts))]!r} has no finite loss in the cube")
    n = int(counts.max())
    L, d = len(langs), spec.dim
    z = np.zeros((L, n, d))
    g = np.zeros((L, n))
    r = np.zeros((L, n))
    m = np.zeros((L, n))
    for j, lang in enumerate(langs):
        obs = np.flatnonzero(np.isfinite(log_loss[:, j]))
        if lang in priors:
            prior = priors[lang]
            mean = np.asarray(jax.jit(lambda *a, p=prior: law_moments(p, *a, srcs=srcs)[0])(*[a[obs] for a in args[:4]]))
        else:
            mean = np.full(len(obs), const[j])
        z[j, : len(obs)] = z_all[obs]
        g[j, : len(obs)] = g_all[obs]
        r[j, : len(obs)] = log_loss[obs, j] - mean
        m[j, : len(obs)] = 1.0
    data = gp.Data(z=jnp.asarray(z, dtype), g=jnp.asarray(g, dtype), r=jnp.asarray(r, dtype), m=jnp.asarray(m, dtype))
    if hyper is None:
        return data, None
    if not np.all(np.isfinite(np.asarray(data.r))):
        raise ValueError("the prior law gives a non-finite loss at some training run; check the fit against this cube")
    return data, gp.precompute(hyper, data, var_scale)


def _reference_configs(train, *, key):
    """The training runs' ``N, D, U, kind`` with Dirichlet(1) mixtures: queries the designs never ran."""
    n, S = train["mix"].shape
    mix = np.asarray(jax.random.dirichlet(key, jnp.ones(S), (n,)), float) if S > 1 else np.ones((n, 1))
    args = [jnp.asarray(a, jnp.float64) for a in (train["N"], train["D"], mix, train["U"], train["finetune"])]
    return args, mixture_key(args[2])


def _initial_hyper(data: gp.Data, starts: int, noise: np.ndarray | None = None) -> gp.Hyper:
    """Starts of the hyperparameter fit, also the centres of their weak priors (:func:`surrogate.gp.log_posterior`).

    The noise sd starts at ``noise`` where given (per language; NaN: not given), else at a tenth of
    the residuals' RMS ``s``. A tenth suits a constant mean, whose residuals are the whole signal.
    Around a fitted law's mean the residuals are little more than noise, and without replicated
    runs the marginal likelihood barely separates noise from a rough latent function: from
    ``s / 10`` (and a prior centred there) the fit stayed in the interpolating basin, noise sd
    0.001-0.004 where the simulation's is 0.01 (``bench/surrogate.py``, ATLAS mean). The law's
    own noise estimate (its posterior ``sigma``) is the scale the data gave for it.
    """
    r, m = np.asarray(data.r), np.asarray(data.m)
    L, _, d = data.z.shape
    s = np.array([max(np.sqrt(np.sum(m[j] * r[j] ** 2) / m[j].sum()), 1e-3) for j in range(L)])
    noise = np.full(L, np.nan) if noise is None else np.asarray(noise, float)
    sigma0 = np.where(np.isfinite(noise), noise, s / 10)
    scales = np.exp(np.linspace(np.log(0.5), np.log(2.0), starts)) if starts > 1 else np.ones(1)
    h = gp.Hyper(
        log_amp=np.broadcast_to(np.log(s), (starts, L)),
        log_ell=np.broadcast_to(np.log(scales)[:, None, None], (starts, L, d)),
        log_c=np.broadcast_to(np.log(s), (starts, L)),
        log_lin=np.broadcast_to(np.log(s**2 / d)[None, :, None], (starts, L, d)),
        log_sigma=np.broadcast_to(np.log(np.maximum(sigma0, 1e-4)), (starts, L)),
        log_mix_sd=np.broadcast_to(np.log(s / 3), (starts, L)),
    )
    return jax.tree.map(lambda x: jnp.asarray(np.array(x), jnp.float64), h)


def _as_fits(prior) -> list[FitResult]:
    if prior is None:
        return []
    items = prior if isinstance(prior, (list, tuple)) else [prior]
    return [load_fit(p) if isinstance(p, (str, os.PathLike)) else p for p in items]


def emulate(
    cube: xr.Dataset,
    *,
    prior: FitResult | str | os.PathLike | Sequence[FitResult | str | os.PathLike] | None = None,
    steps: int = 500,
    lr: float = 0.03,
    starts: int = gp.N_HYPER_STARTS,
    warn_factor: float = EXTRAPOLATION_WARN,
    limit_factor: float = EXTRAPOLATION_LIMIT,
    max_prior_draws: int = 32,
    seed: int = 0,
) -> Surrogate:
    """Train the emulator on a run cube's final checkpoints.

    Parameters
    ----------
    cube
        A run cube (any number of evaluation and training languages; names are free-form).
    prior
        Optional fit(s) (results or paths) whose law's posterior becomes the mean function of their
        target languages; the other languages get a constant mean.
    steps, lr, starts
        Adam steps and learning rate of the hyperparameter fit, length-scale starts per language.
    warn_factor, limit_factor
        Queries beyond the trained N or D range by more than these factors warn / are refused.
    max_prior_draws
        Posterior draws kept for the mean function (evenly thinned). A prediction evaluates the law
        once per draw, which dominates its cost: 32 draws estimate the law's posterior sd to ~13%
        (Monte Carlo) and keep 10,000 configurations under 100 ms (BENCHMARKS.md, "Surrogate").
    seed
        Seed of the reference mixtures and hyperparameter draws behind the latent-variance factor
        (:func:`surrogate.gp.laplace_var_scale`).

    Examples
    --------
    >>> import jax
    >>> from surrogate.synthetic import multilingual_cube
    >>> cube = multilingual_cube(key=jax.random.key(0), langs=("en", "fr"), sizes=(1e7, 1e8), budgets=(1e9, 1e10), n_random=2)
    >>> model = emulate(cube, steps=100)
    >>> pred = model.predict(N=5e7, D=3e9, mix={"en": 0.3, "fr": 0.7})
    >>> bool((pred["lower"] < pred["median"]).all() and (pred["median"] < pred["upper"]).all())
    True
    """
    if not (1 <= warn_factor <= limit_factor):
        raise ValueError(f"need 1 <= warn_factor <= limit_factor; got {warn_factor} and {limit_factor}")
    train = _training_arrays(cube)
    langs = tuple(cube_lib.languages(cube))
    srcs = tuple(str(s) for s in cube["src"].values)
    with jax.enable_x64(True):
        spec = make_spec(train["N"], train["D"], train["mix"], train["U"], train["finetune"], srcs=srcs)
        priors = priors_from_fits(_as_fits(prior), langs, max_draws=max_prior_draws)
        log_loss = np.log(train["loss"])
        const = np.array([np.nanmean(log_loss[:, j]) if np.isfinite(log_loss[:, j]).any() else 0.0 for j in range(len(langs))])
        data, _ = _assemble(spec, langs, priors, const, None, train)
        law_noise = np.array([np.sqrt(np.mean(np.asarray(priors[lang].sigma, float) ** 2)) if lang in priors else np.nan
                              for lang in langs])
        h0 = _initial_hyper(data, starts, law_noise)
        hyper, log_post = gp.fit_hyper(h0, data, steps=steps, lr=lr)
        if not np.all(np.isfinite(np.asarray(log_post))):
            bad = langs[int(np.argmin(np.isfinite(np.asarray(log_post))))]
            raise ValueError(f"the emulator's hyperparameter fit diverged for {bad!r}; check its losses (units, outliers)")
        ref, ref_keys = _reference_configs(train, key=jax.random.key(seed))
        var_scale = gp.laplace_var_scale(hyper, jax.tree.map(lambda x: x[0], h0), data, _features_jit(spec, *ref), ref_keys,
                                         key=jax.random.fold_in(jax.random.key(seed), 1))
        data, state = _assemble(spec, langs, priors, const, hyper, train, var_scale=var_scale)
        diag = _diagnostics(state, langs, spec, np.asarray(log_post))
    return _make(spec, langs, str(cube["loss"].attrs.get("units", "")), state, priors, const, train,
                 dict(warn_factor=warn_factor, limit_factor=limit_factor, steps=steps, lr=lr, starts=starts, seed=seed), diag)


def _make(spec, langs, units, state, priors, const, train, options, diag) -> Surrogate:
    S = len(spec.srcs)
    default_U = np.empty(S)
    for j in range(S):
        vals = np.unique(train["U"][:, j])
        # one budget: that one; several including fresh data: fresh data (as a fit's prediction
        # defaults to); several finite ones only: none (the query must say)
        default_U[j] = vals[0] if len(vals) == 1 else (np.inf if np.isinf(vals).any() else np.nan)
    kinds = tuple(k for k, flag in (("pretrain", 0.0), ("finetune", 1.0)) if np.any(train["finetune"] == flag))
    ranges = {"N": (float(train["N"].min()), float(train["N"].max())), "D": (float(train["D"].min()), float(train["D"].max()))}
    return Surrogate(spec=spec, langs=tuple(langs), units=units, state=state, priors=priors, const=np.asarray(const, float),
                     train=train, ranges=ranges, default_U=default_U, kinds=kinds, options=options, diagnostics=diag)


def _diagnostics(state: gp.State, langs, spec: FeatureSpec, log_post) -> dict[str, Any]:
    """Leave-one-out checks (closed form) and the fitted hyperparameters, per language."""
    mu, var = (np.asarray(a) for a in gp.loo(state))
    r, m = np.asarray(state.data.r), np.asarray(state.data.m)
    z90 = stats.norm.ppf(0.95)
    out = {}
    for j, lang in enumerate(langs):
        obs = m[j] > 0
        err = r[j, obs] - mu[j, obs]
        h = jax.tree.map(lambda x: np.asarray(x[j]), state.hyper)
        out[lang] = {
            "n_obs": int(obs.sum()),
            "loo_rmse_log": float(np.sqrt(np.mean(err**2))),
            "loo_coverage90": float(np.mean(np.abs(err) <= z90 * np.sqrt(var[j, obs]))),
            "sigma": float(gp.sigma_of(jax.tree.map(jnp.asarray, h))),
            "amplitude": float(np.exp(h.log_amp)),
            "mixture_effect_sd": float(np.exp(h.log_mix_sd)),
            "latent_var_scale": float(state.var_scale[j]),
            "length_scales": {name: float(np.exp(v)) for name, v in zip(spec.names, h.log_ell)},
            "log_posterior": float(log_post[j]),
        }
    return out


def from_fit(fit: FitResult | str | os.PathLike | Sequence[FitResult | str | os.PathLike]) -> Surrogate:
    """A law-only model: a fit's posterior as a :class:`Surrogate` (no GP), for planning on a fit file."""
    fits = _as_fits(fit)
    cube = fits[0].cube
    train = _training_arrays(cube)
    langs = tuple(t for f in fits for t in f.targets)
    srcs = tuple(str(s) for s in cube["src"].values)
    with jax.enable_x64(True):
        spec = make_spec(train["N"], train["D"], train["mix"], train["U"], train["finetune"], srcs=srcs)
    priors = priors_from_fits(fits, langs, max_draws=10**9)
    keep = [cube_lib.languages(cube).index(t) for t in langs]
    train = dict(train, loss=train["loss"][:, keep])
    return _make(spec, langs, fits[0].config.units, None, priors, np.zeros(len(langs)), train,
                 dict(warn_factor=EXTRAPOLATION_WARN, limit_factor=EXTRAPOLATION_LIMIT), {})
