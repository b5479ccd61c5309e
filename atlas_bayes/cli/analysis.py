"""``atlas transfer``, ``atlas curse``, ``atlas crossover``: the paper's three multilingual questions,
each answer with its credible interval."""

from __future__ import annotations

import argparse
from pathlib import Path

from atlas_bayes.cli.common import add_json_flag, add_level_flag, emit_json, fmt_num

__all__ = ["register"]


def _floats(text: str | None, *, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} expects numbers separated by commas (e.g. 1e9,2e9); got {text!r}") from None


def _add_sampler_flags(p, *, chains: int) -> None:
    p.add_argument("--draws", type=int, default=1000, help="posterior draws per chain (default 1000)")
    p.add_argument("--warmup", type=int, default=1000, help="NUTS warmup steps per chain (default 1000)")
    p.add_argument("--chains", type=int, default=chains, help=f"chains (default {chains})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--target-accept", type=float, default=0.9, help="NUTS target acceptance (default 0.9)")


def _sampler(args) -> dict:
    return dict(draws=args.draws, warmup=args.warmup, chains=args.chains, seed=args.seed, target_accept=args.target_accept)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transfer",
        help="bilingual transfer scores BTS(source -> target) with credible intervals, and predicted unmeasured pairs",
        description="Bilingual transfer scores from monolingual and 50/50 bilingual runs with learning curves "
        "(SPEC section 2): every learning curve gets a Bayesian fit, so each score has a posterior. Writes the "
        "(target, source) matrix (netCDF) and a heatmap PNG that hatches cells whose interval contains 0.",
    )
    p.add_argument("cube", help="run cube (.nc) with monolingual and bilingual runs and learning curves")
    p.add_argument("--out", required=True, help="where to write the transfer matrix (.nc)")
    p.add_argument("--horizon", help="reference horizon(s) d_mono in tokens, comma-separated (default: the largest "
                   "every curve supports)")
    p.add_argument("--N", type=float, help="model size to score when the cube has several")
    p.add_argument("--points", default="auto", choices=("auto", "finals", "stable", "checkpoints"),
                   help="which points make a learning curve (default auto; see atlas_bayes.curves.choose_points)")
    p.add_argument("--plot", help="heatmap PNG (default: --out with .png)")
    p.add_argument("--predict", action="store_true",
                   help="also fit the hierarchical model (source, target, shared-script, shared-family effects) and "
                   "predict the unmeasured pairs")
    p.add_argument("--features", default="shared_script,shared_family",
                   help="pair features of the hierarchical model (default shared_script,shared_family; also "
                   "shared_subfamily, relatedness)")
    add_level_flag(p)
    _add_sampler_flags(p, chains=4)
    add_json_flag(p)
    p.set_defaults(func=_transfer)


def _transfer(args: argparse.Namespace) -> None:
    import numpy as np

    from atlas_bayes import cube as cube_lib
    from atlas_bayes import plots, transfer

    cube = cube_lib.load(args.cube)
    horizons = _floats(args.horizon, flag="--horizon")
    scores = transfer.transfer_scores(cube, horizon=horizons, N=args.N, points=args.points, level=args.level, **_sampler(args))
    result = scores
    model = None
    if args.predict:
        from atlas_bayes import transfer_model

        features = [f.strip() for f in args.features.split(",") if f.strip()]
        model = transfer_model.fit_transfer_model(
            scores, horizon=float(scores["horizon"].values[0]), cube=cube, features=features, level=args.level,
            draws=args.draws, warmup=args.warmup, chains=min(args.chains, 4), seed=args.seed,
        )
        result = transfer.merge_model(scores, model)
    out = cube_lib.write_netcdf(result, args.out)
    plot = Path(args.plot) if args.plot else Path(args.out).with_suffix(".png")
    plots.transfer_heatmap(model if model is not None else scores, plot)
    rows = transfer.to_rows(scores)
    info = {"out": str(out), "plot": str(plot), "N": scores.attrs["N"], "points": scores.attrs["points"],
            "horizons": scores["horizon"].values.tolist(), "level": args.level, "units": scores.attrs["units"],
            "cells": rows, "diagnostics": scores.attrs["diagnostics"]}
    if model is not None:
        info["model"] = transfer_model.summarise(model)
    if args.json:
        emit_json(info)
        return
    d = scores.attrs["diagnostics"]
    print(f"bilingual transfer scores at N={fmt_num(scores.attrs['N'])} ({scores.attrs['n_curves']} learning curves, "
          f"points: {scores.attrs['points']}; {args.level:.0%} credible intervals)")
    print(f"curve fits: max R-hat {fmt_num(d['max_r_hat'])}, min bulk ESS {fmt_num(d['min_ess_bulk'])}, "
          f"min tail ESS {fmt_num(d['min_ess_tail'])}, divergences {fmt_num(d['divergences'])}")
    for h in scores["horizon"].values:
        print(f"\nd_mono = {fmt_num(float(h))} tokens")
        print(f"  {'target':>8} {'source':>8} {'BTS':>8}   {'interval':<20} {'P(>0)':>6}  notes")
        for r in rows:
            if r["horizon"] != float(h):
                continue
            notes = [n for n, on in (("uncertain", r["uncertain"]), (f"extrapolated {r['extrapolated']:.0%}", r["extrapolated"] > 0.05),
                                     (f"unreachable {r['p_unreachable']:.0%}", r["p_unreachable"] > 0)) if on]
            print(f"  {r['target']:>8} {r['source']:>8} {r['mean']:>+8.3f}   [{r['lower']:+.3f}, {r['upper']:+.3f}]"
                  f"{'':<3} {r['p_positive']:>6.2f}  {', '.join(notes)}")
    if model is not None:
        m = info["model"]
        print(f"\nhierarchical model ({int(model.attrs['n_measured'])} measured cells; max R-hat "
              f"{fmt_num(m['diagnostics']['max_r_hat'])}, min ESS {fmt_num(m['diagnostics']['min_ess_bulk'])}, "
              f"divergences {fmt_num(m['diagnostics']['divergences'])}):")
        for name, e in m["params"].items():
            print(f"  {name:>18} {e['mean']:+.3f}  [{e['lower']:+.3f}, {e['upper']:+.3f}]")
        n_pred = int(np.sum(~model["measured"].values) - model.sizes["target"])
        print(f"  predicted {n_pred} unmeasured pairs (in {out})")
    print(f"\nwrote {out} and {plot}")
