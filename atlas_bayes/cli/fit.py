"""``atlas fit``: fit a law to a run cube by point estimation or Bayesian inference."""

from __future__ import annotations

import argparse

from atlas_bayes.cli.common import add_json_flag, add_level_flag, emit_json, fmt_num, print_table

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from atlas_bayes.fitting import METHODS
    from atlas_bayes.registry import LAWS

    p = sub.add_parser("fit", help="fit a scaling law to a run cube", description="Fit a scaling law to a run cube.")
    p.add_argument("cube", help="run cube (.nc), from `atlas import` or `atlas train`")
    p.add_argument("--law", required=True, help=f"one of: {', '.join(LAWS)}")
    p.add_argument("--method", default="point", choices=METHODS, help="point (Huber/L-BFGS + bootstrap) or a Bayesian method")
    p.add_argument("--target", help="evaluation language to fit (needed when the cube has several); "
                                    "Bayesian methods also take several (fr,de) or 'all' for one joint model")
    p.add_argument("--fix", help="hold parameters fixed: NAME=VALUE,NAME=VALUE")
    p.add_argument("--out", help="write the fit (ArviZ netCDF) here, for `atlas predict` and friends")
    p.add_argument("--seed", type=int, default=0, help="random seed (bootstrap / sampler)")
    p.add_argument("--bootstrap", type=int, default=200, help="point method: bootstrap refits for the interval (default 200)")
    b = p.add_argument_group("Bayesian methods (nuts, svi, laplace)")
    b.add_argument("--prior", default="default", help="default (weakly informative) or paper (published values)")
    b.add_argument("--likelihood", default="normal", help="noise on log-loss: normal or student_t (outlier runs)")
    b.add_argument("--pooling", default="partial", help="several targets: none, partial (default) or full pooling of E and exponents")
    b.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    b.add_argument("--warmup", type=int, default=500, help="NUTS warmup iterations per chain (default 500)")
    b.add_argument("--draws", type=int, default=1000, help="draws per chain (default 1000)")
    b.add_argument("--target-accept", type=float, default=0.8, help="NUTS target acceptance (default 0.8; raise to 0.95 on divergences)")
    add_level_flag(p)
    add_json_flag(p)
    p.set_defaults(func=_fit)


def _fit(args: argparse.Namespace) -> None:
    from atlas_bayes import cube as cube_lib
    from atlas_bayes import results
    from atlas_bayes.fitting import fit

    cube = cube_lib.load(args.cube)
    options = {"seed": args.seed}
    if args.method == "point":
        options["bootstrap"] = args.bootstrap
        ignored = [f"--{k.replace('_', '-')}" for k, default in (("prior", "default"), ("likelihood", "normal"),
                   ("pooling", "partial")) if getattr(args, k) != default]
        if ignored:
            raise ValueError(f"{', '.join(ignored)} apply to Bayesian fits; add --method nuts (or svi, laplace)")
        if args.target and ("," in args.target or args.target == "all"):
            raise ValueError(f"--method point fits one target at a time; got --target {args.target} "
                             "(use a Bayesian --method for a joint fit of several)")
    else:
        options.update(prior=args.prior, likelihood=args.likelihood, pooling=args.pooling, num_chains=args.chains,
                       num_warmup=args.warmup, num_samples=args.draws, target_accept=args.target_accept)
    result = fit(cube, args.law, method=args.method, target=args.target, fix=args.fix, **options)
    if args.out:
        result.save(args.out)
    if args.json:
        emit_json(results.to_json(result, level=args.level))
        return
    table = results.summary(result, level=args.level)
    diag = results.diagnostics(result)
    print(f"{result.law} fit of {result.target!r} by {result.method} on {diag['draws'] * diag['chains']} draws "
          f"({int(result.idata.observed_data.sizes['obs'])} observations, loss in {result.config.units})")
    if result.config.fixed:
        print("fixed: " + ", ".join(f"{k}={fmt_num(v)}" for k, v in result.config.fixed.items()))
    pct = f"{args.level:.0%}"
    table = table.rename(columns={"lower": f"{pct} lower", "upper": f"{pct} upper"})
    fixed = table.pop("fixed")
    if result.method == "point":
        table = table.drop(columns=["r_hat", "ess_bulk", "ess_tail"])
        print(f"estimate = best of {diag.get('n_starts')} L-BFGS starts (Huber delta {result.config.options.get('delta')}); "
              f"sd and interval from {diag.get('bootstrap')} bootstrap refits")
    print_table(table, fixed=fixed.to_numpy())
    if result.method in ("svi", "laplace"):
        print(f"diagnostics: Pareto k {fmt_num(diag.get('pareto_k'), 3)} (approximation trustworthy below 0.7)")
    elif result.method != "point":
        print(f"diagnostics: max R-hat {fmt_num(diag['max_r_hat'])}, min bulk ESS {fmt_num(diag['min_ess_bulk'])}, "
              f"min tail ESS {fmt_num(diag['min_ess_tail'])}, divergences {fmt_num(diag['divergences'])}")
    if args.out:
        print(f"wrote {args.out}")
