"""Sweeps: a TOML file of grids -> jobs -> training (resumable, parallel) -> one run cube.

``atlas train sweep.toml --out cube.nc`` (or :func:`run_sweep`) trains every run of the file with a
progress bar and writes a run cube (:mod:`atlas_bayes.cube`) with learning curves along ``step``.
Each finished run is written at once, atomically, to ``<out stem>_runs/<run id>.nc``; running the
command again skips finished runs (a run whose configuration changed is retrained), resumes an
interrupted job from its last checkpoint and merges every run into the cube. Ctrl-C or a crash loses at
most the run in progress. ``workers > 1`` trains several jobs at once in a process pool; within a
process, a job splits each batch over all local JAX devices.

Sweep file format
-----------------
::

    name = "demo"                  # optional, recorded in the cube
    seed = 0                       # default seed of every group (seeds = [...] overrides)

    [data]                         # trainer.config.DataConfig
    world = "default"              # built-in world, or a world TOML (trainer.world); or instead
    # corpus = "path/to/folder"    # real text (trainer.corpus layouts: <lang>.txt, <lang>/*.jsonl.gz, ...)
    # langs = ["en", "fr"]         # languages to use (default: all)
    # families = { en = "Indo-European" }   # real corpora: family names for the cube's metadata
    seq_len = 64                   # tokens per sequence (bytes; UTF-8)
    test_tokens = 4096             # held-out tokens per language, never trained on
    eval_langs = "all"             # languages every run is scored on (bits per byte)

    [train]                        # trainer.config.TrainConfig, defaults shown
    batch_size = 32
    lr = 3e-3                      # peak; warmup-stable-decay (trainer.schedule)
    warmup_steps = 20
    decay_fraction = 0.1
    final_lr_fraction = 0.0
    weight_decay = 0.1
    b1 = 0.9
    b2 = 0.95
    eps = 1e-8
    clip_norm = 1.0                # 0 = no clipping
    dropout = 0.0
    eval_points = 6                # trunk evaluations per learning curve (+ 2 on the decay)
    checkpoint_every = 500         # steps
    data_parallel = "auto"         # "auto": all local devices; "off": one

    [scales.mine]                  # optional: sizes beyond the built-in s01..s20 (trainer.scales)
    width = 48
    depth = 2
    heads = 4                      # must divide width
    ff_mult = 4

    [[group]]                      # one block per family of runs
    name = "mono"                  # unique; run ids start with it
    kind = "pretrain"              # or "finetune"
    scales = ["s03", "s05"]        # built-in or [scales.*] names, or "all"
    tokens = [1e5, 2e5, 4e5]       # token budgets D: one trunk per cell, branched (trainer.runner)
    mixtures = [{ monolingual = "each" }]   # trainer.mixtures kinds
    unique = [inf]                 # U per language: a number (every language of the mixture),
                                   #   or a table { ama = 2e4 } (others unconstrained); inf = fresh data
    seeds = [0]
    train = { lr = 2e-3 }          # optional overrides of [train] for this group
    save_checkpoints = false       # keep each run's final state (finetune bases always do)

    [[group]]
    name = "ft"
    kind = "finetune"              # continue from a base run, schedule and optimiser reset
    base = { group = "uni", tokens = 4e5 }  # every run of group "uni" with D = 4e5 (one per scale...);
                                   #   may also give scale, mixture (its name), seed; or a checkpoint path
    tokens = [2e4, 4e4, 8e4]       # finetuning tokens (the cube's D); the base's are in D_base
    mixtures = [{ monolingual = ["ama", "bor"] }]

A cell is (group, scale, mixture, U, seed); its PRNG key is ``fold_in(key(seed), cell_index)`` with
``cell_index`` a stable hash of the cell's coordinates, so any run can be recreated alone
(``atlas train sweep.toml --only 'mono.s03.*' --out one.nc`` gives the same numbers).

Run ids read ``<group>.<scale>.<mixture>.U<U>.s<seed>.D<tokens>``, e.g. ``mono.s03.mono:ama.Uinf.s0.D200k``;
a finetune's adds its base, ``ft.s03.from[<base run id>].mono:ama.Uinf.s0.D20k``. Each run's file records
a hash of its own configuration: changing a run's settings retrains it, adding budgets or groups does
not touch the runs already there. Curve points before a run's decay are stable-phase (undecayed)
losses; each ``lr(run, step)`` says where a point lies, and the last point of every run is after its
full decay.
Every error in the file (unknown keys, heads not dividing width, unknown languages, budgets shorter
than warmup, empty corpora, a language without test text) is raised before any training starts.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import os
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple

from trainer import mixtures as mix_lib
from trainer import runner, scales
from trainer.config import DataConfig, ModelConfig, TrainConfig, check_keys, get_int, get_str
from trainer.plan import plan
from trainer.pool import enable_compile_cache, open_source_cached, ordered, run_pool
from trainer.runner import Job

__all__ = ["Group", "Sweep", "SweepResult", "load_sweep", "plan", "run_sweep", "merge", "resolve_path", "runs_dir_for",
           "shipped_sweeps", "max_tokens_needed", "select_runs"]

GROUP_KEYS = ("name", "kind", "scales", "tokens", "mixtures", "unique", "seeds", "train", "save_checkpoints", "base")
SCALE_KEYS = ("width", "depth", "heads", "ff_mult")


@dataclasses.dataclass(frozen=True)
class Group:
    """One ``[[group]]`` of a sweep file, parsed (see the module docstring)."""

    name: str
    kind: str
    scales: tuple[str, ...]
    tokens: tuple[float, ...]
    mixtures: tuple[mix_lib.Mixture, ...]
    unique: tuple[tuple[tuple[str, float], ...], ...]  # each: ((lang | "*", U), ...)
    seeds: tuple[int, ...]
    train: TrainConfig
    save_checkpoints: bool = False
    base: tuple[tuple[str, Any], ...] | str | None = None


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A parsed sweep file."""

    name: str
    data: DataConfig
    train: TrainConfig
    models: tuple[tuple[str, tuple[int, int, int, int]], ...]  # custom scales: name -> (width, depth, heads, ff_mult)
    groups: tuple[Group, ...]
    path: str = ""

    def model(self, scale: str) -> ModelConfig:
        custom = dict(self.models)
        if scale in custom:
            w, d, h, f = custom[scale]
            return ModelConfig(width=w, depth=d, heads=h, ff_mult=f, seq_len=self.data.seq_len, dropout=self.train.dropout)
        return scales.get_scale(scale, seq_len=self.data.seq_len, dropout=self.train.dropout)

    def to_dict(self) -> dict:
        """The resolved configuration, as stored in the cube's attrs."""
        d = dataclasses.asdict(self)
        d["groups"] = [dict(dataclasses.asdict(g), mixtures=[m.name for m in g.mixtures]) for g in self.groups]
        return d


class SweepResult(NamedTuple):
    """What :func:`run_sweep` did: the cube and its path, which runs were trained now and which were
    already there, and the wall time in seconds."""

    cube: Any
    path: Path
    trained: list[str]
    skipped: list[str]
    seconds: float


# ----------------------------------------------------------------------------- parsing


def shipped_sweeps() -> list[str]:
    """Names of the sweep files shipped in ``trainer/data`` (``atlas train demo ...``)."""
    return sorted(p.name[:-5] for p in files("trainer").joinpath("data").iterdir()
                  if p.name.endswith(".toml") and not p.name.startswith("world"))


def resolve_path(spec: str | os.PathLike) -> Path:
    """A sweep file path, or the name of a shipped sweep (``"demo"``)."""
    path = Path(spec)
    if path.exists():
        return path
    shipped = files("trainer").joinpath("data", f"{spec}.toml")
    if shipped.is_file():
        return Path(str(shipped))
    raise FileNotFoundError(f"sweep file {str(spec)!r} not found; shipped sweeps are {', '.join(shipped_sweeps())}")


def _numbers(value: Any, where: str, *, allow_inf: bool = False) -> tuple[float, ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v <= 0 or (math.isinf(v) and not allow_inf):
            raise ValueError(f"{where} must be {'positive numbers (inf allowed)' if allow_inf else 'positive finite numbers'}; got {v!r}")
        out.append(float(v))
    if not out:
        raise ValueError(f"{where} must not be empty")
    return tuple(out)


def _unique(value: Any, where: str, langs: Sequence[str]) -> tuple[tuple[tuple[str, float], ...], ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, Mapping):
            check_keys(v, list(langs), where)
            out.append(tuple(sorted((l, _numbers(u, f"{where}.{l}", allow_inf=True)[0]) for l, u in v.items())))
        else:
            out.append((("*", _numbers(v, where, allow_inf=True)[0]),))
    return tuple(out)


def _parse_group(table: Mapping[str, Any], i: int, sweep_train: TrainConfig, langs: Sequence[str],
                 scale_names: Sequence[str], default_seed: int) -> Group:
    where = f"[[group]] #{i + 1}"
    check_keys(table, GROUP_KEYS, where)
    name = get_str(table, "name", None, where)
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"{where} needs name = \"...\" (letters, digits, '-', '_'); got {name!r}")
    where = f"[[group]] {name!r}"
    kind = get_str(table, "kind", "pretrain", where, choices=("pretrain", "finetune"))
    base = table.get("base")
    if kind == "finetune":
        if base is None:
            raise ValueError(f"{where}: a finetune group needs base = {{ group = \"...\", ... }} or a checkpoint path")
        if "scales" in table:
            raise ValueError(f"{where}: a finetune group takes its scale from its base; remove scales")
        if isinstance(base, Mapping):
            check_keys(base, ("group", "scale", "tokens", "mixture", "seed"), f"{where}.base")
            if not isinstance(base.get("group"), str):
                raise ValueError(f"{where}.base needs group = \"<name of a pretrain group>\"")
            base = tuple(sorted(base.items()))
        elif not isinstance(base, str):
            raise ValueError(f"{where}.base must be a table or a checkpoint path; got {base!r}")
        group_scales: tuple[str, ...] = ()
    else:
        if base is not None:
            raise ValueError(f"{where}: base = ... is only for kind = \"finetune\"")
        raw = table.get("scales")
        if raw is None:
            raise ValueError(f"{where} needs scales = [...] (built-in: {', '.join(scales.SCALES)})")
        group_scales = tuple(scale_names) if raw == "all" else tuple([raw] if isinstance(raw, str) else raw)
        unknown = [s for s in group_scales if s not in scale_names]
        if unknown:
            raise ValueError(f"{where}: unknown scale{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(scale_names)}")
    if "tokens" not in table:
        raise ValueError(f"{where} needs tokens = [...] (token budgets D)")
    tokens = tuple(sorted(set(_numbers(table["tokens"], f"{where}.tokens"))))
    specs = table.get("mixtures")
    if not specs:
        raise ValueError(f"{where} needs mixtures = [{{ monolingual = \"{langs[0]}\" }}, ...]")
    mixtures = []
    for j, spec in enumerate(specs if isinstance(specs, list) else [specs]):
        mixtures += mix_lib.parse(spec, langs, f"{where}.mixtures[{j}]")
    names = [m.name for m in mixtures]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"{where}: mixture{'s' * (len(dups) > 1)} {', '.join(dups)} listed twice")
    seeds = table.get("seeds", [default_seed])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"{where}.seeds must be a list of integers >= 0; got {seeds!r}")
    overrides = table.get("train", {})
    train = TrainConfig.from_table(overrides, where=f"{where}.train", base=sweep_train)
    if "dropout" in overrides and kind == "pretrain" and train.dropout != sweep_train.dropout:
        raise ValueError(f"{where}.train: dropout is part of the model shape; set it in [train] for the whole sweep")
    save = table.get("save_checkpoints", False)
    if not isinstance(save, bool):
        raise ValueError(f"{where}.save_checkpoints must be true or false; got {save!r}")
    return Group(name=name, kind=kind, scales=group_scales, tokens=tokens, mixtures=tuple(mixtures),
                 unique=_unique(table.get("unique", [math.inf]), f"{where}.unique", langs),
                 seeds=tuple(dict.fromkeys(seeds)), train=train, save_checkpoints=save, base=base)


def load_sweep(spec: str | os.PathLike, *, langs: Sequence[str] | None = None) -> Sweep:
    """Parse and validate a sweep file (or a shipped sweep's name).

    ``langs`` are the data's languages, to check mixtures against; by default the sweep's ``[data]`` is
    opened to find them (for a corpus, only the folder listing is read).
    """
    path = resolve_path(spec)
    with open(path, "rb") as f:
        try:
            table = tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"sweep file {str(path)!r} is not valid TOML: {err}") from None
    check_keys(table, ("name", "seed", "data", "train", "scales", "group"), f"sweep file {path.name!r}")
    data = DataConfig.from_table(table.get("data", {}), base_dir=str(path.parent))
    train = TrainConfig.from_table(table.get("train", {}))
    models = []
    for name, spec_ in table.get("scales", {}).items():
        where = f"[scales.{name}]"
        check_keys(spec_, SCALE_KEYS, where)
        missing = [k for k in ("width", "depth", "heads") if k not in spec_]
        if missing:
            raise ValueError(f"{where} needs {', '.join(missing)}")
        dims = tuple(get_int(spec_, k, 4, where, lo=1) for k in SCALE_KEYS)
        try:
            ModelConfig(width=dims[0], depth=dims[1], heads=dims[2], ff_mult=dims[3], seq_len=data.seq_len)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        models.append((name, dims))
    if langs is None:
        langs = _data_langs(data)
    groups_raw = table.get("group", [])
    if not groups_raw:
        raise ValueError(f"sweep file {path.name!r} has no [[group]] of runs")
    seed = get_int(table, "seed", 0, "sweep file", lo=0)
    scale_names = list(scales.SCALES) + [n for n, _ in models]
    groups = tuple(_parse_group(g, i, train, langs, scale_names, seed) for i, g in enumerate(groups_raw))
    names = [g.name for g in groups]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"group name{'s' * (len(dups) > 1)} {', '.join(map(repr, dups))} used twice")
    for g in groups:
        if isinstance(g.base, tuple):
            target = dict(g.base)["group"]
            kinds = {x.name: x.kind for x in groups}
            if kinds.get(target) != "pretrain":
                raise ValueError(f"[[group]] {g.name!r}.base: group {target!r} is not a pretrain group of this sweep; "
                                 f"pretrain groups are {', '.join(n for n, k in kinds.items() if k == 'pretrain')}")
    if data.eval_langs is not None:
        unknown = [l for l in data.eval_langs if l not in langs]
        if unknown:
            raise ValueError(f"[data] eval_langs: {', '.join(map(repr, unknown))} not in the data; it has {', '.join(langs)}")
    name = get_str(table, "name", path.stem, "sweep file")
    return Sweep(name=name, data=data, train=train, models=tuple(models), groups=groups, path=str(path))


def _data_langs(data: DataConfig) -> list[str]:
    if data.corpus is not None:
        from trainer.corpus import _discover

        found = list(_discover(Path(data.corpus), data.glob))
        if not found:
            raise ValueError(f"empty corpus: no text found under {data.corpus!r}")
        if data.langs:
            missing = [l for l in data.langs if l not in found]
            if missing:
                raise ValueError(f"corpus {data.corpus!r} has no text for {', '.join(map(repr, missing))}; it has {', '.join(found)}")
            return list(data.langs)
        return found
    from trainer.world import load_world

    langs = list(load_world(data.world, seed=data.world_seed).langs)
    if data.langs:
        unknown = [l for l in data.langs if l not in langs]
        if unknown:
            raise ValueError(f"[data] langs: {', '.join(map(repr, unknown))} not in the world; it has {', '.join(langs)}")
        return list(data.langs)
    return langs


# ----------------------------------------------------------------------------- execution


def runs_dir_for(out: str | os.PathLike) -> Path:
    """The folder of per-run files next to ``out``: ``cube.nc`` -> ``cube_runs/``."""
    out = Path(out)
    return out.with_name(out.stem + "_runs")


def max_tokens_needed(sweep: Sweep) -> float:
    """An upper bound on the training tokens any run of ``sweep`` reads from one language (reading cap)."""
    biggest = max(max(g.tokens) for g in sweep.groups)
    finite_u = [v for g in sweep.groups for u in g.unique for _, v in u if math.isfinite(v)]
    return max([biggest] + finite_u) + 2 * sweep.data.seq_len + 2


def _attrs(sweep: Sweep, source) -> dict:
    import trainer

    attrs = {"source": "atlas train", "trainer_version": trainer.__version__, "sweep": sweep.to_dict(),
             "data": source.describe(), "language_metadata": source.metadata()}
    rel = source.relatedness()
    if rel is not None:
        attrs["relatedness"] = rel
    return attrs


def run_sweep(spec: str | os.PathLike | Sweep, *, out: str | os.PathLike, workers: int = 1, progress: bool = True,
              only: Sequence[str] | None = None, runs_dir: str | os.PathLike | None = None,
              compile_cache: bool = True, on_plan: Callable[[list[Job]], None] | None = None) -> SweepResult:
    """Train every missing run of a sweep and write the run cube to ``out``.

    Parameters
    ----------
    spec
        Sweep file, shipped sweep name (``"demo"``) or a parsed :class:`Sweep`.
    out
        The cube (``.nc``); per-run files go to ``runs_dir`` (default ``<out stem>_runs/``).
    workers
        Jobs trained at once (separate processes); 1 trains in this process on all local devices.
    only
        Glob patterns of run ids to train (with the bases their finetunes need); the cube holds those runs.
    compile_cache
        Keep XLA executables in ``<runs_dir>/xla_cache`` so reruns and workers skip recompiling.
    """
    t0 = time.perf_counter()
    sweep = spec if isinstance(spec, Sweep) else load_sweep(spec)
    out = Path(out)
    runs_dir = Path(runs_dir) if runs_dir is not None else runs_dir_for(out)
    cap = max_tokens_needed(sweep)
    text_cache = str(runs_dir / "text")
    source = open_source_cached(sweep.data, cap, text_cache)
    jobs = plan(sweep, source, runs_dir)
    if only:
        jobs = select_runs(jobs, only)
    if on_plan is not None:
        on_plan(jobs)
    attrs = _attrs(sweep, source)
    sources = list(source.langs)
    todo = [j for j in jobs if any(not runner.run_done(runs_dir, j, r) for r in j.runs)]
    skipped = [r.run_id for j in jobs for r in j.runs if runner.run_done(runs_dir, j, r)]
    total = sum(_remaining_steps(j, runs_dir) for j in todo)
    if compile_cache:
        enable_compile_cache(runs_dir / "xla_cache")
    from tqdm.auto import tqdm

    trained: list[str] = []
    n_runs = sum(len(j.runs) for j in jobs)
    bar = tqdm(total=total, unit="step", desc=f"atlas train {sweep.name}", disable=not progress or total == 0,
               dynamic_ncols=True, smoothing=0.05)
    bar.set_postfix_str(f"runs {len(skipped)}/{n_runs}")

    def finished(ids: list[str]) -> None:
        trained.extend(ids)
        bar.set_postfix_str(f"runs {len(skipped) + len(trained)}/{n_runs}")

    try:
        if workers <= 1:
            for job in ordered(todo):
                finished(runner.run_job(job, source, runs_dir=runs_dir, sources=sources, attrs=attrs, progress=bar.update))
        else:
            run_pool(todo, sweep.data, cap, text_cache, runs_dir, sources, attrs, workers, bar, finished,
                     str(runs_dir / "xla_cache") if compile_cache else None)
    except KeyboardInterrupt:
        bar.close()
        done = [j for j in jobs if all(runner.run_done(runs_dir, j, r) for r in j.runs)]
        if done:
            merge(runs_dir, done, attrs=attrs, out=out)
        n_done = sum(runner.run_done(runs_dir, j, r) for j in jobs for r in j.runs)
        import sys

        print(f"atlas train: interrupted with {n_done} of {n_runs} runs finished (kept in {runs_dir}); "
              "run the same command again to resume", file=sys.stderr)
        raise
    bar.close()
    cube = merge(runs_dir, jobs, attrs=attrs, out=out)
    return SweepResult(cube=cube, path=out, trained=trained, skipped=skipped, seconds=time.perf_counter() - t0)


def _remaining_steps(job: Job, runs_dir: Path) -> int:
    left = [r for r in job.runs if not runner.run_done(runs_dir, job, r)]
    return dataclasses.replace(job, runs=tuple(left)).total_steps if left else 0


def select_runs(jobs: list[Job], patterns: Sequence[str]) -> list[Job]:
    """The jobs cut down to the runs whose ids match a glob of ``patterns``, plus the finetune bases they need."""
    picked = {}
    for j in jobs:
        runs = tuple(r for r in j.runs if any(fnmatch.fnmatchcase(r.run_id, p) for p in patterns))
        if runs:
            picked[j.job_hash] = dataclasses.replace(j, runs=runs)
    if not picked:
        raise ValueError(f"--only {' '.join(patterns)} matches no run of the sweep (run ids look like {jobs[0].runs[0].run_id!r})")
    bases = {j.base for j in picked.values() if j.base}
    for j in jobs:
        runs = tuple(r for r in j.runs if r.run_id in bases)
        if runs and j.job_hash not in picked:
            picked[j.job_hash] = dataclasses.replace(j, runs=runs)
    return list(picked.values())


# ----------------------------------------------------------------------------- merging


def merge(runs_dir: str | os.PathLike, jobs: Sequence[Job], *, attrs: dict | None = None,
          out: str | os.PathLike | None = None):
    """The run cube of ``jobs``' finished runs (read from their files), written to ``out`` if given."""
    import numpy as np
    import xarray as xr

    from atlas_bayes import cube as cube_lib

    runs_dir = Path(runs_dir)
    parts = []
    for j in jobs:
        for r in j.runs:
            if runner.run_done(runs_dir, j, r):
                ds = cube_lib.read_netcdf(runner.run_path(runs_dir, r.run_id))
                ds.attrs = {}
                parts.append(ds)
    if not parts:
        raise ValueError(f"no finished runs in {str(runs_dir)!r} to merge")
    cube = xr.concat(parts, dim="run", join="outer", data_vars="all", coords="different", compat="equals",
                     combine_attrs="drop_conflicts")
    cube["mix"] = cube["mix"].fillna(0.0)
    cube["U"] = cube["U"].fillna(np.inf)
    cube["epochs"] = cube["epochs"].fillna(0.0)
    cube.attrs = dict(attrs or {})
    cube["loss"].attrs["units"] = runner.UNITS
    cube_lib.validate(cube)
    if out is not None:
        cube_lib.write_netcdf(cube, out)
    return cube
