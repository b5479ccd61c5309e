"""ATLAS at the paper's scale: simulate runs from published values, fit, query, compare.

What it shows
-------------
1. A run cube drawn from the ATLAS law (``atlas_bayes.simulate``) at the paper's scales: 10M to 8B
   parameters, 5 to 80 tokens per parameter, monolingual and bilingual 50/50 mixtures of en, fr,
   zh and sw, with MADLAD-400's unique-token budgets (so zh, with 125B unique tokens, repeats its
   data in the largest runs and sw, with 770M, hundreds of times) and 1 % log-normal noise. The
   true parameters are published values: E, A, B, alpha, beta of Chinchilla (Hoffmann et al.
   2022; the ATLAS paper prints no base law of its own), lam = 1/R_D* of Muennighoff et al. 2023,
   and each transfer weight tau_s = BTS / (2 - BTS) from the ATLAS paper's transfer matrix (SPEC
   section 2, derived).
2. ``atlas_bayes.fit(..., method="nuts")`` of the full ATLAS law per target language on every run
   but the 8B ones, as the paper's R^2(N) split does (``tau_other`` held at 0: with four
   languages every other language is one of the target's K_t), and whether each parameter's
   credible interval covers the published value.
3. Queries with intervals: the held-out 8B runs (``atlas_bayes.predict.predict``; coverage of the
   intervals and error against the noise-free truth), and the compute-optimal N, D for budgets of
   1e21 and 1e22 FLOPs of monolingual training (``atlas_bayes.optimal.optimal``), against the
   optimum of the true law (for en Chinchilla's closed form; for zh the data-constrained one).

A limit of the law shows up here too: interference is linear in ATLAS (a negative tau times the
source's tokens), while the target's own repeated data saturates. With the published
tau(en -> sw) = -0.26, a 50/50 en/sw run past about 1e11 tokens has a negative effective data
for sw (the law floors it at one token: loss about 400), and the zh, fr, en, sw uniform mixture
is negative for zh at any size (its three taus sum to -1.04). So sw is a source here, not a
target, and there are no uniform mixtures; ``--targets sw`` stops with a message saying why.

How to run
----------
::

    python examples/paper_scale.py                    # en and zh, about a minute on 2 cores
    python examples/paper_scale.py --targets fr,zh --chains 2
    python examples/paper_scale.py --tiny             # en and zh, 4 sizes, SVI (for tests)

What to expect
--------------
Per target, the parameters: posterior mean [90 % interval], the published value and whether it
is covered (all 18 on the default run, R-hat <= 1.004, no divergences; lam of en is only its
prior, since en never repeats data); the 8B runs' predictions (intervals covering 75 % (en) and
92 % (zh) of the 12 observed losses, law means within 0.2 to 0.4 % of the noise-free truth); the
compute-optimal N, D with intervals next to the true optimum. For en that is Chinchilla's closed
form (at 1e22 FLOPs N 5.2e9, D 3.2e11; fitted 5.5e9 [4.1e9, 7.3e9]: Hoffmann et al.'s published
constants give about 60 tokens per parameter, not the famous 20); for zh its 125B unique tokens
(2.4 epochs at that budget) move the optimum to a larger model, N 5.65e9 (fitted 5.7e9 [4.5e9,
7.2e9]). Written to ``--out`` (default ``out/paper_scale``): ``cube.nc``, ``fit_<lang>.nc``,
``params.csv``, ``heldout.csv``, ``optimal.csv`` and ``heldout.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np
import pandas as pd

import atlas_bayes
from atlas_bayes import laws, plots, results, simulate, transfer_model
from atlas_bayes.optimal import optimal, search_optimum
from atlas_bayes.predict import parse_configs, predict

# Unique tokens per language in MADLAD-400 (SPEC section 5).
MADLAD_U = {"en": 2.8e12, "fr": 363e9, "zh": 125e9, "sw": 770e6}
SIZES = (1e7, 3e7, 1e8, 3e8, 1e9, 3e9, 8e9)
TOKENS_PER_PARAM = (5, 20, 80)
BUDGETS = (1e21, 1e22)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--langs", default="en,fr,zh,sw", help="training languages (default en,fr,zh,sw)")
    p.add_argument("--targets", default="en,zh", help="languages to fit (default en,zh)")
    p.add_argument("--sigma", type=float, default=0.01, help="log-loss noise sd (default 0.01)")
    p.add_argument("--method", default="nuts", choices=("nuts", "svi"), help="inference (default nuts)")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--level", type=float, default=0.9, help="credible level (default 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="en and zh, 4 sizes, SVI (for tests)")
    p.add_argument("--out", default="out/paper_scale", help="folder for the files (default out/paper_scale)")
    args = p.parse_args(argv)
    args.langs = [x.strip() for x in args.langs.split(",") if x.strip()]
    args.targets = [x.strip() for x in args.targets.split(",") if x.strip()]
    unknown = [x for x in args.langs + args.targets if x not in MADLAD_U]
    if unknown or not set(args.targets) <= set(args.langs):
        raise SystemExit(f"--langs/--targets: choose among {list(MADLAD_U)}, targets among --langs; got {unknown or args.targets}")
    args.sizes = SIZES
    if args.tiny:
        args.langs, args.targets, args.sizes = ["en", "zh"], ["zh"], (1e7, 1e8, 1e9, 3e9)
        args.method, args.chains, args.draws = "svi", 2, 200
    return args


def published_params(langs) -> dict:
    """The true parameters of each target: Chinchilla's base law, 1/R_D*, tau from the paper's BTS."""
    base = simulate.PAPER["chinchilla"] | {"lam": 1.0 / simulate.PAPER["dcsl"]["R_D_star"], "tau_other": 0.0}
    bts = transfer_model.paper_matrix()  # rows = target, columns = source; "+ 0.0" below turns -0.0 into 0.0
    return {t: base | {f"tau_{s}": float(laws.tau_from_bts(bts.loc[t, s])) + 0.0 for s in langs if s != t} for t in langs}


def mixtures(langs) -> list[dict]:
    """Every monolingual and every 50/50 bilingual mixture."""
    return [{x: 1.0} for x in langs] + [{a: 0.5, b: 0.5} for i, a in enumerate(langs) for b in langs[i + 1:]]


def true_optimum(p: dict, U: float, C: float) -> tuple[float, float]:
    """Compute-optimal N, D of monolingual training under the true law (a one-draw search)."""
    N, _ = search_optimum(lambda N, D: laws.atlas(N, D, U, **{k: p[k] for k in ("E", "A", "B", "alpha", "beta", "lam")}),
                          C, 1)
    return float(N[0]), C / (6 * float(N[0]))


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    truth = published_params(args.langs)

    # 1. Simulate: every size x budget x mixture; the same draw without noise is the truth.
    D = sorted({k * n for n in args.sizes for k in TOKENS_PER_PARAM})
    runs = simulate.grid(N=args.sizes, D=D, mixtures=mixtures(args.langs), U={x: MADLAD_U[x] for x in args.langs})
    keep = np.isclose((runs.D / runs.N)[:, None], TOKENS_PER_PARAM).any(axis=1)  # 5, 20, 80 tokens per parameter
    runs = runs._replace(**{k: v[keep] for k, v in runs._asdict().items() if k != "srcs"})
    key = jax.random.key(args.seed)
    cube = simulate.simulate_cube("atlas", truth, runs, key=key, targets=args.targets, sigma=args.sigma)
    clean = simulate.simulate_cube("atlas", truth, runs, key=key, targets=args.targets, sigma=0.0)
    for t in args.targets:  # a loss near B means the effective data was floored at one token
        if np.nanmax(clean["loss"].sel(lang=t).values) > truth[t]["B"] / 2:
            raise SystemExit(f"target {t}: the published transfer weights make ATLAS's effective data negative for some "
                             "runs (see the docstring); choose other --targets")
    atlas_bayes.save(cube, out / "cube.nc")
    largest = max(args.sizes)
    train = cube.isel(run=np.flatnonzero(cube["N"].values < largest))
    test = np.flatnonzero(cube["N"].values == largest)
    print(f"simulated {cube.sizes['run']} runs of {len(args.sizes)} sizes ({min(args.sizes):.2g} to {largest:.2g} "
          f"parameters) on mixtures of {', '.join(args.langs)}; fitting on the {train.sizes['run']} below {largest:.0e}")

    pct = f"{args.level:.0%}"
    param_rows, heldout_rows, optimal_rows = [], [], []
    for t in args.targets:
        # 2. Fit, and compare each parameter's interval with the published value.
        options = dict(num_chains=args.chains, num_samples=args.draws, seed=args.seed)
        if args.method == "nuts":
            options["num_warmup"] = args.warmup
        fit = atlas_bayes.fit(train, "atlas", method=args.method, target=t, fix={"tau_other": 0.0}, **options)
        fit.save(out / f"fit_{t}.nc")
        table = atlas_bayes.summary(fit, level=args.level)
        d = results.diagnostics(fit)
        shown = (f"max R-hat {d['max_r_hat']:.3f}, min bulk ESS {d['min_ess_bulk']:.0f}, divergences {d['divergences']}"
                 if args.method == "nuts" else f"Pareto k {d['pareto_k']:.2f} (trustworthy below 0.7)")
        print(f"\n== target {t} (U = {MADLAD_U[t]:.3g} unique tokens): ATLAS by {args.method}, {shown}")
        print(f"  {'param':>9} {'posterior mean [' + pct + ']':<32} published")
        for name, row in table.iterrows():
            if row["fixed"] or name not in truth[t]:
                continue
            true = truth[t][name]
            covered = row["lower"] <= true <= row["upper"]
            param_rows.append({"target": t, "param": name, "mean": row["estimate"], "lower": row["lower"],
                               "upper": row["upper"], "published": true, "covered": covered})
            print(f"  {name:>9} {row['estimate']:<8.4g} [{row['lower']:.4g}, {row['upper']:.4g}]".ljust(43)
                  + f" {true:<8.4g} {'covered' if covered else 'NOT covered'}")

        # 3a. Predict the held-out 8B runs of mixtures with t.
        fin = cube.isel(run=test)
        grid = pd.DataFrame({"N": fin["N"].values, "D": fin["D"].values}
                            | {f"mix:{s}": fin["mix"].sel(src=s).values for s in args.langs}
                            | {f"U:{s}": fin["U"].sel(src=s).values for s in args.langs})
        has_t = grid[f"mix:{t}"].to_numpy() > 0
        pred = predict(fit, configs=parse_configs(grid=grid[has_t]), target=t, level=args.level).sel(lang=t)
        y = fin["loss"].sel(lang=t).values[has_t]
        true_loss = clean.isel(run=test)["loss"].sel(lang=t).values[has_t]
        inside = (y >= pred["lower"].values) & (y <= pred["upper"].values)
        err = np.abs(pred["law_mean"].values / true_loss - 1)
        print(f"  {int(has_t.sum())} held-out {largest:.0e} runs: {pct} intervals cover {inside.mean():.0%} of the "
              f"observed losses; law mean within {np.median(err):.2%} (median) of the noise-free truth")
        for i in range(int(has_t.sum())):
            mix = " ".join(f"{s}:{grid[f'mix:{s}'].to_numpy()[has_t][i]:.2f}" for s in args.langs
                           if grid[f"mix:{s}"].to_numpy()[has_t][i] > 0)
            heldout_rows.append({"target": t, "N": largest, "D": float(pred["D"].values[i]), "mix": mix,
                                 "observed": float(y[i]), "truth": float(true_loss[i]), "mean": float(pred["mean"].values[i]),
                                 "lower": float(pred["lower"].values[i]), "upper": float(pred["upper"].values[i])})
        for r in heldout_rows[-int(has_t.sum()):][:3]:
            print(f"    D={r['D']:.3g} [{r['mix']}]: {r['mean']:.4f} [{r['lower']:.4f}, {r['upper']:.4f}], "
                  f"observed {r['observed']:.4f}, truth {r['truth']:.4f}")

        # 3b. Compute-optimal N, D of monolingual training on t, with intervals, against the true law's.
        best = optimal(fit, compute=list(BUDGETS), mix={t: 1.0}, U={t: MADLAD_U[t]}, target=t, level=args.level).sel(lang=t)
        for b, C in enumerate(BUDGETS):
            N_true, D_true = true_optimum(truth[t], MADLAD_U[t], C)
            r = {k: float(best[k].values[b]) for k in best.data_vars}
            optimal_rows.append({"target": t, "C": C, **r, "N_true": N_true, "D_true": D_true})
            print(f"  C = {C:.0e} FLOPs on {t} alone: N {r['N']:.3g} [{r['N_lower']:.3g}, {r['N_upper']:.3g}] "
                  f"(true {N_true:.3g}), D {r['D']:.3g} [{r['D_lower']:.3g}, {r['D_upper']:.3g}] (true {D_true:.3g}), "
                  f"{r['tokens_per_param']:.3g} tokens/param")
        if t == "en":
            N_c, D_c = laws.compute_optimal(BUDGETS[-1], **{k: simulate.PAPER["chinchilla"][k] for k in ("A", "B", "alpha", "beta")})
            print(f"  (Chinchilla's closed form at {BUDGETS[-1]:.0e}: N {float(N_c):.3g}, D {float(D_c):.3g})")

    pd.DataFrame(param_rows).to_csv(out / "params.csv", index=False)
    held = pd.DataFrame(heldout_rows)
    held.to_csv(out / "heldout.csv", index=False)
    pd.DataFrame(optimal_rows).to_csv(out / "optimal.csv", index=False)
    plots.surrogate_holdout_plot(held["observed"], held["mean"], held["lower"], held["upper"], out / "heldout.png",
                                 title=f"ATLAS fit on runs below {largest:.0e}: the {largest:.0e} runs, {pct} intervals")
    covered = np.mean([r["covered"] for r in param_rows])
    print(f"\n{covered:.0%} of {len(param_rows)} parameter intervals cover the published values")
    print(f"wrote cube.nc, fit_<lang>.nc, params.csv, heldout.csv, optimal.csv, heldout.png to {out}")


if __name__ == "__main__":
    main()
