"""Cross-lingual transfer: a matrix of bilingual transfer scores with credible intervals.

What it shows
-------------
1. Training monolingual and 50/50 bilingual models on the built-in synthetic world (whose family
   tree, and so the ground truth of which languages are related, is known), or loading such runs.
2. The bilingual transfer score BTS(s -> t) = 2 - d_bi / d_mono of every measured pair (SPEC
   section 2) with a credible interval: each run's learning curve gets a Bayesian fit, so the
   tokens at which the bilingual run reaches the monolingual run's loss have a posterior
   (``atlas_bayes.transfer.transfer_scores``), drawn as a heatmap that hatches cells whose
   interval contains 0.
3. Whether transfer follows relatedness: the mean BTS of same-script pairs minus that of
   different-script pairs, and its rank correlation with the world's relatedness, per posterior
   draw (so both come with intervals).
4. The hierarchical model (target, source, shared-script and shared-family effects;
   ``atlas_bayes.transfer_model``) predicting the pairs nobody trained, with intervals.
5. The same model checked on the ATLAS paper's own 38 x 38 matrix: cells held out at random,
   predicted from the rest; mean absolute error and the coverage of the 90 % intervals, against an
   additive least-squares baseline.

How to run
----------
::

    python examples/transfer_matrix.py                    # trains trainer/data/exp_transfer.toml
                                                          #   (about 20 min on 2 cores with --workers 2)
    python examples/transfer_matrix.py --cube transfer_cube.nc   # runs you already have
    python examples/transfer_matrix.py --tiny             # a toy sweep and short chains: about a minute

``--cube`` takes any run cube with monolingual and 50/50 bilingual runs at one model size and
learning curves (checkpoints or 3+ token budgets per configuration), e.g. from ``atlas train`` or
``atlas import``. Training is resumable: rerunning with the same ``--out`` skips finished runs.

What to expect
--------------
Printed: one line per measured (target, source) cell, ``BTS mean [lower, upper]`` and P(BTS > 0);
the script contrast and relatedness correlation with intervals; the hierarchical model's effects
and its predictions of the unmeasured pairs; the paper-matrix hold-out scores. Written to
``--out`` (default ``out/transfer_matrix``): ``bts.csv``, ``bts_heatmap.png``,
``predicted_pairs.csv``, ``transfer_matrix_filled.png`` (measured cells as measured, the rest
predicted, marked with a dot) and ``transfer_matrix.nc`` (scores and model). On the shipped sweep
(s04 models, 9 pairs; BENCHMARKS.md) every score comes out positive, sister languages transfer
most (BTS about 1) and a shared script helps; on the paper's matrix the model's 90 % intervals
cover about 90 % of held-out cells. With ``--tiny`` the numbers are noisy
and the sampler warns that its chains are too short: that is what the warning is for.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from atlas_bayes import cube as cube_lib
from atlas_bayes import languages, plots, transfer, transfer_model
from atlas_bayes.nuts import interval

# A toy version of exp_transfer.toml: 3 languages (ama; its sister ami; bel, another family and
# script), the smallest model, 3 budgets per configuration (the bilingual runs go twice as far).
TINY_SWEEP = """\
name = "transfer_tiny"
seed = 0

[data]
world = "default"
langs = ["ama", "ami", "bel"]
seq_len = 32
test_tokens = 512

[train]
batch_size = 8
warmup_steps = 3
eval_points = 3

[[group]]
name = "mono"
scales = ["s01"]
tokens = [2.5e3, 5e3, 1e4]
mixtures = [{ monolingual = "each" }]

[[group]]
name = "bi"
scales = ["s01"]
tokens = [5e3, 1e4, 2e4]
mixtures = [{ bilingual = "ama", with = ["ami", "bel"] }]
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cube", help="a run cube with monolingual and bilingual runs (skips training)")
    p.add_argument("--sweep", default="exp_transfer", help="sweep to train: a shipped name or a TOML file (default exp_transfer)")
    p.add_argument("--workers", type=int, default=1, help="training processes (default 1)")
    p.add_argument("--features", default="shared_script,shared_family",
                   help="pair features of the hierarchical model (default shared_script,shared_family)")
    p.add_argument("--paper-langs", default="all",
                   help="languages of the paper-matrix check: 'all' (38), 'measured' (the 9 the paper trained) "
                   "or a comma-separated list")
    p.add_argument("--holdout", type=float, default=0.2, help="share of paper-matrix cells held out (default 0.2)")
    p.add_argument("--draws", type=int, default=1000, help="posterior draws per chain (default 1000)")
    p.add_argument("--warmup", type=int, default=1000, help="NUTS warmup steps per chain (default 1000)")
    p.add_argument("--chains", type=int, default=4, help="chains of the learning-curve fits (default 4)")
    p.add_argument("--level", type=float, default=0.9, help="credible level of the intervals (default 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="toy sweep, 100 draws, 9-language paper check (for tests)")
    p.add_argument("--out", default="out/transfer_matrix", help="folder for the files (default out/transfer_matrix)")
    args = p.parse_args(argv)
    if args.tiny:
        args.draws, args.warmup, args.chains = 100, 100, 2
        args.paper_langs = "measured"
    return args


def ci(e: dict, fmt: str = "+.3f") -> str:
    """``mean [lower, upper]`` of a summary dict."""
    return f"{e['mean']:{fmt}} [{e['lower']:{fmt}}, {e['upper']:{fmt}}]"


def summarise(draws: np.ndarray, level: float) -> dict:
    lo, hi = interval(np.asarray(draws, dtype=float), level)
    return {"mean": float(np.mean(draws)), "lower": float(lo), "upper": float(hi)}


def get_cube(args, out: Path):
    """Load ``--cube``, or train the sweep (``--tiny``: the toy sweep above) into ``out``."""
    if args.cube:
        return cube_lib.load(args.cube)
    from trainer import load_sweep, run_sweep

    spec = args.sweep
    if args.tiny:
        spec = out / "transfer_tiny.toml"
        spec.write_text(TINY_SWEEP)
    sweep = load_sweep(spec)
    res = run_sweep(sweep, out=out / "transfer_cube.nc", workers=args.workers, progress=not args.tiny)
    print(f"trained {len(res.trained)} runs ({len(res.skipped)} already there) of sweep {sweep.name!r} in "
          f"{res.seconds:.0f} s -> {res.path}")
    return res.cube


def relatedness_checks(scores, cube, level: float) -> dict:
    """Per-draw contrasts of the measured cells: same-script minus different-script mean BTS, and the
    Spearman correlation of BTS with the languages' similarity (the world's tree when the cube has it)."""
    from scipy import stats

    langs = [str(x) for x in scores["target"].values]
    meas = scores["measured"].values
    bts = scores["bts"].isel(horizon=0).values[meas]  # (cell, draw)
    out = {}
    script = languages.pair_features(langs, features=("shared_script",), cube=cube)["shared_script"][meas]
    if 0 < script.sum() < len(script):
        diff = bts[script == 1].mean(0) - bts[script == 0].mean(0)
        out["same_minus_different_script"] = summarise(diff, level) | {
            "n_same": int(script.sum()), "n_different": int(len(script) - script.sum())}
    sim = languages.similarity(langs, cube=cube)[meas]
    if len(np.unique(sim)) > 1 and len(sim) >= 3:
        rho = np.array([stats.spearmanr(sim, bts[:, k]).statistic for k in range(bts.shape[1])])
        out["spearman_with_similarity"] = summarise(rho[np.isfinite(rho)], level) | {"cells": int(len(sim))}
    return out


def paper_check(args, features) -> dict:
    """Hold cells of the paper's matrix out, predict them with the hierarchical model, score the intervals."""
    M = transfer_model.paper_matrix()
    if args.paper_langs == "measured":
        keep = list(transfer_model.PAPER_MEASURED)
    elif args.paper_langs == "all":
        keep = list(M.index)
    else:
        keep = [x.strip() for x in args.paper_langs.split(",") if x.strip()]
        unknown = [x for x in keep if x not in M.index]
        if unknown:
            raise ValueError(f"--paper-langs: {unknown} not in the paper's matrix; it has {list(M.index)}")
    M = M.loc[keep, keep]
    y = M.to_numpy()
    off = ~np.eye(len(keep), dtype=bool)
    same = languages.pair_features(keep, features=("shared_script",))["shared_script"]
    check = transfer_model.holdout_check(M, frac=args.holdout, seed=args.seed, level=args.level, features=features,
                                         draws=args.draws, warmup=args.warmup, chains=2)
    check["langs"] = keep
    check["raw_same_script_mean"] = float(np.nanmean(y[(same == 1) & off])) if ((same == 1) & off).any() else None
    check["raw_different_script_mean"] = float(np.nanmean(y[(same == 0) & off])) if ((same == 0) & off).any() else None
    return check


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    features = [f.strip() for f in args.features.split(",") if f.strip()]
    sampler = dict(draws=args.draws, warmup=args.warmup, seed=args.seed)
    t0 = time.perf_counter()
    cube = get_cube(args, out)

    # 1. Transfer scores with intervals.
    scores = transfer.transfer_scores(cube, level=args.level, chains=args.chains, **sampler)
    rows = transfer.to_rows(scores)
    pd.DataFrame(rows).to_csv(out / "bts.csv", index=False)
    plots.transfer_heatmap(scores, out / "bts_heatmap.png")
    d = scores.attrs["diagnostics"]
    pct = f"{args.level:.0%}"
    print(f"\nbilingual transfer scores at N = {scores.attrs['N']:.3g} parameters, d_mono = "
          f"{float(scores['horizon'][0]):.3g} tokens ({scores.attrs['n_curves']} learning curves from "
          f"{scores.attrs['points']}; {pct} credible intervals)")
    print(f"curve fits: max R-hat {d['max_r_hat']:.3f}, min bulk ESS {d['min_ess_bulk']:.0f}, divergences {d['divergences']}")
    print(f"  {'target':>6} <- {'source':<6} {'BTS [interval]':<26} P(BTS>0)")
    for r in rows:
        flag = "  (interval contains 0)" if r["uncertain"] else ""
        print(f"  {r['target']:>6} <- {r['source']:<6} {ci(r):<26} {r['p_positive']:.2f}{flag}")

    # 2. Does transfer follow relatedness?
    rel = relatedness_checks(scores, cube, args.level)
    if "same_minus_different_script" in rel:
        e = rel["same_minus_different_script"]
        print(f"\nsame-script minus different-script mean BTS: {ci(e)} ({e['n_same']} vs {e['n_different']} cells; "
              "paper: -0.23 vs -0.39, i.e. +0.16)")
    if "spearman_with_similarity" in rel:
        print(f"rank correlation of BTS with relatedness: {ci(rel['spearman_with_similarity'])}")

    # 3. The hierarchical model predicts the pairs nobody trained.
    model = transfer_model.fit_transfer_model(scores, cube=cube, features=features, level=args.level, chains=2, **sampler)
    summary = transfer_model.summarise(model)
    md = summary["diagnostics"]
    print(f"\nhierarchical model on {model.attrs['n_measured']} measured cells (max R-hat {md['max_r_hat']:.3f}, "
          f"min bulk ESS {md['min_ess_bulk']:.0f}, divergences {md['divergences']}):")
    for name, e in summary["params"].items():
        print(f"  {name:>16} {ci(e)}")
    print(f"predicted unmeasured pairs ({len(summary['predicted'])}):")
    for r in summary["predicted"]:
        print(f"  {r['target']:>6} <- {r['source']:<6} {ci(r)}")
    pd.DataFrame(summary["predicted"], columns=["target", "source", "mean", "lower", "upper"]).to_csv(
        out / "predicted_pairs.csv", index=False)
    plots.transfer_heatmap(model, out / "transfer_matrix_filled.png")
    cube_lib.write_netcdf(transfer.merge_model(scores, model), out / "transfer_matrix.nc")

    # 4. The same model checked on the paper's matrix.
    check = paper_check(args, features)
    print(f"\nthe hierarchical model on the paper's {len(check['langs'])}-language matrix, {check['n_test']} cells held out:")
    print(f"  MAE {check['mae']:.3f} (additive least-squares baseline {check['baseline_additive_mae']:.3f}, "
          f"training mean {check['baseline_mean_mae']:.3f}); {pct} intervals cover {check['coverage']:.0%} of held-out "
          f"cells (mean width {check['mean_width']:.2f})")
    for name, e in check["effects"].items():
        print(f"  {name:>16} {ci(e)}")
    if check["raw_same_script_mean"] is not None and check["raw_different_script_mean"] is not None:
        print(f"  raw means: same script {check['raw_same_script_mean']:+.3f}, different {check['raw_different_script_mean']:+.3f}"
              " (paper: -0.23, -0.39)")

    print(f"\nwrote bts.csv, bts_heatmap.png, predicted_pairs.csv, transfer_matrix_filled.png, transfer_matrix.nc to {out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
