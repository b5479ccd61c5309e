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
    p.add_argument("--compare-fit", help="an ATLAS fit (atlas fit --law atlas): set its tau_<lang> against "
                   "tau = BTS / (2 - BTS) from these scores")
    add_level_flag(p)
    _add_sampler_flags(p, chains=4)
    add_json_flag(p)
    p.set_defaults(func=_transfer)
    _register_more(sub)


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
    tau = None
    if args.compare_fit:
        from atlas_bayes import results

        atlas_fit = results.load_fit(args.compare_fit)
        tau = transfer.compare_tau(atlas_fit, scores, horizon=float(scores["horizon"].values[0]), level=args.level)
        info["tau_comparison"] = {"target": tau.attrs["target"], "rows": tau.reset_index().to_dict("records")}
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
                                     (f"unreachable {r['p_unreachable']:.0%}", r["p_unreachable"] >= 0.005)) if on]
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
    if tau is not None:
        print(f"\nATLAS tau of {args.compare_fit} (target {tau.attrs['target']!r}) against tau = BTS / (2 - BTS):")
        for s, r in tau.iterrows():
            print(f"  {s:>8}  fit {r['fit_mean']:+.3f} [{r['fit_lower']:+.3f}, {r['fit_upper']:+.3f}]   from BTS "
                  f"{r['bts_mean']:+.3f} [{r['bts_lower']:+.3f}, {r['bts_upper']:+.3f}]   "
                  f"{'agree' if r['agree'] else 'differ'}")
    print(f"\nwrote {out} and {plot}")


def _register_more(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "curse",
        help="curse of multilinguality: phi, psi and what K -> K' languages cost at equal loss, with intervals",
        description="Reads a fit of the curse law (atlas fit --law curse, or --save-fit of this verb) or fits one "
        "(NUTS, pooled over targets) to a run cube's uniform K-language mixtures. Prints N'/N, D_tot'/D_tot and C'/C "
        "at minimum compute going from --from-k to --to-k languages, and the general iso-loss curve.",
    )
    p.add_argument("input", help="a curse fit (.nc) or a run cube (.nc) with uniform K-language mixtures")
    p.add_argument("--from-k", type=float, default=8, help="languages now (default 8)")
    p.add_argument("--to-k", type=float, default=16, help="languages after (default 16)")
    p.add_argument("--N", type=float, help="the run at --from-k: parameters (with --D)")
    p.add_argument("--D", type=float, help="the run at --from-k: total tokens (with --N)")
    p.add_argument("--target", help="target language whose parameters to use (fits with per-target exponents)")
    p.add_argument("--targets", help="run cube input: targets to pool (comma-separated; default all)")
    p.add_argument("--related", action="store_true", help="run cube input: also fit the extension where phi, psi depend "
                   "on how related the added languages are, and compare the two by PSIS-LOO")
    p.add_argument("--relatedness", type=float, help="with --related: relatedness (0..1) of the added languages "
                   "(default: the fit data's mean)")
    p.add_argument("--save-fit", help="run cube input: write the (plain) curse fit here")
    p.add_argument("--plot", help="write the iso-loss curve to this PNG")
    p.add_argument("--table", help="write the iso-loss curve to this CSV")
    add_level_flag(p)
    _add_sampler_flags(p, chains=2)
    add_json_flag(p)
    p.set_defaults(func=_curse)

    p = sub.add_parser(
        "crossover",
        help="pretrain from scratch vs finetune: the crossover token count D* with its interval, and C*(N)",
        description="From pretraining and finetune runs of one target (learning curves, several sizes): the posterior "
        "of D*, where training from scratch overtakes finetuning from a multilingual base, per size, and of "
        "C*(N) = k N^gamma across sizes.",
    )
    p.add_argument("cube", help="run cube (.nc) with pretraining and finetune runs of the target")
    p.add_argument("--target", required=True, help="target language")
    p.add_argument("--include-base-compute", action="store_true",
                   help="also compare at equal total compute, counting the base model's 6 N D_base (the paper treats it as sunk)")
    p.add_argument("--base-tokens", type=float, help="tokens the base was trained on (when the cube does not record D_base)")
    p.add_argument("--budget", type=float, help="tokens of the target: report P(finetuning is better) there")
    p.add_argument("--points", default="auto", choices=("auto", "finals", "stable", "checkpoints"),
                   help="which points make a learning curve (default auto)")
    p.add_argument("--plot", help="write the curves and crossovers to this PNG")
    add_level_flag(p)
    _add_sampler_flags(p, chains=4)
    add_json_flag(p)
    p.set_defaults(func=_crossover)


def _is_fit(path: str) -> bool:
    import netCDF4

    if not Path(path).exists():
        raise FileNotFoundError(f"no such file: {path!r}")
    try:
        with netCDF4.Dataset(path) as ds:
            return "posterior" in ds.groups
    except OSError:
        raise ValueError(f"{path!r} is not a readable netCDF file (a curse fit or a run cube)") from None


def _curse(args: argparse.Namespace) -> None:
    from atlas_bayes import cube as cube_lib
    from atlas_bayes import curse, plots, results

    sampler = dict(draws=args.draws, warmup=args.warmup, chains=args.chains, seed=args.seed, target_accept=args.target_accept)
    info: dict = {"input": args.input}
    related = None
    if _is_fit(args.input):
        if args.related or args.targets or args.save_fit:
            raise ValueError("--related, --targets and --save-fit need a run cube as input; this is a fit file")
        fit = results.load_fit(args.input)
        results.check_diagnostics(fit)
    else:
        cube = cube_lib.load(args.input)
        targets = [t.strip() for t in args.targets.split(",")] if args.targets else None
        if args.related:
            fit, related, table = curse.compare_related(cube, targets=targets, **sampler)
            info["loo"] = {str(k): {c: (float(v) if isinstance(v, (int, float)) else v) for c, v in row.items()
                                    if c in ("rank", "elpd_loo", "p_loo", "elpd_diff", "weight", "se", "dse", "warning")}
                           for k, row in table.iterrows()}
        else:
            fit = curse.fit_curse(cube, targets=targets, **sampler)
        if args.save_fit:
            fit.save(args.save_fit)
            info["fit"] = args.save_fit
    kw = dict(from_k=args.from_k, to_k=args.to_k, target=args.target, N=args.N, D=args.D, level=args.level)
    info["targets"] = list(fit.targets)
    info["scaling"] = curse.curse_scaling_summary(fit, **kw)
    iso = curse.iso_loss_curve(fit, **kw)
    info["iso_loss"] = {"w_N": iso.attrs["w_N"], "min_compute": iso.attrs["min_compute"], "rows": iso.to_dict("records")}
    diag = fit.config.options.get("diagnostics") or results.diagnostics(fit)
    info["diagnostics"] = {k: diag.get(k) for k in ("chains", "draws", "max_r_hat", "min_ess_bulk", "min_ess_tail", "divergences")}
    if related is not None:
        info["related"] = {"scaling": curse.curse_scaling_summary(related, relatedness=args.relatedness, **kw),
                           "params": {k: _summ(related.params_for(related.targets[0])[k], args.level) for k in ("phi_rel", "psi_rel")}}
    if args.plot:
        plots.iso_loss_plot(iso, args.plot)
        info["plot"] = args.plot
    if args.table:
        iso.to_csv(args.table, index=False)
        info["table"] = args.table
    if args.json:
        emit_json(info)
        return
    sc = info["scaling"]
    pct = f"{args.level:.0%}"
    fmt = lambda e: f"{e['median']:.4g}  [{e['lower']:.4g}, {e['upper']:.4g}]"  # noqa: E731
    print(f"curse of multilinguality, fit of {', '.join(fit.targets)} ({fit.method}; {pct} credible intervals)")
    d = info["diagnostics"]
    print(f"  diagnostics: max R-hat {fmt_num(d['max_r_hat'])}, min bulk ESS {fmt_num(d['min_ess_bulk'])}, "
          f"divergences {fmt_num(d['divergences'])}")
    for k in ("phi", "psi", "alpha", "beta"):
        print(f"  {k:>6} {fmt(sc['params'][k])}")
    print(f"\nfrom K={args.from_k:g} to K={args.to_k:g} languages (r = {sc['r']:g}) at equal loss, minimum compute"
          " (from a compute-optimal run):")
    for k, label in (("N", "N'/N"), ("D_t", "D_t'/D_t"), ("D_tot", "D_tot'/D_tot"), ("C", "C'/C")):
        print(f"  {label:>13} x {fmt(sc['min_compute'][k])}")
    if "from_run" in sc:
        fr = sc["from_run"]
        print(f"\nfrom your run (N={fmt_num(args.N)}, D={fmt_num(args.D)}; capacity share w_N {fmt(fr['w_N'])}):")
        for k, label in (("N", "N'/N"), ("D_tot", "D_tot'/D_tot"), ("C", "C'/C")):
            print(f"  {label:>13} x {fmt(fr[k])}")
        print(f"  new run: N' = {fmt(fr['N_new'])}, D' = {fmt(fr['D_new'])}")
    print("\niso-loss curve (N'/N -> D_t'/D_t, C'/C):")
    for row in iso.iloc[:: max(1, len(iso) // 8)].itertuples():
        print(f"  N x {row.N_mult:8.3g}  D_t x {row.D_t_mult:9.3g} [{row.D_t_lower:.3g}, {row.D_t_upper:.3g}]  "
              f"C x {row.C_mult:8.3g}  feasible {row.p_feasible:.0%}")
    if related is not None:
        r = info["related"]
        print(f"\nrelatedness extension: phi_rel {fmt(r['params']['phi_rel'])}, psi_rel {fmt(r['params']['psi_rel'])}")
        print("PSIS-LOO (higher elpd is better):")
        for name, row in info["loo"].items():
            print(f"  {name:>14} elpd {row['elpd_loo']:.1f}  diff {row['elpd_diff']:.1f} +- {row['dse']:.1f}  weight {row['weight']:.2f}")
    for key in ("fit", "plot", "table"):
        if key in info:
            print(f"wrote {info[key]}")


def _summ(v, level):
    import numpy as np

    lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(np.mean(v)), "median": float(np.median(v)), "lower": float(lo), "upper": float(hi)}


def _crossover(args: argparse.Namespace) -> None:
    from atlas_bayes import crossover, plots
    from atlas_bayes import cube as cube_lib

    cube = cube_lib.load(args.cube)
    res = crossover.crossover(cube, target=args.target, include_base_compute=args.include_base_compute, budget=args.budget,
                              base_tokens=args.base_tokens, points=args.points, level=args.level, **_sampler(args))
    info = crossover.to_json(res)
    if args.plot:
        plots.crossover_plot(res, args.plot)
        info["plot"] = args.plot
    if args.json:
        emit_json(info)
        return
    d = res.diagnostics
    pct = f"{args.level:.0%}"
    print(f"pretrain from scratch vs finetune on {res.target!r} ({pct} credible intervals; curves from {d['points']}; "
          f"max R-hat {fmt_num(d['max_r_hat'])}, min ESS {fmt_num(d['min_ess_bulk'])}, divergences {fmt_num(d['divergences'])})")
    sections = [("", "base compute sunk (the paper)")] + ([("total_", "equal total compute (base's 6 N D_base counted)")]
                                                           if res.include_base_compute else [])
    for prefix, title in sections:
        print(f"\n{title}:")
        for r in res.table.to_dict("records"):
            notes = []
            if r[f"{prefix}p_cross"] < 1:
                notes.append(f"no crossing within {crossover.SEARCH:g}x the data in {1 - r[f'{prefix}p_cross']:.0%} of draws")
            if r[f"{prefix}extrapolated"] > 0.05:
                notes.append(f"beyond the pretraining data in {r[f'{prefix}extrapolated']:.0%}")
            if r[f"{prefix}below_range"] > 0.05:
                notes.append(f"scratch better from the first finetune point in {r[f'{prefix}below_range']:.0%}")
            le = "<=" if r[f"{prefix}below_range"] > 0.5 else "="
            line = (f"  N={fmt_num(r['N'])}: D* {le} {fmt_num(r[f'{prefix}D_star_median'])} tokens "
                    f"[{fmt_num(r[f'{prefix}D_star_lower'])}, {fmt_num(r[f'{prefix}D_star_upper'])}], "
                    f"C* = {fmt_num(r[f'{prefix}C_star_median'])} FLOPs [{fmt_num(r[f'{prefix}C_star_lower'])}, "
                    f"{fmt_num(r[f'{prefix}C_star_upper'])}]")
            if res.budget is not None:
                line += f"; P(finetune better at {fmt_num(res.budget)} tokens) = {r[f'{prefix}p_finetune_better']:.2f}"
            print(line + (f"  ({'; '.join(notes)})" if notes else ""))
        law = res.power_law if not res.include_base_compute else res.power_law[prefix.rstrip("_") or "sunk"]
        if law:
            g, k = law["gamma"], law["k"]
            print(f"  C*(N) = k N^gamma over {law['sizes']} sizes: gamma = {g['median']:.3g} [{g['lower']:.3g}, {g['upper']:.3g}], "
                  f"k = {k['median']:.3g} [{k['lower']:.3g}, {k['upper']:.3g}]" + (f" ({law['note']})" if law["note"] else ""))
        else:
            print("  C*(N) = k N^gamma: needs crossovers within the data at 2 or more sizes; add pretraining and finetune "
                  "runs at other sizes (or longer runs)")
    if args.plot:
        print(f"\nwrote {args.plot}")
