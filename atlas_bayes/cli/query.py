"""``atlas predict`` and ``atlas optimal``: query a saved fit without refitting."""

from __future__ import annotations

import argparse

from atlas_bayes.cli.common import add_json_flag, add_level_flag, emit_json, fmt_num, print_predictions, print_table

__all__ = ["register"]


def _config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mix", help="training mixture, e.g. en=0.5,fr=0.5 (default: the target alone)")
    p.add_argument("--U", help="unique tokens: LANG=VALUE,... or one number for every language of --mix "
                               "(default: the fit cube's value for that language, else inf)")
    p.add_argument("--target", help="evaluation language (default: every target of the fit)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict the loss of new runs from a fit",
                       description="Posterior predictive loss of runs nobody trained, from a saved fit.")
    p.add_argument("fit", help="fit file (.nc) from `atlas fit --out`, or a surrogate from `atlas emulate`")
    p.add_argument("--N", help="parameters, e.g. 2e9 or 1e9,2e9 (every combination with --D)")
    p.add_argument("--D", help="tokens seen, e.g. 1e11 or 5e10,1e11")
    p.add_argument("--grid", help="CSV of configurations: columns N, D, [lang], [mix:<lang>...], [U:<lang>...]")
    _config_flags(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws (default 0)")
    add_level_flag(p)
    add_json_flag(p)
    p.set_defaults(func=_predict)

    o = sub.add_parser("optimal", help="compute-optimal N and D for a FLOP budget",
                       description="Compute-optimal model size and tokens for a budget C = 6 N D, with intervals.")
    o.add_argument("fit", help="fit file (.nc) from `atlas fit --out`")
    o.add_argument("--compute", required=True, help="FLOP budget(s), e.g. 1e21 or 1e20,1e21")
    _config_flags(o)
    o.add_argument("--search", action="store_true", help="numerical search even where a closed form exists")
    add_level_flag(o)
    add_json_flag(o)
    o.set_defaults(func=_optimal)


def _predict(args: argparse.Namespace) -> None:
    import pandas as pd

    from atlas_bayes import predict as predict_lib
    from atlas_bayes.results import load_fit
    from surrogate import is_surrogate_file

    if is_surrogate_file(args.fit):  # a saved surrogate (atlas emulate): same flags, same rows
        from atlas_bayes.cli.surrogate import predict_surrogate

        return predict_surrogate(args)
    fit = load_fit(args.fit)
    ds = predict_lib.predict(fit, N=args.N, D=args.D, U=args.U, mix=args.mix, grid=args.grid, target=args.target,
                             level=args.level, seed=args.seed)
    rows = predict_lib.to_rows(ds)
    if args.json:
        emit_json(rows)
        return
    print_predictions(rows, header=f"{fit.law} ({fit.method}) predictions, loss in {ds.attrs['units']}", latent="law",
                      level=args.level)


def _optimal(args: argparse.Namespace) -> None:
    import pandas as pd

    from atlas_bayes import optimal as optimal_lib
    from atlas_bayes.results import load_fit

    fit = load_fit(args.fit)
    ds = optimal_lib.optimal(fit, compute=args.compute, mix=args.mix, U=args.U, target=args.target, level=args.level,
                             method="search" if args.search else "auto")
    rows = optimal_lib.optimal_rows(ds)
    if args.json:
        emit_json(rows)
        return
    pct = f"{args.level:.0%}"
    print(f"compute-optimal runs under the {fit.law} fit ({ds.attrs['method']}; medians over draws, {pct} intervals)")
    table = pd.DataFrame(
        [{"C": r["C"], "lang": r["lang"], "N": r["N"], "N interval": f"{fmt_num(r['N_lower'])}..{fmt_num(r['N_upper'])}",
          "D": r["D"], "D interval": f"{fmt_num(r['D_lower'])}..{fmt_num(r['D_upper'])}", "D/N": r["tokens_per_param"],
          "loss": r["loss"], "loss interval": f"{fmt_num(r['loss_lower'])}..{fmt_num(r['loss_upper'])}"} for r in rows]
    )
    print_table(table, index=False)
