"""``atlas emulate``, ``atlas plan``, ``atlas suggest``: the surrogate's verbs (package ``surrogate``)."""

from __future__ import annotations

import argparse

from atlas_bayes.cli.common import add_json_flag, add_level_flag, emit_json, fmt_num, parse_assignments, print_predictions, print_table

__all__ = ["register", "load_model", "predict_surrogate"]


def _add_objective(p, *, targets_required: bool = True) -> None:
    p.add_argument("--targets", required=targets_required, help="evaluation languages whose average loss counts, e.g. fr,sw"
                   + ("" if targets_required else " (default: every evaluation language)"))
    p.add_argument("--languages", help="training languages the mixture may use (default: all the emulator knows)")
    p.add_argument("--objective", default="mean", choices=("mean", "quantile"),
                   help="minimise the expected loss (mean) or a risk-averse quantile of it")
    p.add_argument("--quantile", type=float, default=0.9, help="quantile for --objective quantile (default 0.9)")
    p.add_argument("--U", help="unique tokens per language, LANG=TOKENS,... (default: the training runs' budgets)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts / candidates")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("emulate", help="train the surrogate (a GP per evaluation language) on a run cube and save it",
                       description="Train an emulator of the loss per evaluation language on a run cube; optionally "
                       "around a fitted law's posterior (--prior), which the GP then corrects.")
    p.add_argument("cube", help="run cube (.nc)")
    p.add_argument("--prior", action="append", help="fit file (atlas fit --out) whose law becomes the mean function of "
                   "its target language; repeat for several targets")
    p.add_argument("--out", required=True, help="where to write the surrogate (.nc)")
    p.add_argument("--steps", type=int, default=500, help="Adam steps of the hyperparameter fit (default 500)")
    p.add_argument("--warn-factor", type=float, default=None, help="queries this far beyond the trained N, D range warn (default 2)")
    p.add_argument("--limit-factor", type=float, default=None, help="... and this far are refused (default 100)")
    add_json_flag(p)
    p.set_defaults(func=_emulate)

    p = sub.add_parser("plan", help="the N, D and mixture that minimise the targets' loss for a compute budget",
                       description="Choose N, D = C/6N and the mixture weights that minimise the targets' average loss "
                       "(expected, or a quantile) for a budget of C FLOPs, with the loss interval.")
    p.add_argument("model", nargs="+", help="a surrogate file (atlas emulate), or fit file(s) (atlas fit --out)")
    p.add_argument("--compute", type=float, required=True, help="budget C = 6ND in FLOPs, e.g. 1e20")
    _add_objective(p)
    p.add_argument("--max-extrapolation", type=float, help="how far beyond the trained N, D range to search (default: the warning factor)")
    p.add_argument("--starts", type=int, default=32, help="optimiser starts (default 32)")
    add_level_flag(p)
    add_json_flag(p)
    p.set_defaults(func=_plan)

    p = sub.add_parser("suggest", help="the next runs that most reduce the uncertainty of a decision",
                       description="Rank candidate runs by the expected reduction in the variance of the quantity a "
                       "decision turns on (the optimum's loss for a budget, or the scratch-vs-finetune crossover), "
                       "by conditioning the GP on fantasised runs; picks are greedy, each conditioned on the last.")
    p.add_argument("source", help="a run cube (an emulator is trained on it) or a surrogate file")
    p.add_argument("--n", type=int, default=5, help="runs to propose (default 5)")
    p.add_argument("--decision", default="optimum", choices=("optimum", "crossover"))
    p.add_argument("--compute", type=float, help="budget for --decision optimum, e.g. 1e20 (default: the largest training run's compute)")
    p.add_argument("--N", type=float, help="model size for --decision crossover")
    _add_objective(p, targets_required=False)
    p.add_argument("--prior", action="append", help="fit file(s) for the emulator's mean function (when SOURCE is a cube)")
    p.add_argument("--candidates", type=int, default=256, help="random candidate runs to rank (default 256)")
    p.add_argument("--max-run-compute", type=float, help="largest compute of a proposed run (default: the largest training run's)")
    add_json_flag(p)
    p.set_defaults(func=_suggest)


def load_model(paths):
    """A surrogate file, or one or more fit files as a law-only model."""
    import surrogate
    from atlas_bayes.results import load_fit

    paths = [paths] if isinstance(paths, str) else list(paths)
    if surrogate.is_surrogate_file(paths[0]):
        if len(paths) > 1:
            raise ValueError(f"give one surrogate file, or fit files only; got {len(paths)} paths starting with a surrogate")
        return surrogate.load(paths[0])
    return surrogate.from_fit([load_fit(p) for p in paths])


def _emulate(args: argparse.Namespace) -> None:
    import surrogate
    from atlas_bayes import cube as cube_lib

    cube = cube_lib.load(args.cube)
    kw = {k: v for k, v in (("warn_factor", args.warn_factor), ("limit_factor", args.limit_factor)) if v is not None}
    model = surrogate.emulate(cube, prior=args.prior, steps=args.steps, **kw)
    model.save(args.out)
    info = {"out": args.out, "emulator": model.name, "langs": list(model.langs), "srcs": list(model.srcs),
            "runs": int(len(model.train["N"])), "features": list(model.spec.names),
            "ranges": {k: list(v) for k, v in model.ranges.items()}, "diagnostics": model.diagnostics}
    if args.json:
        emit_json(info)
        return
    import pandas as pd

    print(f"trained {model.name} on {info['runs']} runs: {len(model.langs)} evaluation language(s), "
          f"{len(model.srcs)} training language(s); N in [{fmt_num(model.ranges['N'][0])}, {fmt_num(model.ranges['N'][1])}], "
          f"D in [{fmt_num(model.ranges['D'][0])}, {fmt_num(model.ranges['D'][1])}]")
    rows = {lang: {"runs": d["n_obs"], "noise sd (log)": d["sigma"], "LOO rmse (log)": d["loo_rmse_log"],
                   "LOO 90% coverage": d["loo_coverage90"],
                   "shortest length scales": ", ".join(f"{k}={v:.2g}" for k, v in sorted(d["length_scales"].items(), key=lambda kv: kv[1])[:3])}
            for lang, d in model.diagnostics.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "lang"
    print_table(table)
    print(f"wrote {args.out}")


def _plan(args: argparse.Namespace) -> None:
    import jax

    from surrogate import plan

    model = load_model(args.model)
    result = plan(model, compute=args.compute, targets=args.targets, languages=args.languages, objective=args.objective,
                  quantile=args.quantile, U=parse_assignments(args.U, flag="--U"), level=args.level,
                  max_extrapolation=args.max_extrapolation, n_starts=args.starts, key=jax.random.key(args.seed))
    if args.json:
        emit_json(result.to_dict())
        return
    what = "expected loss" if result.objective == "mean" else f"{result.quantile:g}-quantile of the loss"
    pct = f"{result.level:.0%}"
    print(f"plan for C = {fmt_num(result.compute)} FLOPs, minimising the {what} averaged over {', '.join(result.loss)} "
          f"({model.name}, best of {result.n_starts} starts)")
    print(f"  N = {fmt_num(result.N)} parameters, D = {fmt_num(result.D)} tokens"
          + (f"  (extrapolates {result.extrapolation:.3g}x beyond the trained range)" if result.extrapolation > 1.001 else ""))
    print("  mixture: " + ", ".join(f"{s}={w:.3g}" for s, w in result.mix.items()))
    print(f"  predicted loss ({result.units}), {pct} interval for a run with this configuration:")
    for t, v in result.loss.items():
        print(f"    {t:>8}  {fmt_num(v['mean'])}  [{fmt_num(v['lower'])}, {fmt_num(v['upper'])}]")
    a = result.average
    print(f"    {'average':>8}  {fmt_num(a['mean'])}  [{fmt_num(a['lower'])}, {fmt_num(a['upper'])}]")
    if result.min_share:
        print("  each target kept at least its smallest share in a scored training run: "
              + ", ".join(f"{s}>={w:.3g}" for s, w in result.min_share.items()))


def _suggest(args: argparse.Namespace) -> None:
    import jax

    import surrogate
    from atlas_bayes import cube as cube_lib

    if surrogate.is_surrogate_file(args.source):
        if args.prior:
            raise ValueError("--prior applies when SOURCE is a run cube; this surrogate already has its mean function")
        model = surrogate.load(args.source)
    else:
        model = surrogate.emulate(cube_lib.load(args.source), prior=args.prior)
    defaults = []
    targets, compute = args.targets, args.compute
    if targets is None and args.decision == "optimum":
        targets = list(model.langs)
        defaults.append(f"targets: every evaluation language ({','.join(targets)}; set --targets)")
    if compute is None and args.decision == "optimum":
        import numpy as np

        compute = float(np.max(6 * model.train["N"] * model.train["D"]))
        defaults.append(f"budget: the largest training run's compute, C = {fmt_num(compute)} FLOPs (set --compute)")
    result = surrogate.suggest(model, n=args.n, decision=args.decision, compute=compute, targets=targets,
                               languages=args.languages, objective=args.objective, quantile=args.quantile,
                               U=parse_assignments(args.U, flag="--U"), N=args.N, n_candidates=args.candidates,
                               max_run_compute=args.max_run_compute, key=jax.random.key(args.seed))
    if args.json:
        emit_json(result.to_dict())
        return
    import pandas as pd

    for line in defaults:
        print(f"default {line}")
    print(f"decision: {result.decision}; quantity: {result.quantity}")
    print(f"its sd now (reducible by runs): {fmt_num(result.current_sd)}; ranked {result.n_candidates} candidate runs")
    rows = [{"N": r["N"], "D": r["D"], "compute": r["compute"], "kind": r["kind"],
             "mix": ",".join(f"{s}={w:.2g}" for s, w in r["mix"].items()),
             "variance reduction": r["variance_reduction"], "sd after": r["remaining_sd"]} for r in result.runs]
    table = pd.DataFrame(rows, index=pd.RangeIndex(1, len(rows) + 1, name="pick"))
    print_table(table)


def predict_surrogate(args: argparse.Namespace) -> None:
    """``atlas predict SURROGATE.nc ...``: the same flags and JSON rows as on a fit (called by cli.query)."""
    import pandas as pd

    import surrogate
    from atlas_bayes import predict as predict_lib

    model = surrogate.load(args.fit)
    mix = args.mix
    if mix is None and args.target and args.target in model.srcs and args.grid is None:
        mix = f"{args.target}=1"  # as for a fit: the target alone
    configs = predict_lib.parse_configs(N=args.N, D=args.D, U=args.U, mix=mix, grid=args.grid)
    ds = model.predict(configs=configs, langs=args.target, level=args.level)
    rows = predict_lib.to_rows(ds)
    if args.json:
        emit_json(rows)
        return
    print_predictions(rows, header=f"surrogate {model.name} predictions, loss in {ds.attrs['units']}", latent="latent",
                      level=args.level)
