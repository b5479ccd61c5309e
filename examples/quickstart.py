"""Quickstart: import a CSV of your own training runs, fit a scaling law with NUTS, predict a new run.

What it shows
-------------
1. ``atlas_bayes.import_table``: a run table whose columns have other names than atlas's, mapped
   with ``columns`` (``{ours: theirs}``; the CLI's ``atlas import --columns N=N_params,...``), the
   unused columns dropped with ``ignore="unknown"``, saved as a run cube (netCDF).
2. ``atlas_bayes.fit(..., method="nuts")``: the posterior of the law's parameters, printed as
   estimates with credible intervals, with the sampler's diagnostics (R-hat, ESS, divergences).
3. ``atlas_bayes.predict.predict``: the loss of a configuration nobody trained -- a new run's loss
   (observation noise included) and the law's mean, each with an interval -- and a posterior
   predictive check: every training run's loss against its predictive interval.

The data
--------
By default ``examples/data/datablations_runs.csv``: 182 real runs of Muennighoff et al. 2023
("Scaling Data-Constrained Language Models"; Apache-2.0, see ``examples/data/README.md``), 7M to
8.7B parameters, up to 9000 epochs over their unique tokens, with the data-constrained law
(``dcsl``). Bring your own with ``--csv my_runs.csv --columns N=params,D=tokens,loss=val_loss``
(atlas's columns: ``N``, ``D``, ``loss``, and optionally ``U``, ``lang``, ``run``, ``seed``,
``mix:<lang>`` ...; see ``atlas_bayes.tabular``) and pick a law with ``--law``.

How to run
----------
::

    python examples/quickstart.py                 # about 30 s on 2 cores
    python examples/quickstart.py --csv runs.csv --columns N=params,D=tokens,loss=loss --law chinchilla \\
        --N 1e9 --D 2e10
    python examples/quickstart.py --tiny          # short chains (seconds; for tests)

What to expect
--------------
On the shipped runs (4 chains x 1000 draws, about 30 s): every parameter with its 90 % interval,
R-hat 1.002, bulk ESS above 2000, a divergence or so (flagged), noise sigma about 0.06 on log-loss
(some runs at hundreds of epochs overfit, which no law here describes). Fitted jointly to these runs
alone, the base law differs from the published one (E about 2.1 against 1.87; R_D* about 34 against
15.4): the authors fitted E, A, B, alpha, beta to other runs (Chinchilla's C4 isoFLOP points) and
only R_D*, R_N* to these, with a Huber loss. So the new run (8.67B parameters, 178B tokens, 25B
unique: the datablations README's example, published prediction 2.227) gets a law mean of 2.48
[2.42, 2.53], and a new run's observed loss an interval about five times wider, 2.23 to 2.76.
``--fix E=1.869,A=520.4,B=1488.6,alpha=0.3527,beta=0.3527`` holds the base at the authors' values,
as they did: the law mean becomes 2.26 [2.25, 2.28] (R_D* still about 50: the likelihood, not only
the base, differs). Written to ``--out`` (default ``out/quickstart``): ``runs.nc`` (the cube),
``fit.nc`` (reload with ``atlas_bayes.load_fit``; ``atlas predict fit.nc ...``), ``params.csv``,
``prediction.csv`` and ``check.png`` (observed against predicted loss of every run, with intervals).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import atlas_bayes
from atlas_bayes import laws, plots, results, simulate
from atlas_bayes.predict import parse_configs, predict, to_rows

HERE = Path(__file__).resolve().parent
DATABLATIONS = HERE / "data" / "datablations_runs.csv"
DATABLATIONS_COLUMNS = "N=N_params,D=D_tokens,U=U_unique_tokens,loss=val_loss,run=run_key"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", default=str(DATABLATIONS), help="run table (default: the shipped datablations runs)")
    p.add_argument("--columns", help="ours=theirs,... column mapping (default: the datablations table's)")
    p.add_argument("--law", default="dcsl", help="law to fit (default dcsl; see atlas_bayes.LAWS)")
    p.add_argument("--fix", help="hold parameters at values: NAME=VALUE,... (e.g. E=1.869)")
    p.add_argument("--N", type=float, default=8.67e9, help="parameters of the run to predict (default 8.67e9)")
    p.add_argument("--D", type=float, default=178e9, help="its tokens (default 178e9)")
    p.add_argument("--U", type=float, default=25e9, help="its unique tokens (default 25e9; laws with U only)")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--level", type=float, default=0.9, help="credible level (default 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="2 chains of 100 draws (for tests)")
    p.add_argument("--out", default="out/quickstart", help="folder for the files (default out/quickstart)")
    args = p.parse_args(argv)
    if args.columns is None:
        args.columns = DATABLATIONS_COLUMNS if Path(args.csv).resolve() == DATABLATIONS else ""
    if args.tiny:
        args.chains, args.warmup, args.draws = 2, 100, 100
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. Import: map their column names to ours, drop the rest, save the cube.
    columns = dict(item.split("=", 1) for item in args.columns.split(",") if item)
    cube = atlas_bayes.import_table(args.csv, columns=columns, ignore="unknown", out=out / "runs.nc")
    print(f"imported {cube.sizes['run']} runs from {args.csv} (columns {columns or 'as is'}; "
          f"ignored {cube.attrs.get('ignored_columns', [])})")

    # 2. Fit with NUTS; every estimate with its interval, and the sampler's diagnostics.
    fit = atlas_bayes.fit(cube, args.law, method="nuts", fix=args.fix, num_chains=args.chains, num_warmup=args.warmup,
                          num_samples=args.draws, target_accept=0.95, seed=args.seed)
    fit.save(out / "fit.nc")
    table = atlas_bayes.summary(fit, level=args.level)
    table.to_csv(out / "params.csv")
    pct = f"{args.level:.0%}"
    print(f"\n{fit.law} fit of {fit.target!r} by NUTS (posterior mean, {pct} interval, R-hat, bulk ESS):")
    for name, row in table.iterrows():
        if row["fixed"]:
            print(f"  {name:>9} {row['estimate']:10.4g} (fixed)")
            continue
        print(f"  {name:>9} {row['estimate']:10.4g} [{row['lower']:.4g}, {row['upper']:.4g}]  "
              f"R-hat {row['r_hat']:.3f}  ESS {row['ess_bulk']:.0f}")
    d = results.diagnostics(fit)
    print(f"diagnostics: max R-hat {d['max_r_hat']:.3f}, min bulk ESS {d['min_ess_bulk']:.0f}, "
          f"min tail ESS {d['min_ess_tail']:.0f}, divergences {d['divergences']} "
          f"({d['chains']} chains x {d['draws']} draws)")

    # 3. Predict a run nobody trained.
    lang = fit.target
    U = {lang: args.U} if "U" in atlas_bayes.get_law(args.law).needs else None
    new = predict(fit, N=args.N, D=args.D, U=U, level=args.level)
    rows = to_rows(new)
    pd.DataFrame(rows).drop(columns="mix").to_csv(out / "prediction.csv", index=False)
    r = rows[0]
    print(f"\nnew run N={args.N:.3g}, D={args.D:.3g}{f', U={args.U:.3g}' if U else ''}:")
    print(f"  its observed loss: {r['mean']:.4f} [{r['lower']:.4f}, {r['upper']:.4f}] ({pct})")
    print(f"  the law's mean:    {r['law_mean']:.4f} [{r['law_lower']:.4f}, {r['law_upper']:.4f}]")
    if args.law == "dcsl":
        published = float(laws.dcsl(args.N, args.D, args.U, **simulate.PAPER["dcsl"]))
        print(f"  the published DCSL fit (Muennighoff et al. 2023) predicts {published:.4f}")

    # Posterior predictive check: each run's loss against its own predictive interval.
    runs = atlas_bayes.to_table(cube)  # one row per run here (one language, final losses)
    grid = runs[["N", "D"] + [c for c in runs.columns if c.startswith(("mix:", "U:"))]]
    check = predict(fit, configs=parse_configs(grid=grid), level=args.level).sel(lang=lang)
    y = runs["loss"].to_numpy()
    inside = (y >= check["lower"].values) & (y <= check["upper"].values)
    print(f"\n{pct} predictive intervals cover {inside.mean():.0%} of the {len(y)} training runs")
    plots.surrogate_holdout_plot(y, check["mean"].values, check["lower"].values, check["upper"].values,
                                 out / "check.png", title=f"{fit.law} fit: each run against its {pct} interval")
    print(f"wrote runs.nc, fit.nc, params.csv, prediction.csv, check.png to {out}")


if __name__ == "__main__":
    main()
