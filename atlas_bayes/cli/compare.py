"""``atlas compare``: the paper's Table 1 -- held-out R^2 of several laws on several splits -- with intervals."""

from __future__ import annotations

import argparse
import sys

from atlas_bayes.cli.common import add_json_flag, add_level_flag, emit_json, fmt_num

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare laws by held-out R^2, interval coverage and PSIS-LOO (the paper's Table 1)",
        description="Fit each law on each split's training part and score it on the held-out part: R^2 with a "
        "posterior interval, coverage of the predictive intervals, log predictive density, and PSIS-LOO on the "
        "random split. Splits: random (a random share of the configurations), N (largest models), D (longest "
        "runs), C (largest compute 6ND), M (mixtures that are not monolingual, bilingual or Unimax).",
    )
    p.add_argument("cube", help="run cube (.nc), from `atlas import` or `atlas train`")
    p.add_argument("--laws", default="chinchilla,dcsl,msl,atlas",
                   help="laws to compare, comma-separated (default chinchilla,dcsl,msl,atlas); a law the cube cannot "
                        "support is reported as skipped")
    p.add_argument("--splits", default="auto",
                   help="random,N,D,C,M or a subset (default auto: every split the cube can form)")
    p.add_argument("--target", help="evaluation language(s), e.g. fr or fr,de (default: every evaluation language "
                                    "that is also a training language)")
    p.add_argument("--method", default="nuts", choices=("nuts", "svi", "laplace", "point"),
                   help="nuts (default), svi, laplace, or point (Huber/L-BFGS + bootstrap; no PSIS-LOO)")
    p.add_argument("--holdout", type=float, default=0.2, help="share held out by the random, N, D and C splits (default 0.2)")
    p.add_argument("--out", help="write the full table (one row per law, split and target) as CSV here")
    p.add_argument("--per-target", action="store_true", help="also print R^2 per target")
    p.add_argument("--seed", type=int, default=0, help="seed of the random split and the samplers (default 0)")
    b = p.add_argument_group("fits")
    b.add_argument("--prior", default="default", help="default (weakly informative) or paper (published values)")
    b.add_argument("--likelihood", default="normal", help="noise on log-loss: normal or student_t")
    b.add_argument("--pooling", default="none", help="across targets: none (default, one law per target as in the "
                                                     "paper), partial or full")
    b.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4, vectorised)")
    b.add_argument("--warmup", type=int, default=500, help="NUTS warmup iterations per chain (default 500)")
    b.add_argument("--draws", type=int, default=500, help="draws per chain (default 500)")
    b.add_argument("--target-accept", type=float, default=0.8, help="NUTS target acceptance (default 0.8; raise to 0.95 "
                                                                    "on divergences)")
    b.add_argument("--bootstrap", type=int, default=100, help="point method: bootstrap refits (default 100)")
    add_level_flag(p)
    add_json_flag(p)
    p.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> None:
    from atlas_bayes import compare as compare_lib
    from atlas_bayes import cube as cube_lib

    cube = cube_lib.load(args.cube)
    ds = compare_lib.compare(
        cube, laws=args.laws, splits=args.splits, target=args.target, method=args.method, level=args.level,
        holdout=args.holdout, seed=args.seed, prior=args.prior, likelihood=args.likelihood, pooling=args.pooling,
        num_chains=args.chains, num_warmup=args.warmup, num_samples=args.draws, target_accept=args.target_accept, bootstrap=args.bootstrap,
        progress=None if args.json else (lambda line: print(f"atlas compare: {line}", file=sys.stderr, flush=True)),
    )
    if args.out:
        compare_lib.to_frame(ds).to_csv(args.out, index=False)
    if args.json:
        emit_json(compare_lib.to_json(ds))
        return
    print_report(ds, source=args.cube, per_target=args.per_target)
    if args.out:
        print(f"wrote {args.out}")


def _interval(mid: float, lo: float, hi: float) -> str:
    if mid != mid:  # NaN
        return "-"
    return f"{mid:.3f} [{lo:.3f}, {hi:.3f}]"


def _grid(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(header), *(fmt(r) for r in rows)])


def print_report(ds, *, source: str = "", per_target: bool = False) -> None:
    """The terminal report of a comparison (:func:`atlas_bayes.compare.compare`)."""
    from atlas_bayes.compare import ALL, SPLIT_LABELS

    a = ds.attrs
    laws = [str(v) for v in ds["law"].values]
    splits = [str(v) for v in ds["split"].values]
    targets = list(a["targets"])
    pct = f"{a['level']:.0%}"
    how = (f"{a['method']}, {a['num_chains']} chains x {a['num_samples']} draws" if a["method"] == "nuts"
           else f"point fits + {a['bootstrap']} bootstrap refits" if a["method"] == "point" else a["method"])
    n = int(ds["n_train"].sel(lang=ALL).values[0] + ds["n_test"].sel(lang=ALL).values[0])
    print(f"law comparison on {source or 'the cube'}: {n} points, target(s) {', '.join(targets)}; {how}; "
          f"{a['holdout']:.0%} held out by random/N/D/C")
    tests = ", ".join(f"{SPLIT_LABELS[s]} {int(ds['n_test'].sel(split=s, lang=ALL))}" for s in splits)
    print(f"held-out points: {tests}")
    for s, why in a.get("splits_left_out", {}).items():
        print(f"split {s} left out: {why}")
    for what, count in a.get("points_left_out", {}).items():
        print(f"left out of every split: {count} losses of {what}")

    def ok(law, split):
        return str(ds["status"].sel(law=law, split=split).values) == "ok"

    def fitted(law):
        return bool((ds["status"].sel(law=law) != "skipped").any())

    def star(law):  # fitted on some targets only: its average covers those
        return "*" if fitted(law) and str(ds["skipped"].sel(law=law, lang=ALL).values) else ""

    avg = "average over targets" if len(targets) > 1 else targets[0]
    print(f"\nheld-out R^2 ({avg}): posterior median [{pct} interval]")
    header = ["law", *(SPLIT_LABELS[s] for s in splits)]
    rows = []
    for law in laws:
        c = dict(law=law, lang=ALL)
        rows.append([law + star(law), *(_interval(*(float(ds[k].sel({**c, "split": s})) for k in ("r2", "r2_lower", "r2_upper")))
                                        if ok(law, s) else str(ds["status"].sel(law=law, split=s).values) for s in splits)])
    print(_grid(rows, header))
    if per_target and len(targets) > 1:
        for t in targets:
            print(f"\nheld-out R^2, target {t}")
            rows = []
            for law in laws:
                c = dict(law=law, lang=t)
                skip = bool(str(ds["skipped"].sel(law=law, lang=t).values))
                rows.append([law, *("skipped" if skip else _interval(*(float(ds[k].sel({**c, "split": s})) for k in ("r2", "r2_lower", "r2_upper")))
                                    if ok(law, s) else str(ds["status"].sel(law=law, split=s).values) for s in splits)])
            print(_grid(rows, header))

    print(f"\nheld-out coverage of {pct} predictive intervals (nominal {a['level']:.2f}); "
          "mean log predictive density per held-out point (nats, higher is better)")
    header2 = ["law", *(f"{SPLIT_LABELS[s]} cov" for s in splits), *(f"{SPLIT_LABELS[s]} lpd" for s in splits)]
    rows = []
    for law in laws:
        c = dict(law=law, lang=ALL)
        if not fitted(law):
            rows.append([law, *["skipped"] * (2 * len(splits))])
            continue
        rows.append([law + star(law), *(fmt_num(float(ds["coverage"].sel({**c, "split": s})), 2) if ok(law, s) else "-" for s in splits),
                     *(f"{float(ds['lpd'].sel({**c, 'split': s})):.3f}" if ok(law, s) else "-" for s in splits)])
    print(_grid(rows, header2))

    if "random" in splits and a["method"] != "point":
        print("\nPSIS-LOO on the random split's training points (elpd in nats; difference to the best law +- se)")
        rows = []
        for law in laws:
            c = dict(law=law, lang=ALL)
            v = {k: float(ds[k].sel(c)) for k in ("elpd_loo", "elpd_loo_se", "p_loo", "elpd_diff", "elpd_diff_se", "pareto_k_max", "pareto_k_bad")}
            if v["elpd_loo"] != v["elpd_loo"]:
                rows.append([law + star(law), *(["skipped"] if not fitted(law) else ["-"]) * 5])
                continue
            diff = f"{v['elpd_diff']:.1f} +- {v['elpd_diff_se']:.1f}" if v["elpd_diff"] == v["elpd_diff"] else "-"
            rows.append([law + star(law), f"{v['elpd_loo']:.1f} +- {v['elpd_loo_se']:.1f}", f"{v['p_loo']:.1f}", diff,
                         f"{v['pareto_k_max']:.2f}", str(int(v["pareto_k_bad"]))])
        print(_grid(rows, ["law", "elpd_loo", "p_loo", "elpd_diff", "max k", "k>0.7"]))
    elif "random" in splits:
        print("\nPSIS-LOO needs posterior draws: use --method nuts")

    if a["method"] != "point":
        kind = "max R-hat / min bulk ESS / divergences" if a["method"] == "nuts" else "Pareto k of the approximation"
        print(f"\nfit diagnostics ({kind}; seconds)")
        rows = []
        for law in laws:
            cells = []
            for s in splits:
                if not ok(law, s):
                    cells.append(str(ds["status"].sel(law=law, split=s).values))
                    continue
                f = {k: float(ds[k].sel(law=law, split=s)) for k in ("max_r_hat", "min_ess_bulk", "divergences", "pareto_k_approx", "seconds")}
                if a["method"] == "nuts":
                    cells.append(f"{f['max_r_hat']:.3f} / {f['min_ess_bulk']:.0f} / {int(f['divergences'])}; {f['seconds']:.0f}s")
                else:
                    cells.append(f"k {f['pareto_k_approx']:.2f}; {f['seconds']:.0f}s")
            rows.append([law, *cells])
        print(_grid(rows, ["law", *(SPLIT_LABELS[s] for s in splits)]))

    notes = []
    for law in laws:
        for t in [*targets, ALL]:
            why = str(ds["skipped"].sel(law=law, lang=t).values)
            if why and t != ALL:
                notes.append(f"{law} skipped for {t}: {why}")
            elif why and t == ALL and str(ds["status"].sel(law=law).values[0]) != "skipped":
                notes.append(f"{law}*: {why}")
        for s in splits:
            if str(ds["status"].sel(law=law, split=s).values) == "failed":
                notes.append(f"{law} failed on split {s}: {ds['reason'].sel(law=law, split=s).values}")
    if notes:
        print()
        for line in notes:
            print(line)
