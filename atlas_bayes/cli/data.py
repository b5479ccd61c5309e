"""``atlas import`` and ``atlas info``: bring runs in, and see what a cube holds."""

from __future__ import annotations

import argparse

import numpy as np

from atlas_bayes.cli.common import add_json_flag, emit_json, fmt_num

__all__ = ["register", "describe"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="import a run table (CSV, TSV or parquet, long form) into a run cube",
        description="Import a long-form run table into a netCDF run cube. Columns: N, D, loss and optionally "
        "lang, run, step, seed, U, kind, base, mix:<lang>, U:<lang>. A refused table writes no file.",
    )
    p.add_argument("table", help="path to a .csv, .tsv or .parquet run table")
    p.add_argument("--out", required=True, help="where to write the run cube (.nc)")
    p.add_argument("--units", default="nats/token", help="unit of the loss column (default nats/token)")
    p.add_argument("--drop-invalid", action="store_true", help="drop rows at fault (reported) instead of refusing the table")
    p.add_argument("--columns", help="map your column names to atlas's: OURS=THEIRS,... e.g. N=params,D=tokens,lang=val_set")
    p.add_argument("--ignore", help="columns to leave out: NAME,NAME,...; 'unknown' stands for every column atlas does not use")
    add_json_flag(p)
    p.set_defaults(func=_import)

    p = sub.add_parser("info", help="summarise a run cube: runs, languages, N and D ranges, mixtures, K, epochs")
    p.add_argument("cube", help="run cube (.nc)")
    add_json_flag(p)
    p.set_defaults(func=_info)


def _import(args: argparse.Namespace) -> None:
    from atlas_bayes import tabular

    columns = {}
    for item in (args.columns or "").split(","):
        if not item.strip():
            continue
        ours, sep, theirs = item.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise ValueError(f"--columns expects OURS=THEIRS pairs separated by commas (e.g. N=params); got {item!r}")
        columns[ours.strip()] = theirs.strip()
    ignore = None
    if args.ignore:
        ignore = [c.strip() for c in args.ignore.split(",") if c.strip()]
    cube = tabular.import_table(
        args.table, units=args.units, drop_invalid=args.drop_invalid, out=args.out, columns=columns, ignore=ignore
    )
    info = describe(cube)
    if args.json:
        emit_json({"out": args.out, **info})
    else:
        print(f"wrote {args.out}: {info['runs']} runs, {len(info['languages'])} evaluation language(s), "
              f"{len(info['sources'])} training language(s)")


def describe(cube) -> dict:
    """The facts ``atlas info`` prints, as a dict."""
    from atlas_bayes import cube as cube_lib

    fin = cube_lib.final(cube)
    mix = fin["mix"]
    srcs = [str(s) for s in fin["src"].values]
    mixtures = {}
    for row in mix.values:
        key = ",".join(f"{s}={w:.3g}" for s, w in zip(srcs, row) if w > 0)
        mixtures[key] = mixtures.get(key, 0) + 1
    ep = cube_lib.epochs(fin)
    k = cube_lib.num_languages(fin)
    out = {
        "runs": int(fin.sizes["run"]),
        "languages": cube_lib.languages(fin),
        "sources": srcs,
        "steps": int(cube.sizes.get("step", 0)),
        "units": str(cube["loss"].attrs.get("units", "")),
        "N": [float(fin["N"].min()), float(fin["N"].max())],
        "D": [float(fin["D"].min()), float(fin["D"].max())],
        "compute": [float(cube_lib.compute(fin).min()), float(cube_lib.compute(fin).max())],
        "K": sorted({int(v) for v in k.values}),
        "mixtures": dict(sorted(mixtures.items(), key=lambda kv: -kv[1])),
        "max_epochs": {s: float(ep.sel(src=s).max()) for s in srcs},
        "evaluated_cells": int(np.isfinite(fin["loss"]).sum()),
        "kinds": sorted({str(v) for v in fin["kind"].values}) if "kind" in fin else ["pretrain"],
        "seeds": int(len(np.unique(fin["seed"].values))) if "seed" in fin else 1,
    }
    return out


def _info(args: argparse.Namespace) -> None:
    from atlas_bayes import cube as cube_lib

    cube = cube_lib.load(args.cube)
    info = describe(cube)
    if args.json:
        emit_json(info)
        return
    print(f"run cube {args.cube}")
    print(f"  runs            {info['runs']}" + (f" ({info['steps']} checkpoints on the longest curve)" if info["steps"] else ""))
    print(f"  eval languages  {', '.join(info['languages'])}   (loss in {info['units']})")
    print(f"  train languages {', '.join(info['sources'])}")
    print(f"  N               {fmt_num(info['N'][0])} .. {fmt_num(info['N'][1])} parameters")
    print(f"  D               {fmt_num(info['D'][0])} .. {fmt_num(info['D'][1])} tokens")
    print(f"  C = 6ND         {fmt_num(info['compute'][0])} .. {fmt_num(info['compute'][1])} FLOPs")
    print(f"  K               {', '.join(str(k) for k in info['K'])} training language(s) per run")
    print(f"  kinds           {', '.join(info['kinds'])};  seeds: {info['seeds']}")
    print(f"  mixtures        {len(info['mixtures'])} distinct")
    for key, count in list(info["mixtures"].items())[:8]:
        print(f"    {count:5d} x  {key}")
    if len(info["mixtures"]) > 8:
        print(f"    ... and {len(info['mixtures']) - 8} more")
    print("  max epochs per training language (mix * D / U)")
    for s, e in info["max_epochs"].items():
        print(f"    {s:>10}  {fmt_num(e)}" + ("  (unconstrained)" if e == 0 else ""))
