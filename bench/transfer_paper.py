"""The hierarchical transfer model checked on the ATLAS paper's own 38 x 38 BTS matrix.

The paper measured a 9 x 9 block (en ru es fr de pt zh vi ja) and filled the rest with a random
forest, with no error bars; the shipped matrix is read off its figure, rounded to 0.1 (so every
value carries a rounding error of sd 0.1 / sqrt(12) = 0.029, the model's measurement error). In one
run:

1. Random hold-out: 20 % of the 1406 off-diagonal cells held out, the model fitted on the rest with
   shared-script and shared-family effects (and, second, shared-subfamily too); held-out cells
   predicted; mean absolute error, RMSE and the coverage of the 90 % predictive intervals (a new
   measurement: prediction plus rounding error), against the additive least-squares baseline
   (target + source means, no metadata) and the training mean.
2. The measured block held out: the 72 off-diagonal cells of the 9 x 9 block predicted from the
   rest of the matrix (which the paper itself predicted from features, so this asks whether the
   model reproduces the measured cells from the predicted ones).
3. The full matrix: script, family (and subfamily) effects with 90 % intervals, and the paper's
   headline contrast (same-script pairs average -0.23 against -0.39 for different scripts).

``--json`` prints one line.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from atlas_bayes import languages
from atlas_bayes import transfer_model as tm


def _effects(ds) -> dict:
    return {str(p): {k: round(float(ds[f"param_{k}"].sel(param=p)), 4) for k in ("mean", "lower", "upper")}
            for p in ds["param"].values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    opts = dict(draws=args.draws, warmup=args.warmup, seed=args.seed)
    M = tm.paper_matrix()
    langs = list(M.index)
    out: dict = {"cells": int(np.isfinite(M.to_numpy()).sum()), "draws": args.draws, "chains": 2}
    feats = languages.pair_features(langs, features=("shared_script",))["shared_script"]
    y = M.to_numpy()
    off = ~np.eye(len(langs), dtype=bool)
    out["raw_same_script_mean"] = round(float(np.nanmean(y[(feats == 1) & off])), 3)
    out["raw_different_script_mean"] = round(float(np.nanmean(y[(feats == 0) & off])), 3)
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for name, features in (("script+family", ("shared_script", "shared_family")),
                               ("script+family+subfamily", ("shared_script", "shared_family", "shared_subfamily"))):
            t0 = time.perf_counter()
            r = tm.holdout_check(M, frac=0.2, features=features, **opts)
            r["seconds"] = round(time.perf_counter() - t0, 1)
            out[f"random_holdout[{name}]"] = r
        block = np.zeros(M.shape, dtype=bool)
        block[:9, :9] = True
        t0 = time.perf_counter()
        r = tm.holdout_check(M, test=block, features=("shared_script", "shared_family", "shared_subfamily"), **opts)
        r["seconds"] = round(time.perf_counter() - t0, 1)
        out["measured_block_holdout"] = r
        full = tm.fit_transfer_matrix(M, features=("shared_script", "shared_family", "shared_subfamily"), **opts)
        out["full_fit_effects"] = _effects(full)
        out["full_fit_diagnostics"] = full.attrs["diagnostics"]
        top_sources = full["source_effect_mean"].to_series().sort_values(ascending=False)
        out["top_source_effects"] = {str(k): round(float(v), 3) for k, v in top_sources.head(5).items()}
        worst_targets = full["target_effect_mean"].to_series().sort_values()
        out["most_hurt_targets"] = {str(k): round(float(v), 3) for k, v in worst_targets.head(5).items()}
    caught = sorted({str(w.message) for w in rec})
    out["warnings"] = caught
    if args.json:
        print(json.dumps(out))
        return
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
