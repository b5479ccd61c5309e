"""``atlas train`` (run a sweep into a cube), ``atlas world`` (look at a synthetic world) and
``atlas manpages`` (build a real multilingual corpus from Debian's translated manual pages)."""

from __future__ import annotations

import argparse

from atlas_bayes.cli.common import add_json_flag, emit_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a TOML sweep of language models into a run cube (resumable; skips finished runs)",
        description="Train every run of a sweep file (format: trainer/sweep.py docstring; shipped sweeps: demo, "
        "tiny) and write a run cube with learning curves. Finished runs are kept in <out stem>_runs/; run the "
        "same command again to resume after Ctrl-C or a crash.",
    )
    p.add_argument("sweep", help="sweep file (.toml) or the name of a shipped sweep, e.g. demo")
    p.add_argument("--out", required=True, help="run cube to write (.nc)")
    p.add_argument("--workers", type=int, default=1, help="jobs trained at once in separate processes (default 1: one "
                   "process using every local JAX device)")
    p.add_argument("--only", action="append", metavar="PATTERN", help="train only runs whose id matches this glob "
                   "(repeatable), e.g. 'mono.s03.*'")
    p.add_argument("--runs-dir", help="folder of per-run files and checkpoints (default <out stem>_runs)")
    p.add_argument("--dry-run", action="store_true", help="check the sweep and list its runs without training")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("world", help="describe a synthetic world: languages, families, scripts, distances, sample text")
    p.add_argument("config", nargs="?", default="default", help="world TOML file, or 'default'")
    p.add_argument("--seed", type=int, help="override the world's seed")
    add_json_flag(p)
    p.set_defaults(func=_world)

    p = sub.add_parser("manpages", help="build a multilingual text corpus from Debian's translated manual pages")
    p.add_argument("--out", required=True, help="corpus folder to write (<lang>/manpages.jsonl)")
    p.add_argument("--langs", help="comma-separated languages (default: all known: en,de,fr,es,...)")
    p.add_argument("--max-pages", type=int, help="at most this many pages per language")
    p.add_argument("--cache", help="where downloaded .deb packages are kept (default <out>/.debs)")
    add_json_flag(p)
    p.set_defaults(func=_manpages)


def _train(args: argparse.Namespace) -> None:
    from pathlib import Path

    from trainer import sweep as sweep_lib

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1; got {args.workers}")
    spec = sweep_lib.load_sweep(args.sweep)
    if args.dry_run:
        from trainer.corpus import open_source

        source = open_source(spec.data, max_train_tokens=sweep_lib.max_tokens_needed(spec))
        runs_dir = Path(args.runs_dir) if args.runs_dir else sweep_lib.runs_dir_for(args.out)
        jobs = sweep_lib.plan(spec, source, runs_dir)
        if args.only:
            jobs = sweep_lib.select_runs(jobs, args.only)
        rows = [{"run": r.run_id, "steps": r.steps, "tokens": r.steps * j.tokens_per_step, "scale": j.scale,
                 "mixture": j.mixture, "kind": j.kind} for j in jobs for r in j.runs]
        steps = sum(j.total_steps for j in jobs)
        if args.json:
            emit_json({"sweep": spec.name, "runs": rows, "jobs": len(jobs), "steps": steps})
        else:
            for row in rows:
                print(f"{row['run']}  ({row['steps']} steps)")
            print(f"{len(rows)} runs in {len(jobs)} jobs, {steps} optimiser steps in all (branched D-sweeps)")
        return
    if args.workers == 1:  # training in this process (the workers do this themselves)
        from trainer.allocator import retain_freed_memory

        retain_freed_memory()
    result = sweep_lib.run_sweep(spec, out=args.out, workers=args.workers, progress=not (args.quiet or args.json),
                                 only=args.only, runs_dir=args.runs_dir)
    cube = result.cube
    if args.json:
        emit_json({"out": str(result.path), "runs": int(cube.sizes["run"]), "trained": len(result.trained),
                   "skipped": len(result.skipped), "seconds": round(result.seconds, 2),
                   "languages": [str(x) for x in cube["lang"].values]})
        return
    print(f"wrote {result.path}: {cube.sizes['run']} runs ({len(result.trained)} trained now, "
          f"{len(result.skipped)} already done) in {result.seconds:.1f} s; loss in {cube['loss'].attrs['units']} "
          f"on {cube.sizes['lang']} languages")


def _world(args: argparse.Namespace) -> None:
    from trainer.world import load_world

    world = load_world(args.config, seed=args.seed)
    meta, rel = world.metadata(), world.relatedness()
    if args.json:
        emit_json({"languages": meta, "relatedness": rel, "grammar": {l: world.grammar(l) for l in world.langs},
                   "samples": {l: world.sample(l) for l in world.langs}})
        return
    print(f"{len(world.langs)} languages, {len({m['family'] for m in meta.values()})} families, "
          f"{len({m['script'] for m in meta.values()})} scripts (seed {world.cfg.seed})")
    for lang in world.langs:
        m, g = meta[lang], world.grammar(lang)
        print(f"  {lang}  {m['family']}/{m['subfamily'] or '-'}  {m['script']}  {g['order']}  {world.sample(lang, 70)}")
    print("tree distance:")
    print("       " + " ".join(f"{l:>5}" for l in world.langs))
    for l, row in zip(world.langs, rel["tree_distance"]):
        print(f"  {l:>4} " + " ".join(f"{d:5.1f}" for d in row))


def _manpages(args: argparse.Namespace) -> None:
    from trainer import manpages

    langs = [x.strip() for x in args.langs.split(",")] if args.langs else None
    stats = manpages.build(args.out, langs=langs, max_pages=args.max_pages, cache=args.cache, progress=not args.json)
    if args.json:
        emit_json({"out": args.out, "languages": stats})
        return
    for lang, s in stats.items():
        print(f"  {lang}: {s['pages']} pages, {s['bytes']} bytes")
    print(f"corpus written to {args.out} (use it with [data] corpus = \"{args.out}\")")
