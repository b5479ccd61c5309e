"""From a parsed sweep to jobs: one :class:`~trainer.runner.Job` per cell, with its runs' ids and steps.

A cell is (group, scale, mixture, U, seed); its token budgets become the runs of one job (branched off a
shared trunk, :mod:`trainer.runner`). Token budgets are rounded to whole steps of
``batch_size x seq_len`` tokens and must leave the warmup before their decay; mixture weights are
resolved for the job's largest budget (:func:`trainer.mixtures.resolve`). Finetune groups get one job
per matching base run (or per external checkpoint), with the base's scale; the base runs keep their
final state. Every impossible cell raises ``ValueError`` here, before any training.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer import mixtures as mix_lib
from trainer import runner, schedule
from trainer.config import ModelConfig, TrainConfig
from trainer.runner import Job, RunSpec

if TYPE_CHECKING:
    from trainer.sweep import Group, Sweep

__all__ = ["plan", "run_label"]


def run_label(group: str, scale: str, mixture: str, unique: tuple[tuple[str, float], ...], seed: int, tokens: float,
              base: str = "") -> str:
    """The run id ``<group>.<scale>[.from[<base>]].<mixture>.U<U>.s<seed>.D<tokens>``."""
    prefix = f"{group}.{scale}" + (f".from[{base}]" if base else "")
    return f"{prefix}.{mixture}.{_u_label(unique)}.s{seed}.D{_si(tokens)}"


def _si(x: float) -> str:
    if math.isinf(x):
        return "inf"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.4g}{suffix}"
    return f"{x:.4g}"


def _u_label(u: tuple[tuple[str, float], ...]) -> str:
    if len(u) == 1 and u[0][0] == "*":
        return "U" + _si(u[0][1])
    return "U(" + ",".join(f"{l}={_si(v)}" for l, v in u) + ")"


def _u_for(u: tuple[tuple[str, float], ...], langs: Sequence[str]) -> dict[str, float]:
    table = dict(u)
    return {l: table.get(l, table.get("*", math.inf)) for l in langs}


def _cell_index(*coords: Any) -> int:
    return zlib.crc32(json.dumps(coords, default=str).encode()) & 0x7FFFFFFF


def _steps(tokens: float, train: TrainConfig, seq_len: int, where: str) -> int:
    per = train.batch_size * seq_len
    steps = int(round(tokens / per))
    if steps < 1:
        raise ValueError(f"{where}: token budget D={tokens:.4g} is less than one step of batch_size x seq_len = {per} tokens")
    start = schedule.decay_start(steps, train.optim.decay_fraction)
    if start < train.optim.warmup_steps:
        raise ValueError(f"{where}: token budget D={tokens:.4g} is {steps} steps of {per} tokens; its decay would start at "
                         f"step {start}, before warmup ends at step {train.optim.warmup_steps}: raise D or lower warmup_steps")
    return steps


def plan(sweep: Sweep, source, runs_dir: str | Path) -> list[Job]:
    """Every job of the sweep, pretraining first; raises ``ValueError`` for any impossible cell."""
    runs_dir = Path(runs_dir)
    langs = list(source.langs)
    eval_langs = tuple(sweep.data.eval_langs or langs)
    available = {l: source.available(l) for l in langs}
    jobs: list[Job] = []
    base_runs: dict[str, list[tuple[Job, RunSpec, float]]] = {}
    needed_bases = {dict(g.base)["group"] for g in sweep.groups if isinstance(g.base, tuple)}
    for g in sweep.groups:
        if g.kind != "pretrain":
            continue
        for scale in g.scales:
            model = sweep.model(scale)
            for m in g.mixtures:
                for u in g.unique:
                    for seed in g.seeds:
                        jobs.append(_job(sweep, g, scale, model, m, u, seed, eval_langs, available, base_runs,
                                         keep=g.save_checkpoints or g.name in needed_bases))
    for g in sweep.groups:
        if g.kind != "finetune":
            continue
        for scale, model, base in _bases(g, base_runs, runs_dir, sweep):
            for m in g.mixtures:
                for u in g.unique:
                    for seed in g.seeds:
                        jobs.append(_job(sweep, g, scale, model, m, u, seed, eval_langs, available, base_runs,
                                         keep=g.save_checkpoints, base=base))
    return jobs


def _job(sweep, g: Group, scale, model, m, u, seed, eval_langs, available, base_runs, *, keep, base=None) -> Job:
    where = f"[[group]] {g.name!r}"
    budgets = [(t, _steps(t, g.train, model.seq_len, where)) for t in g.tokens]
    steps = [s for _, s in budgets]
    if len(set(steps)) < len(steps):
        raise ValueError(f"{where}: token budgets {', '.join(_si(t) for t, _ in budgets)} round to the same number of "
                         f"steps ({steps}); space them further apart")
    U = _u_for(u, m.langs)
    weights = mix_lib.resolve(m, budget=max(t for t, _ in budgets), unique=U, available=available)
    base_id = base[0] if base is not None else ""
    runs = tuple(RunSpec(run_id=run_label(g.name, scale, m.name, u, seed, t, base_id), steps=s, save_checkpoint=keep)
                 for t, s in budgets)
    job = Job(group=g.name, kind=g.kind, scale=scale, model=model, train=g.train, mixture=m.name,
              weights=tuple((l, w) for l, w in weights.items() if w > 0),
              unique=tuple(sorted((l, v) for l, v in U.items() if l in weights and weights[l] > 0)),
              seed=seed, cell_index=_cell_index(g.name, scale, m.name, u, base_id), runs=runs,
              eval_langs=tuple(eval_langs), test_tokens=sweep.data.test_tokens,
              base=base_id, base_checkpoint=str(base[2]) if base else "", base_tokens=int(base[1]) if base else 0)
    if g.kind == "pretrain":
        for (t, _), r in zip(budgets, runs):
            base_runs.setdefault(g.name, []).append((job, r, t))
    return job


def _bases(g: Group, base_runs, runs_dir: Path, sweep: Sweep) -> list[tuple[str, ModelConfig, tuple]]:
    """``(scale, model, (base run id, base tokens, checkpoint path))`` of each base a finetune group names."""
    where = f"[[group]] {g.name!r}.base"
    if isinstance(g.base, str):
        from trainer import checkpoint

        path = Path(g.base) if os.path.isabs(g.base) else Path(sweep.path).parent / g.base
        meta = checkpoint.read_meta(path)
        if "model" not in meta:
            raise ValueError(f"{where}: {str(path)!r} is not a final checkpoint written by the trainer (no model in its metadata)")
        model = ModelConfig(**meta["model"])
        if model.seq_len != sweep.data.seq_len:
            raise ValueError(f"{where}: the checkpoint was trained with seq_len={model.seq_len}, the sweep uses {sweep.data.seq_len}")
        return [(meta.get("scale", "custom"), model, (meta.get("run_id", path.stem), meta.get("tokens", 0), path))]
    sel = dict(g.base)
    matches = []
    for job, run, tokens in base_runs.get(sel["group"], []):
        if "scale" in sel and job.scale != sel["scale"]:
            continue
        if "tokens" in sel and not math.isclose(tokens, float(sel["tokens"]), rel_tol=1e-9):
            continue
        if "mixture" in sel and job.mixture != sel["mixture"]:
            continue
        if "seed" in sel and job.seed != sel["seed"]:
            continue
        matches.append((job.scale, job.model, (run.run_id, run.steps * job.tokens_per_step,
                                               runner.final_checkpoint_path(runs_dir, run.run_id))))
    if not matches:
        have = base_runs.get(sel["group"], [])
        raise ValueError(f"{where} {sel} matches no run of group {sel['group']!r} (its scales: "
                         f"{', '.join(sorted({j.scale for j, _, _ in have}))}; tokens: "
                         f"{', '.join(_si(t) for t in sorted({t for _, _, t in have}))}; mixtures: "
                         f"{', '.join(sorted({j.mixture for j, _, _ in have}))})")
    return matches
