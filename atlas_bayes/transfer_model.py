"""A hierarchical model of the transfer matrix: predict the pairs nobody ran, with intervals.

Measured scores ``y[t, s]`` (with their standard errors ``se[t, s]``) are modelled as

.. math::
    y_{ts} \\sim \\mathcal{N}(\\mu_{ts}, \\sqrt{\\sigma^2 + se_{ts}^2}), \\qquad
    \\mu_{ts} = \\mu + a_t + b_s + \\sum_f \\gamma_f x_{f,ts}

with a target effect ``a_t ~ N(0, sd_target)`` (how much any source helps ``t``), a source effect
``b_s ~ N(0, sd_source)`` (how good a donor ``s`` is), pair features ``x_f`` (shared script,
shared family, ... from :mod:`atlas_bayes.languages`) with effects ``gamma_f``, and a pair-specific
residual ``sigma``. An unmeasured cell's score is predicted as ``mu_ts + sigma eps``: its interval
holds the uncertainty of every effect plus the pair's own unexplained part. The paper filled most
of its 38 x 38 matrix with a random forest and no error bars; :func:`holdout_check` measures how
well this model predicts held-out cells of that matrix, and how often its intervals cover them.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files

import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes import languages
from atlas_bayes.nuts import interval, run_nuts, warn_diagnostics

__all__ = [
    "ROUNDING_SE",
    "PAPER_MEASURED",
    "paper_matrix",
    "transfer_matrix_model",
    "fit_transfer_matrix",
    "fit_transfer_model",
    "holdout_check",
    "summarise",
]

ROUNDING_SE = 0.1 / np.sqrt(12.0)  # sd of the error of a value rounded to 0.1 (the paper's matrix)
PAPER_MEASURED = ("en", "ru", "es", "fr", "de", "pt", "zh", "vi", "ja")  # the 9 x 9 block the paper measured
DEFAULT_FEATURES = ("shared_script", "shared_family")


def paper_matrix() -> pd.DataFrame:
    """The ATLAS paper's 38 x 38 BTS matrix (rows = target, columns = source; NaN diagonal)."""
    df = pd.read_csv(files("atlas_bayes") / "data" / "paper_transfer_matrix.csv", index_col=0, na_values=["NA"])
    df.index.name, df.columns.name = "target", "source"
    return df.astype(float)


def transfer_matrix_model(target, source, x, se, n_target, n_source, centered=True, bts=None):
    """NumPyro model of :mod:`this module <atlas_bayes.transfer_model>`, over the observed cells.

    ``target``/``source`` index each cell's languages, ``x`` is ``(cell, feature)``, ``se`` the
    cells' measurement errors; ``bts`` the observed scores (``None`` for prior predictive).
    ``centered=False`` samples the language effects non-centred (better when each language has
    only a few measured cells; :func:`fit_transfer_matrix` chooses).
    """
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer.reparam import LocScaleReparam

    if not centered:
        reparam = {"a": LocScaleReparam(centered=0), "b": LocScaleReparam(centered=0)}
        with numpyro.handlers.reparam(config=reparam):
            return transfer_matrix_model(target, source, x, se, n_target, n_source, True, bts)

    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sd_target = numpyro.sample("sd_target", dist.HalfNormal(0.5))
    sd_source = numpyro.sample("sd_source", dist.HalfNormal(0.5))
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.5))
    with numpyro.plate("target_lang", n_target):
        a = numpyro.sample("a", dist.Normal(0.0, sd_target))
    with numpyro.plate("source_lang", n_source):
        b = numpyro.sample("b", dist.Normal(0.0, sd_source))
    mean = mu + a[target] + b[source]
    if x.shape[1]:
        with numpyro.plate("effect", x.shape[1]):
            gamma = numpyro.sample("gamma", dist.Normal(0.0, 0.5))
        mean = mean + x @ gamma
    with numpyro.plate("cell", len(target)):
        numpyro.sample("bts", dist.Normal(mean, jnp.sqrt(sigma**2 + se**2)), obs=bts)


def fit_transfer_matrix(
    values: pd.DataFrame,
    *,
    se: pd.DataFrame | float = ROUNDING_SE,
    features: Sequence[str] = DEFAULT_FEATURES,
    cube: xr.Dataset | None = None,
    meta: pd.DataFrame | None = None,
    level: float = 0.9,
    draws: int = 1000,
    warmup: int = 1000,
    chains: int = 2,
    seed: int = 0,
    target_accept: float = 0.99,
    lower: pd.DataFrame | None = None,
    upper: pd.DataFrame | None = None,
) -> xr.Dataset:
    """Fit the hierarchical model to a square ``(target x source)`` matrix with NaN where unmeasured.

    ``se`` is each measured cell's standard error (a matrix or one number). Pair features come from
    :func:`atlas_bayes.languages.pair_features` (metadata from ``meta``, else the cube's attrs,
    else the shipped table). ``lower``/``upper`` (optional) are the measured cells' own intervals,
    used for the ``filled_*`` variables.

    Returns an ``xr.Dataset``: ``pred(target, source, model_draw)`` predictive draws of every
    cell's score and their ``pred_mean, pred_sd, pred_lower, pred_upper``; ``filled_mean/lower/upper``
    (measured cells as measured, the rest predicted) and ``measured``; the effects
    ``param_draws(param, model_draw)`` with ``param_mean/lower/upper`` for ``mu, sd_target,
    sd_source, sigma`` and each feature; ``target_effect_*`` and ``source_effect_*``. Attrs: ``level``,
    ``features``, ``diagnostics``.

    ``target_accept`` is high by default: with a few precisely measured cells the posterior has
    narrow regions that only small steps explore (on the demo sweep's matrix, 4 chains x 1000 draws:
    31 divergences at 0.9, 6 at 0.95, 1 at 0.99; over three seeds 0-2 at 0.99 and none at 0.995, which
    ``atlas demo`` uses), and the model has ~20 parameters, so the smaller
    steps cost seconds.
    """
    langs = [str(x) for x in values.index]
    if [str(c) for c in values.columns] != langs:
        raise ValueError(f"the transfer matrix must be square with the same languages on both axes; rows {langs}, "
                         f"columns {[str(c) for c in values.columns]}")
    n = len(langs)
    y = values.to_numpy(dtype=float).copy()
    np.fill_diagonal(y, np.nan)
    se_m = np.broadcast_to(np.asarray(se.to_numpy(dtype=float) if isinstance(se, pd.DataFrame) else se, dtype=float), (n, n))
    obs = np.isfinite(y)
    if obs.sum() < 3:
        raise ValueError(f"the hierarchical transfer model needs at least 3 measured cells; got {int(obs.sum())}")
    feats = languages.pair_features(langs, features=features, cube=cube, meta=meta)
    X = np.stack([feats[f] for f in features], axis=-1) if features else np.zeros((n, n, 0))
    ti, si = np.nonzero(obs)
    if np.any(~np.isfinite(se_m[ti, si]) | (se_m[ti, si] < 0)):
        raise ValueError("se must be a finite non-negative standard error for every measured cell")
    import jax.numpy as jnp

    run = run_nuts(
        transfer_matrix_model, seed=seed, warmup=warmup, draws=draws, chains=chains, dense_mass=True,
        target_accept=target_accept,
        target=jnp.asarray(ti), source=jnp.asarray(si), x=jnp.asarray(X[ti, si], dtype=jnp.float32),
        se=jnp.asarray(se_m[ti, si], dtype=jnp.float32), n_target=n, n_source=n, bts=jnp.asarray(y[ti, si], dtype=jnp.float32),
        # Data-rich effects sample best centred, sparse ones non-centred (the funnel).
        centered=bool(obs.sum() >= 4 * n), skip=("a_decentered", "b_decentered"),
    )
    warn_diagnostics(run.diagnostics, what="hierarchical transfer model", stacklevel=2)
    p = {k: v.reshape((-1,) + v.shape[2:]).astype(float) for k, v in run.samples.items()}
    S = p["mu"].shape[0]
    a, b = p["a"], p["b"]  # (S, n) target and source effects
    gamma = p.get("gamma", np.zeros((S, 0)))
    mean = p["mu"][:, None, None] + a[:, :, None] + b[:, None, :] + np.einsum("ijf,sf->sij", X, gamma)
    eps = np.random.default_rng(seed).standard_normal(mean.shape)
    pred = mean + p["sigma"][:, None, None] * eps
    off = ~np.eye(n, dtype=bool)
    pred = np.where(off[None], pred, np.nan)
    pred = np.moveaxis(pred, 0, -1)  # (target, source, draw)
    pl, pu = np.full((n, n), np.nan), np.full((n, n), np.nan)
    pl[off], pu[off] = interval(pred[off], level)
    pm, ps = np.full((n, n), np.nan), np.full((n, n), np.nan)
    pm[off], ps[off] = pred[off].mean(-1), pred[off].std(-1, ddof=1)
    lo_in = y if lower is None else lower.to_numpy(dtype=float)
    hi_in = y if upper is None else upper.to_numpy(dtype=float)
    names = ["mu", "sd_target", "sd_source", "sigma", *features]
    param_draws = np.concatenate([np.stack([p[k] for k in names[:4]]), gamma.T], axis=0)
    plo, phi = interval(param_draws, level)
    tlo, thi = interval(a.T, level)
    slo, shi = interval(b.T, level)
    L = ("target", "source")
    return xr.Dataset(
        {
            "pred": (L + ("model_draw",), pred),
            "pred_mean": (L, pm), "pred_sd": (L, ps), "pred_lower": (L, pl), "pred_upper": (L, pu),
            "measured": (L, obs),
            "observed": (L, y),
            "filled_mean": (L, np.where(obs, y, pm)),
            "filled_lower": (L, np.where(obs, lo_in, pl)),
            "filled_upper": (L, np.where(obs, hi_in, pu)),
            "param_draws": (("param", "model_draw"), param_draws),
            "param_mean": (("param",), param_draws.mean(-1)),
            "param_lower": (("param",), plo), "param_upper": (("param",), phi),
            "target_effect_mean": (("target",), a.mean(0)),
            "target_effect_lower": (("target",), tlo), "target_effect_upper": (("target",), thi),
            "source_effect_mean": (("source",), b.mean(0)),
            "source_effect_lower": (("source",), slo), "source_effect_upper": (("source",), shi),
        },
        coords={"target": np.asarray(langs, dtype=object), "source": np.asarray(langs, dtype=object),
                "param": np.asarray(names, dtype=object), "model_draw": np.arange(S)},
        attrs={"analysis": "transfer_model", "level": level, "features": list(features), "n_measured": int(obs.sum()),
               "diagnostics": run.diagnostics},
    )


def fit_transfer_model(scores: xr.Dataset, *, horizon: float | None = None, cube: xr.Dataset | None = None,
                       features: Sequence[str] = DEFAULT_FEATURES, **options) -> xr.Dataset:
    """:func:`fit_transfer_matrix` on a result of :func:`atlas_bayes.transfer.transfer_scores`
    (posterior means as the measurements, posterior sds as their errors) at one horizon."""
    from atlas_bayes.transfer import _horizon_index

    h = _horizon_index(scores, horizon)
    sel = scores.isel(horizon=h)
    frame = lambda v: sel[v].to_pandas().astype(float)  # noqa: E731
    values = frame("mean").where(sel["measured"].to_pandas())
    ds = fit_transfer_matrix(values, se=frame("sd").fillna(0.0), cube=cube, features=features,
                             lower=frame("lower"), upper=frame("upper"), **options)
    ds.attrs["horizon"] = float(sel["horizon"])
    return ds


def _additive_baseline(y: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Least-squares ``mu + a_t + b_s`` on the training cells (a plain non-Bayesian baseline)."""
    n = y.shape[0]
    ti, si = np.nonzero(train)
    A = np.zeros((len(ti), 2 * n + 1))
    A[:, 0] = 1.0
    A[np.arange(len(ti)), 1 + ti] = 1.0
    A[np.arange(len(ti)), 1 + n + si] = 1.0
    coef = np.linalg.lstsq(A, y[ti, si], rcond=None)[0]
    return coef[0] + coef[1 : n + 1][:, None] + coef[n + 1 :][None, :]


def holdout_check(
    values: pd.DataFrame,
    *,
    test: np.ndarray | None = None,
    frac: float = 0.2,
    seed: int = 0,
    se: float = ROUNDING_SE,
    level: float = 0.9,
    features: Sequence[str] = DEFAULT_FEATURES,
    **options,
) -> dict:
    """Hold cells of a measured matrix out, predict them, and score the predictions.

    ``test`` is a boolean ``(n, n)`` mask of held-out cells (default: a random ``frac`` of the
    off-diagonal cells). A held-out value is compared with the predictive distribution of a new
    *measurement* (the cell's prediction plus its rounding error ``se``). Returns ``mae``, ``rmse``,
    ``coverage`` (share of held-out values inside the central ``level`` interval), ``mean_width``,
    the same errors for the additive least-squares baseline and for the training mean, the
    features' effects with intervals, and the fit's diagnostics.
    """
    y = values.to_numpy(dtype=float)
    n = y.shape[0]
    known = np.isfinite(y) & ~np.eye(n, dtype=bool)
    if test is None:
        rng = np.random.default_rng(seed)
        test = known & (rng.random((n, n)) < frac)
    test = np.asarray(test, dtype=bool) & known
    train = known & ~test
    if not test.any():
        raise ValueError("no held-out cells: give a test mask with measured off-diagonal cells, or a larger frac")
    ds = fit_transfer_matrix(values.where(train), se=se, level=level, features=features, seed=seed, **options)
    pred = ds["pred"].values[test]  # (cell, draw)
    pred = pred + se * np.random.default_rng(seed + 1).standard_normal(pred.shape)
    lo, hi = interval(pred, level)
    truth = y[test]
    err = pred.mean(-1) - truth
    base = _additive_baseline(y, train)[test] - truth
    effects = {
        str(name): {"mean": float(ds["param_mean"].sel(param=name)), "lower": float(ds["param_lower"].sel(param=name)),
                    "upper": float(ds["param_upper"].sel(param=name))}
        for name in ds["param"].values
    }
    return {
        "n_train": int(train.sum()),
        "n_test": int(test.sum()),
        "level": level,
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "coverage": float(((truth >= lo) & (truth <= hi)).mean()),
        "mean_width": float((hi - lo).mean()),
        "baseline_additive_mae": float(np.abs(base).mean()),
        "baseline_mean_mae": float(np.abs(y[train].mean() - truth).mean()),
        "effects": effects,
        "diagnostics": {k: v for k, v in ds.attrs["diagnostics"].items()},
    }


def summarise(model: xr.Dataset) -> dict:
    """The model's effects with intervals, its predictions of the unmeasured cells and diagnostics, as a dict."""
    params = {str(p): {"mean": float(model["param_mean"].sel(param=p)), "lower": float(model["param_lower"].sel(param=p)),
                       "upper": float(model["param_upper"].sel(param=p))} for p in model["param"].values}
    predicted = []
    meas = model["measured"].values
    for i, t in enumerate(model["target"].values):
        for j, s in enumerate(model["source"].values):
            if i != j and not meas[i, j]:
                predicted.append({"target": str(t), "source": str(s), "mean": float(model["pred_mean"].values[i, j]),
                                  "lower": float(model["pred_lower"].values[i, j]),
                                  "upper": float(model["pred_upper"].values[i, j])})
    return {"features": list(model.attrs["features"]), "level": model.attrs["level"], "params": params,
            "predicted": predicted, "diagnostics": dict(model.attrs["diagnostics"])}
