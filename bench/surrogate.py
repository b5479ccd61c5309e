"""Surrogate quality and speed, side by side in one run: emulator, ATLAS posterior alone, emulator + ATLAS mean.

1. A simulated six-language world (:func:`surrogate.synthetic.multilingual_cube`: ATLAS plus the
   curse-of-multilinguality capacity term ATLAS lacks, noise sd 0.01 on log-loss; 4 sizes x 3
   token budgets x 42 mixtures = 504 runs). The R^2(M) split of SPEC section 4: train on the
   monolingual, bilingual and uniform mixtures, score on every other mixture. For each method:
   held-out RMSE (loss and log-loss), R^2 averaged over target languages (the paper's R^2(M)),
   and the coverage of the central 90% interval of a new run's loss.
   The ATLAS posterior is the joint NUTS fit of every target (``--posterior nuts``, the default:
   :func:`atlas_bayes.inference.fit_bayes`, its R-hat, ESS and divergences reported) or one point
   fit per language with a bootstrap (``--posterior point``), queried through
   ``atlas_bayes.predict.predict``; the emulator + ATLAS uses the same posterior as its mean function.
2. Speed: the emulator (GP + ATLAS mean) predicting 10,000 random configurations (every language,
   mean and sd) after compilation, median of repeated calls; the core (arrays in, moments out) in
   float32 (the default of ``Surrogate.predict``; the headline) and float64, with float32's largest
   deviation from float64, and the full labelled ``Surrogate.predict`` (validation, xarray).
3. The library choice: a deep ensemble of small Haiku MLPs on the same features (the alternative
   the issue names), scored on the same split and timed the same way.
4. RegMix (Liu et al. 2024, MIT; ``--regmix FOLDER``, skipped when not given): 512 training mixtures over 17 Pile domains
   of 1M-parameter models, 256 held-out mixtures, 13 evaluation domains -- domains as languages.
   The emulator against a per-domain linear regression on the mixture weights (RegMix's linear
   variant, Gaussian interval from its residual sd); Spearman rank correlation per domain is
   comparable to the LightGBM numbers in the data's SOURCE.md (Pile-CC 98.92).

``--json`` prints one line: ``{"predict_10k_ms", "coverage90", ...}`` (the headline numbers are the
emulator with the ATLAS mean's; every method's are under ``"simulated"``).

    .venv/bin/python bench/surrogate.py --regmix /work/shared/datasets/regmix --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# surrogate package: drop the folder before importing it.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

import surrogate  # noqa: E402
from atlas_bayes import cube as cube_lib  # noqa: E402
from atlas_bayes import point  # noqa: E402
from atlas_bayes import predict as predict_lib  # noqa: E402
from surrogate.emulator import SHARE_WARN  # noqa: E402
from surrogate.synthetic import held_out_mixture, multilingual_cube  # noqa: E402


def _metrics(y: np.ndarray, mean: np.ndarray, lower: np.ndarray, upper: np.ndarray, in_range: np.ndarray | None = None) -> dict:
    """Held-out scores over finite cells of ``(run, lang)`` arrays; R^2 is averaged over languages.

    ``in_range``: cells whose language's share is not below half the smallest share of any training
    run scored on it (the emulator's extrapolation warning); coverage is also given on each side.
    """
    ok = np.isfinite(y) & np.isfinite(mean)
    pos = ok & (mean > 0)  # a linear regression can predict a negative loss: no log error there
    r2 = []
    for j in range(y.shape[1]):
        o = ok[:, j]
        if o.sum() > 1:
            r2.append(1 - np.sum((y[o, j] - mean[o, j]) ** 2) / np.sum((y[o, j] - y[o, j].mean()) ** 2))
    inside = (y[ok] >= lower[ok]) & (y[ok] <= upper[ok])
    split = {}
    if in_range is not None:
        inside_all = (y >= lower) & (y <= upper)
        split = {"coverage90_share_in_range": float(inside_all[ok & in_range].mean()),
                 "coverage90_share_extrapolated": float(inside_all[ok & ~in_range].mean()),
                 "cells_share_extrapolated": int((ok & ~in_range).sum())}
    return split | {
        "rmse": float(np.sqrt(np.mean((y[ok] - mean[ok]) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(y[pos]) - np.log(mean[pos])) ** 2))),
        "median_abs_log_error": float(np.median(np.abs(np.log(y[pos]) - np.log(mean[pos])))),
        "r2": float(np.mean(r2)),
        "coverage90": float(inside.mean()),
        "interval_width_rel": float(np.median((upper[ok] - lower[ok]) / mean[ok])),
        "cells": int(ok.sum()),
    }


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught})


def _atlas_fits(train, langs, args):
    t0 = time.perf_counter()
    notes = []
    if args.posterior == "nuts":
        from atlas_bayes.inference import fit_bayes

        fit, w = _quiet(fit_bayes, train, "atlas", target="all", pooling=args.pooling, num_chains=args.chains,
                        num_warmup=args.warmup, num_samples=args.draws, target_accept=args.target_accept, seed=args.seed)
        fits, notes = [fit], w
    else:
        fits = []
        for lang in langs:
            fit, w = _quiet(point.fit_point, train, "atlas", target=lang, bootstrap=args.bootstrap, max_starts=args.max_starts)
            fits.append(fit)
            notes += w
    return fits, time.perf_counter() - t0, notes


def _posterior_predict(fits, test, langs):
    """ATLAS posterior alone, through atlas_bayes.predict (noise included)."""
    out = {k: np.full((test.sizes["run"], len(langs)), np.nan) for k in ("mean", "lower", "upper")}
    srcs = tuple(str(s) for s in test["src"].values)
    configs = predict_lib.Configs(N=test["N"].values, D=test["D"].values, mix=test["mix"].values, U=test["U"].values,
                                  srcs=srcs, lang=None, U_given=np.ones(test["U"].shape, bool))
    for fit in fits:
        ds, _ = _quiet(predict_lib.predict, fit, configs=configs, level=0.9)
        for lang in ds["lang"].values:
            j = langs.index(str(lang))
            for k in out:
                out[k][:, j] = ds[k].sel(lang=lang).values
    return out


def _emulator_predict(model, test):
    ds, _ = _quiet(model.predict, N=test["N"].values, D=test["D"].values, mix=test["mix"].values, U=test["U"].values)
    return {k: ds[k].values for k in ("mean", "lower", "upper")}


class Ensemble:
    """The alternative the issue names: a deep ensemble of small Haiku MLPs (Lakshminarayanan et al. 2017).

    Same standardised features as the GP (:func:`surrogate.features.features`), one network per
    member with a mean and a log-variance head per evaluation language, trained on the log-loss by
    the Gaussian negative log-likelihood (masked where a run is not scored), full batch, Adam; the
    members differ only by their initialisation. Prediction: the members' Gaussian mixture, moment
    matched (mean of the means; mean variance plus the variance of the means), then log-normal as
    the GP's. Haiku is imported here only: it is a benchmark baseline, not part of the package.
    """

    def __init__(self, cube, *, members: int = 8, width: int = 64, steps: int = 3000, lr: float = 3e-3, seed: int = 0):
        import haiku as hk
        import jax.numpy as jnp
        import optax

        from surrogate.features import features, make_spec

        fin = cube_lib.final(cube)
        arrays = [fin[k].values.astype(float) for k in ("N", "D", "mix", "U")] + [np.zeros(fin.sizes["run"])]
        self.srcs = tuple(str(s) for s in cube["src"].values)
        self.langs = cube_lib.languages(cube)
        self.spec = make_spec(*arrays, srcs=self.srcs)
        self._features = jax.jit(lambda *a: features(self.spec, *a))
        z = self._features(*[jnp.asarray(a, jnp.float32) for a in arrays])
        y = np.log(fin["loss"].values.astype(float))
        self.center, self.scale = np.nanmean(y, axis=0), np.nanstd(y, axis=0)
        mask = np.isfinite(y)
        t = jnp.asarray(np.where(mask, (y - self.center) / self.scale, 0.0), jnp.float32)
        m = jnp.asarray(mask, jnp.float32)
        L = len(self.langs)

        def net(x):
            h = hk.nets.MLP([width, width], activation=jax.nn.silu, activate_final=True)(x)
            out = hk.Linear(2 * L)(h)
            return out[:, :L], jnp.clip(out[:, L:], -12.0, 4.0)  # mean, log variance (standardised log-loss)

        self._net = hk.without_apply_rng(hk.transform(net))
        params = jax.vmap(lambda k: self._net.init(k, z))(jax.random.split(jax.random.key(seed), members))
        opt = optax.adamw(lr, weight_decay=1e-4)

        def loss_fn(p):
            mu, log_var = self._net.apply(p, z)
            nll = 0.5 * (log_var + (t - mu) ** 2 * jnp.exp(-log_var))
            return jnp.sum(nll * m) / jnp.sum(m)

        @jax.jit
        def train(params):
            def step(carry, _):
                p, s = carry
                loss, g = jax.vmap(jax.value_and_grad(loss_fn))(p)
                upd, s = jax.vmap(opt.update)(g, s, p)
                return (optax.apply_updates(p, upd), s), loss

            (p, _), losses = jax.lax.scan(step, (params, jax.vmap(opt.init)(params)), None, length=steps)
            return p, losses[-1]

        self.params, self.final_nll = train(params)

        @jax.jit
        def moments(params, N, D, mix, U):
            x = self._features(N, D, mix, U, jnp.zeros_like(N))
            mu, log_var = jax.vmap(lambda p: self._net.apply(p, x))(params)  # (members, n, L)
            mean = mu.mean(axis=0)
            var = jnp.exp(log_var).mean(axis=0) + mu.var(axis=0)
            return mean, var

        self._moments = moments

    def log_moments(self, N, D, mix, U):
        import jax.numpy as jnp

        mean, var = self._moments(self.params, *[jnp.asarray(a, jnp.float32) for a in (N, D, mix, U)])
        return np.asarray(mean) * self.scale + self.center, np.asarray(var) * self.scale**2

    def predict(self, N, D, mix, U) -> dict:
        mean, var = self.log_moments(N, D, mix, U)
        z = stats.norm.ppf(0.95)
        sd = np.sqrt(var)
        return {"mean": np.exp(mean + var / 2), "lower": np.exp(mean - z * sd), "upper": np.exp(mean + z * sd)}


def _ensemble(train, test, args) -> tuple[dict, float, dict]:
    t0 = time.perf_counter()
    ens = Ensemble(train, members=args.members, steps=args.ensemble_steps, seed=args.seed)
    jax.block_until_ready(ens.params)
    seconds = time.perf_counter() - t0
    pred = ens.predict(test["N"].values, test["D"].values, test["mix"].values, test["U"].values)
    y = test["loss"].values
    pred = {k: np.where(np.isfinite(y), v, np.nan) for k, v in pred.items()}
    rng = np.random.default_rng(0)
    n = 10_000
    (n_lo, n_hi), (d_lo, d_hi) = (float(train["N"].min()), float(train["N"].max())), (float(train["D"].min()), float(train["D"].max()))
    N = np.exp(rng.uniform(np.log(n_lo), np.log(n_hi), n))
    D = np.exp(rng.uniform(np.log(d_lo), np.log(d_hi), n))
    mix = rng.dirichlet(np.ones(len(ens.srcs)), n)
    U = np.broadcast_to(np.nanmin(np.where(np.isfinite(train["U"].values), train["U"].values, np.inf), axis=0), mix.shape)
    ens.log_moments(N, D, mix, U)  # compile
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        ens.log_moments(N, D, mix, U)
        times.append(time.perf_counter() - t0)
    timing = {"predict_10k_ms": 1000 * float(np.median(times)), "members": args.members, "steps": args.ensemble_steps,
              "final_train_nll": float(np.min(np.asarray(ens.final_nll)))}
    return pred, seconds, timing


def _timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _timing(model, n: int = 10_000, repeats: int = 9) -> dict:
    """Predicting ``n`` random configurations inside the trained ranges: every language, mean and variance."""
    rng = np.random.default_rng(0)
    (n_lo, n_hi), (d_lo, d_hi) = model.ranges["N"], model.ranges["D"]
    N = np.exp(rng.uniform(np.log(n_lo), np.log(n_hi), n))
    D = np.exp(rng.uniform(np.log(d_lo), np.log(d_hi), n))
    mix = rng.dirichlet(np.ones(len(model.srcs)), n)
    checked = model.check_configs(N, D, mix)[:5]
    out = {"configs": n, "languages": len(model.langs), "training_cells_per_language": int(model.state.data.m.shape[1])}
    moments = {}
    for precision in ("float32", "float64"):
        moments[precision] = model.log_moments(*checked, precision=precision)  # compiles
        times = _timed(lambda: model.log_moments(*checked, precision=precision), repeats)
        key = "predict_10k_ms" if precision == "float32" else "predict_10k_ms_float64"
        out[key], out[key + "_min"] = 1000 * float(np.median(times)), 1000 * float(np.min(times))
    _quiet(model.predict, N=N, D=D, mix=mix)
    full = _timed(lambda: _quiet(model.predict, N=N, D=D, mix=mix), max(repeats // 3, 1))
    out["predict_10k_ms_full_dataset"] = 1000 * float(np.median(full))
    (m32, v32, s32), (m64, v64, s64) = moments["float32"], moments["float64"]
    sd64 = np.sqrt(v64 + s64)
    out["float32_error"] = {"max_mean_over_sd": float(np.max(np.abs(m32 - m64) / sd64)),
                            "max_rel_sd": float(np.max(np.abs(np.sqrt(v32 + s32) - sd64) / sd64)),
                            "max_rel_latent_sd": float(np.max(np.abs(np.sqrt(v32) - np.sqrt(v64)) / np.sqrt(v64)))}
    return out


def simulated(args) -> dict:
    cube = multilingual_cube(key=jax.random.key(args.seed))
    hold = held_out_mixture(cube["mix"].values)
    train, test = cube.isel(run=np.flatnonzero(~hold)), cube.isel(run=np.flatnonzero(hold))
    langs = cube_lib.languages(cube)
    y = test["loss"].values
    fits, t_fit, notes = _atlas_fits(train, langs, args)
    from atlas_bayes import results as results_lib

    diag = [results_lib.diagnostics(f) for f in fits]
    t0 = time.perf_counter()
    gp_alone = surrogate.emulate(train, steps=args.steps)
    t_gp = time.perf_counter() - t0
    # cells where the emulator warns of share extrapolation (Surrogate.min_share, SHARE_WARN)
    w, floor = test["mix"].values, gp_alone.min_share
    in_range = np.stack([w[:, gp_alone.srcs.index(lang)] >= SHARE_WARN * floor[lang] if lang in floor else np.ones(len(w), bool)
                         for lang in langs], axis=1)
    results = {"atlas_posterior": _metrics(y, **_posterior_predict(fits, test, langs), in_range=in_range)}
    results["emulator"] = _metrics(y, **_emulator_predict(gp_alone, test), in_range=in_range)
    t0 = time.perf_counter()
    gp_atlas = surrogate.emulate(train, prior=fits, steps=args.steps)
    t_gp_atlas = time.perf_counter() - t0
    results["emulator_atlas_mean"] = _metrics(y, **_emulator_predict(gp_atlas, test), in_range=in_range)
    ens_pred, t_ens, ens_timing = _ensemble(train, test, args)
    results["haiku_ensemble"] = _metrics(y, **ens_pred, in_range=in_range)
    return {
        "runs_train": int(train.sizes["run"]), "runs_test": int(test.sizes["run"]), "languages": langs,
        "posterior": args.posterior, "posterior_diagnostics": diag if args.posterior == "nuts" else None, "methods": results,
        "seconds": {"atlas_fits": t_fit, "emulator": t_gp, "emulator_atlas_mean": t_gp_atlas, "haiku_ensemble": t_ens},
        "timing": _timing(gp_atlas), "timing_emulator_alone": _timing(gp_alone), "timing_haiku_ensemble": ens_timing,
        "fit_warnings": notes[:10],
    }


def _regmix_cube(folder: Path, split: str):
    mix = pd.read_csv(folder / f"{split}_mixture_1m.csv").set_index("index")
    loss = pd.read_csv(folder / f"{split}_pile_loss_1m.csv").set_index("index").loc[mix.index]
    srcs = [c.removeprefix("train_the_pile_") for c in mix.columns]
    langs = [c.removeprefix("metric/the_pile_").removesuffix("_val_loss") for c in loss.columns]
    w = mix.to_numpy(float)
    w = w / w.sum(axis=1, keepdims=True)  # the files round weights to 3 digits
    n = len(mix)
    # One model size and token budget throughout (1M-parameter proxies; the budget is in the paper,
    # not the files): nominal N and D, constant, so the emulator drops them as inputs.
    return cube_lib.make_cube(loss=loss.to_numpy(float), N=np.full(n, 1e6), D=np.full(n, 1e9), mix=w,
                              run=[f"{split}{i}" for i in mix.index], lang=langs, src=srcs)


def regmix(args) -> dict:
    folder = Path(args.regmix)
    train, test = _regmix_cube(folder, "train"), _regmix_cube(folder, "test")
    langs = cube_lib.languages(train)
    y = test["loss"].values
    t0 = time.perf_counter()
    model = surrogate.emulate(train, steps=args.regmix_steps, starts=1)
    t_fit = time.perf_counter() - t0
    pred = _emulator_predict(model, test)
    out = {"emulator": _metrics(y, **pred)}
    # RegMix's linear variant: least squares of each domain's loss on the 17 weights (+ intercept)
    X, Xt = np.c_[np.ones(train.sizes["run"]), train["mix"].values], np.c_[np.ones(test.sizes["run"]), test["mix"].values]
    lin = {k: np.zeros_like(y) for k in ("mean", "lower", "upper")}
    for j in range(len(langs)):
        beta, *_ = np.linalg.lstsq(X, train["loss"].values[:, j], rcond=None)
        resid = train["loss"].values[:, j] - X @ beta
        sd = np.sqrt(np.sum(resid**2) / (len(resid) - X.shape[1]))
        lin["mean"][:, j] = Xt @ beta
        lin["lower"][:, j], lin["upper"][:, j] = Xt @ beta - 1.645 * sd, Xt @ beta + 1.645 * sd
    out["linear_regression"] = _metrics(y, **lin)
    spearman = {lang: float(stats.spearmanr(y[:, j], pred["mean"][:, j]).statistic) for j, lang in enumerate(langs)}
    spearman_lin = {lang: float(stats.spearmanr(y[:, j], lin["mean"][:, j]).statistic) for j, lang in enumerate(langs)}
    return {"runs_train": int(train.sizes["run"]), "runs_test": int(test.sizes["run"]), "domains": langs,
            "sources": [str(s) for s in train["src"].values], "methods": out, "spearman_emulator": spearman,
            "spearman_linear": spearman_lin, "seconds_emulator": t_fit, "timing": _timing(model)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regmix", default=None, help="folder of the RegMix CSVs (e.g. /work/shared/datasets/regmix); skipped if not given")
    parser.add_argument("--posterior", default="nuts", choices=("point", "nuts"), help="how the ATLAS posterior is fitted")
    parser.add_argument("--bootstrap", type=int, default=40, help="point posterior: bootstrap refits per language")
    parser.add_argument("--max-starts", type=int, default=64, help="point posterior: L-BFGS starts (random subset of the grid)")
    parser.add_argument("--chains", type=int, default=4, help="nuts posterior: chains")
    # NUTS settings of the joint six-target ATLAS fit. sw has 1e8 unique tokens, so its effective data
    # saturates and spans a factor ~10 (the others ~60): its E, B, beta (and lam) lie on a curved
    # ridge, with the local curvature along it 80 to 400 times the posterior's (Hessians at draws,
    # whitened by the draws' covariance). At 500 x 0.9: R-hat 1.009, 16 divergences; 0.95: 7; 0.99:
    # none, at a smaller step (bulk ESS ~350 from 500 draws), hence 1000 draws.
    parser.add_argument("--warmup", type=int, default=1000, help="nuts posterior: warmup steps")
    parser.add_argument("--draws", type=int, default=1000, help="nuts posterior: draws per chain")
    parser.add_argument("--target-accept", type=float, default=0.99, help="nuts posterior: target acceptance probability")
    parser.add_argument("--pooling", default="partial", choices=("none", "partial", "full"),
                        help="nuts posterior: pooling of E and exponents across targets (default partial, as fit_bayes; none: one ATLAS per target)")
    parser.add_argument("--steps", type=int, default=500, help="emulator hyperparameter steps")
    parser.add_argument("--members", type=int, default=8, help="Haiku ensemble members")
    parser.add_argument("--ensemble-steps", type=int, default=3000, help="Haiku ensemble Adam steps (full batch)")
    parser.add_argument("--regmix-steps", type=int, default=300, help="emulator steps on RegMix (512 runs x 13 domains)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    sim = simulated(args)
    result = {
        "predict_10k_ms": round(sim["timing"]["predict_10k_ms"], 2),
        "coverage90": round(sim["methods"]["emulator_atlas_mean"]["coverage90"], 3),
        "coverage90_emulator": round(sim["methods"]["emulator"]["coverage90"], 3),
        "coverage90_atlas_posterior": round(sim["methods"]["atlas_posterior"]["coverage90"], 3),
        "coverage90_haiku_ensemble": round(sim["methods"]["haiku_ensemble"]["coverage90"], 3),
        "predict_10k_ms_float64": round(sim["timing"]["predict_10k_ms_float64"], 2),
        "r2m": {k: round(v["r2"], 3) for k, v in sim["methods"].items()},
        "rmse_log": {k: round(v["rmse_log"], 4) for k, v in sim["methods"].items()},
        "simulated": sim,
        "devices": jax.device_count(),
        "cpus": os.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # at start and after the simulated part
    }
    if args.regmix:
        if not (Path(args.regmix) / "train_mixture_1m.csv").exists():
            raise SystemExit(f"--regmix {args.regmix!r}: no train_mixture_1m.csv there (see /work/shared/datasets/regmix/SOURCE.md)")
        result["regmix"] = regmix(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
