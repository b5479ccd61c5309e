"""The three multilingual analyses on the synthetic world, against its known ground truth.

Trains (or reuses) the shipped experiment sweeps ``trainer/data/exp_transfer.toml``,
``exp_curse.toml`` and ``exp_crossover.toml`` and asks what the paper asks:

1. Transfer: does BTS rise with relatedness (the world's tree distance, ``cube.attrs["relatedness"]``)
   and with a shared script? Rank correlations of the posterior-mean BTS with both, the sister-pair
   vs other averages, and the hierarchical model's effects (shared script, tree relatedness) with
   90 % intervals.
2. Curse: is phi > 0? Posterior of phi and psi (pooled fit of the K = 1, 2, 4, 8 mixtures), what 8 -> 16
   languages costs, and the relatedness extension against the plain law by PSIS-LOO.
3. Crossover: D* per size with its interval, C*(N) = k N^gamma, and the same at equal total compute.

``--transfer-cube`` etc. reuse cubes already trained (``atlas train exp_transfer --out ...``); a
missing one is trained first (minutes to tens of minutes on a shared 2-core machine). ``--json``
prints one line.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np


def _cube(path: str | None, sweep: str, workdir: Path):
    from atlas_bayes import cube as cube_lib

    if path and Path(path).exists():
        return cube_lib.load(path), 0.0
    from trainer import sweep as sweep_lib

    out = Path(path) if path else workdir / f"{sweep}.nc"
    res = sweep_lib.run_sweep(sweep, out=out, workers=2, progress=False)
    return res.cube, res.seconds


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def transfer_part(cube, opts) -> dict:
    from atlas_bayes import languages, transfer, transfer_model

    t0 = time.perf_counter()
    scores = transfer.transfer_scores(cube, **opts)
    sel = scores.isel(horizon=0)
    langs = [str(x) for x in scores["target"].values]
    m = sel["measured"].values
    rel = languages.tree_relatedness(langs, cube)
    script = languages.pair_features(langs, features=("shared_script",), cube=cube)["shared_script"]
    mean = sel["mean"].values
    model = transfer_model.fit_transfer_model(scores, cube=cube, features=("shared_script", "relatedness"),
                                              draws=opts["draws"], warmup=opts["warmup"], seed=opts["seed"])
    sister = (rel > 0.85) & m
    cells = [{"target": langs[i], "source": langs[j], "relatedness": round(float(rel[i, j]), 3),
              "shared_script": int(script[i, j]), "mean": round(float(mean[i, j]), 3),
              "lower": round(float(sel["lower"].values[i, j]), 3), "upper": round(float(sel["upper"].values[i, j]), 3)}
             for i, j in zip(*np.nonzero(m))]
    return {
        "N": scores.attrs["N"], "horizon": float(sel["horizon"]), "points": scores.attrs["points"], "cells": cells,
        "spearman_bts_relatedness": round(_rank_corr(mean[m], rel[m]), 3),
        "spearman_bts_shared_script": round(_rank_corr(mean[m], script[m]), 3),
        "mean_bts_sister_pairs": round(float(mean[sister].mean()), 3),
        "mean_bts_other_pairs": round(float(mean[m & ~sister].mean()), 3),
        "mean_bts_same_script": round(float(mean[m & (script == 1)].mean()), 3),
        "mean_bts_other_script": round(float(mean[m & (script == 0)].mean()), 3),
        "model": transfer_model.summarise(model)["params"],
        "diagnostics": scores.attrs["diagnostics"], "model_diagnostics": model.attrs["diagnostics"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def curse_part(cube, opts) -> dict:
    from atlas_bayes import curse, results

    t0 = time.perf_counter()
    plain, rel, table = curse.compare_related(cube, draws=opts["draws"], warmup=opts["warmup"], seed=opts["seed"])
    phi = plain.params_for(plain.targets[0])["phi"]
    s = results.summary(plain)
    sr = results.summary(rel)
    keep = lambda t, names: {n: {k: round(float(t.loc[n, k]), 4) for k in ("estimate", "lower", "upper")} for n in names}  # noqa: E731
    return {
        "targets": list(plain.targets), "observations": int(plain.idata.observed_data.sizes["obs"]),
        "plain": keep(s, ["phi", "psi", "alpha", "beta"]), "p_phi_positive": round(float((phi > 0).mean()), 3),
        "related": keep(sr, ["phi", "psi", "phi_rel", "psi_rel"]),
        "scaling_8_to_16": curse.curse_scaling_summary(plain, from_k=8, to_k=16)["min_compute"],
        "loo": {str(k): {c: round(float(row[c]), 2) for c in ("elpd_loo", "p_loo", "elpd_diff", "dse", "weight")}
                for k, row in table.iterrows()},
        "diagnostics": {"plain": plain.config.options["diagnostics"], "related": rel.config.options["diagnostics"]},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def crossover_part(cube, opts, target: str) -> dict:
    from atlas_bayes import crossover

    t0 = time.perf_counter()
    res = crossover.crossover(cube, target=target, include_base_compute=True, **opts)
    cols = ["N", "D_base", "D_star_median", "D_star_lower", "D_star_upper", "p_cross", "extrapolated", "below_range",
            "total_D_star_median", "total_D_star_lower", "total_D_star_upper", "total_below_range"]
    return {"target": target, "sizes": res.table[cols].round(4).to_dict("records"), "power_law": res.power_law,
            "diagnostics": res.diagnostics, "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfer-cube")
    parser.add_argument("--curse-cube")
    parser.add_argument("--crossover-cube")
    parser.add_argument("--only", default="transfer,curse,crossover", help="parts to run, comma-separated")
    parser.add_argument("--workdir", default="bench_runs")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    opts = dict(draws=args.draws, warmup=args.warmup, seed=args.seed)
    parts = [p.strip() for p in args.only.split(",")]
    out: dict = {"draws": args.draws, "warmup": args.warmup}
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        if "transfer" in parts:
            cube, secs = _cube(args.transfer_cube, "exp_transfer", workdir)
            out["transfer"] = transfer_part(cube, opts) | {"train_seconds": secs}
        if "curse" in parts:
            cube, secs = _cube(args.curse_cube, "exp_curse", workdir)
            out["curse"] = curse_part(cube, opts) | {"train_seconds": secs}
        if "crossover" in parts:
            cube, secs = _cube(args.crossover_cube, "exp_crossover", workdir)
            out["crossover"] = crossover_part(cube, opts, "ama") | {"train_seconds": secs}
    out["warnings"] = sorted({str(w.message) for w in rec if "Diagnostics" in w.category.__name__})
    if args.json:
        from atlas_bayes.cli.common import emit_json

        emit_json(out)  # one line; inf/NaN (no crossover in range) become null
    else:
        print(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
