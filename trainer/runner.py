"""One job of a sweep: a model trained on one mixture, branched into one run per token budget.

A *job* is a sweep cell (scale x mixture x U x seed) with several token budgets ``D_1 < ... < D_n``
(``S_i`` steps each). Warmup-stable-decay schedules agree up to their own decay
(:mod:`trainer.schedule`), so the job trains one *trunk* at the stable learning rate; when the trunk
reaches budget ``i``'s decay start ``b_i = S_i - round(0.1 S_i)``, a copy of its state is decayed over
``S_i - b_i`` steps and that branch's final state is run ``i`` of the cube. Data are a pure function of
the step (:mod:`trainer.sampler`), so each branch is exactly the run one would get by training budget
``i`` alone; the job costs ``b_n + sum_i (S_i - b_i)`` steps, about ``1.1 + 0.1 (n - 1)`` runs of the
largest budget at 10% decay rather than ``n``.

Evaluations (bits per byte on every evaluation language's held-out text) happen at
``train.eval_points`` geometrically spaced trunk steps, at every branch point, half-way through each
decay and at its end; metrics are fetched from the device only there. Each run's learning curve is the
trunk's evaluations up to its branch point followed by its own.

Each finished run is written at once, atomically, as a one-run cube ``<runs_dir>/<run id>.nc``; the
trunk is checkpointed every ``train.checkpoint_every`` steps and at every branch point
(``<runs_dir>/checkpoints/<job hash>.npz``), so an interrupted job resumes where it stopped and a
crash loses at most the run in progress.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from trainer import checkpoint, sampler as sampler_lib, schedule, scales
from trainer.config import PAD, ModelConfig, TrainConfig
from trainer.train import Trainer, TrainState, bits_per_byte, hyperparams, make_trainer

__all__ = ["RunSpec", "Job", "run_job", "run_done", "run_path", "final_checkpoint_path", "job_streams", "curve_steps",
           "UNITS"]

UNITS = "bits/byte"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of the cube: a token budget of a job."""

    run_id: str
    steps: int
    save_checkpoint: bool = False


@dataclasses.dataclass(frozen=True)
class Job:
    """A sweep cell; see the module docstring. ``weights`` and ``unique`` are ``((lang, value), ...)``."""

    group: str
    kind: str
    scale: str
    model: ModelConfig
    train: TrainConfig
    mixture: str
    weights: tuple[tuple[str, float], ...]
    unique: tuple[tuple[str, float], ...]
    seed: int
    cell_index: int
    runs: tuple[RunSpec, ...]
    eval_langs: tuple[str, ...]
    test_tokens: int
    base: str = ""
    base_checkpoint: str = ""
    base_tokens: int = 0

    def _core(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("runs", "base_checkpoint"):
            d.pop(k)
        return d

    @staticmethod
    def _hash(obj: Any) -> str:
        return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def job_hash(self) -> str:
        """Content hash of the job with all its budgets (names its trunk checkpoint)."""
        return self._hash([self._core(), [(r.run_id, r.steps) for r in self.runs]])

    def run_hash(self, run: RunSpec) -> str:
        """Content hash of one run: it depends on its own budget only, not on the job's other budgets."""
        return self._hash([self._core(), run.run_id, run.steps])

    @property
    def tokens_per_step(self) -> int:
        return self.train.batch_size * self.model.seq_len

    @property
    def total_steps(self) -> int:
        """Optimiser steps the job takes: the trunk to the last branch point plus every decay."""
        starts = [schedule.decay_start(r.steps, self.train.optim.decay_fraction) for r in self.runs]
        return max(starts) + sum(r.steps - b for r, b in zip(self.runs, starts))

    def key(self) -> jax.Array:
        """The cell's PRNG key, ``fold_in(key(seed), cell_index)``: any run can be recreated alone."""
        return jax.random.fold_in(jax.random.key(self.seed), self.cell_index)


def _safe(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", run_id)


def run_path(runs_dir: Path, run_id: str) -> Path:
    return Path(runs_dir) / f"{_safe(run_id)}.nc"


def final_checkpoint_path(runs_dir: Path, run_id: str) -> Path:
    return Path(runs_dir) / "final" / f"{_safe(run_id)}.npz"


def run_done(runs_dir: str | Path, job: Job, run: RunSpec) -> bool:
    """Whether ``run``'s file exists, was made by this very configuration, and (if the run must keep its
    final state, e.g. as a finetune base) its final checkpoint exists."""
    path = run_path(Path(runs_dir), run.run_id)
    if not path.exists() or (run.save_checkpoint and not final_checkpoint_path(Path(runs_dir), run.run_id).exists()):
        return False
    from atlas_bayes import cube as cube_lib

    try:
        return cube_lib.read_netcdf(path).attrs.get("run_hash") == job.run_hash(run)
    except (ValueError, OSError):
        return False


# ----------------------------------------------------------------------------- data


def job_streams(job: Job, source) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Training streams per language, and the ``U`` each run records (``inf`` when unconstrained).

    A finite U budget gives the first ``U`` tokens, however few of them the job reads (so the epoch
    orders, drawn over all of them, do not depend on the job's other budgets). Without one, the stream
    holds what the job needs, read in order; a real corpus smaller than that is repeated, and its size
    is recorded as ``U``.
    """
    weights, unique = dict(job.weights), dict(job.unique)
    need = sampler_lib.sequences_needed(weights, batch_size=job.train.batch_size, total_steps=max(r.steps for r in job.runs))
    streams, U = {}, {}
    for lang, n_seq in need.items():
        n = n_seq * job.model.seq_len + 1
        avail = source.available(lang)
        u = unique.get(lang, math.inf)
        if math.isfinite(u):
            if u > avail:
                raise ValueError(f"U={u:.4g} tokens for {lang!r} exceeds the {avail:.4g} training tokens the data holds")
            streams[lang], U[lang] = source.train_tokens(lang, int(u)), float(int(u))
        elif avail >= n:
            streams[lang], U[lang] = source.train_tokens(lang, n), math.inf
        else:
            streams[lang], U[lang] = source.train_tokens(lang, int(avail)), float(int(avail))
    return streams, U


def _eval_windows(job: Job, source, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out windows ``[C, rows, T + 1]`` and the evaluation-language index of each chunk."""
    T = job.model.seq_len
    chunks, owner = [], []
    for i, lang in enumerate(job.eval_langs):
        tokens = np.asarray(source.test_tokens(lang, job.test_tokens), dtype=np.int32)
        if tokens.size < T + 1:
            tokens = np.concatenate([tokens, np.full(T + 1 - tokens.size, PAD, np.int32)])
        n = (tokens.size - 1) // T
        windows = np.lib.stride_tricks.sliding_window_view(tokens[: n * T + 1], T + 1)[::T]
        pad = (-n) % rows
        windows = np.concatenate([windows, np.full((pad, T + 1), PAD, np.int32)])
        for c in range(windows.shape[0] // rows):
            chunks.append(windows[c * rows:(c + 1) * rows])
            owner.append(i)
    return np.stack(chunks), np.asarray(owner)


# ----------------------------------------------------------------------------- the job


_LATTICE = sorted({int(round(2 ** (j / 2))) for j in range(0, 100)})  # steps 1, 2, 3, 4, 6, 8, 11, 16, 23, ...


def curve_steps(steps: int, *, decay_fraction: float, eval_points: int) -> tuple[list[int], list[int]]:
    """Where a run of ``steps`` steps is evaluated: ``(trunk steps, decay steps)``.

    The trunk points are the last ``eval_points - 1`` points of a fixed lattice (ratio sqrt 2) before the
    decay start, then the decay start; the decay points are half-way and the end. They depend on the
    run alone, so a run trained alone has the same curve as the same run branched off a shared trunk,
    and runs of one job mostly share their trunk evaluations.
    """
    b = schedule.decay_start(steps, decay_fraction)
    trunk = [p for p in _LATTICE if p < b][-(eval_points - 1):] if eval_points > 1 else []
    trunk = trunk + ([b] if b > 0 else [])
    decay = sorted({b + (steps - b) // 2, steps} - {b})
    return trunk, decay


class _Evaluator:
    def __init__(self, trainer: Trainer, windows: np.ndarray, owner: np.ndarray, n_langs: int):
        self.trainer, self.owner, self.n_langs = trainer, owner, n_langs
        self.windows = jax.device_put(windows, jax.sharding.NamedSharding(trainer.mesh, jax.sharding.PartitionSpec(None, "data")))

    def __call__(self, state: TrainState, metrics: dict | None, lr: float, job: Job) -> dict:
        nats, count = self.trainer.evaluate(state.params, self.windows)
        nats = np.bincount(self.owner, weights=np.asarray(nats, dtype=float), minlength=self.n_langs)
        count = np.bincount(self.owner, weights=np.asarray(count, dtype=float), minlength=self.n_langs)
        step = int(state.step)
        return {"step": step, "tokens": step * job.tokens_per_step, "loss": bits_per_byte(nats, count).tolist(),
                "train_loss": float(metrics["loss"]) / math.log(2.0) if metrics else math.nan, "lr": float(lr)}


def _devices(job: Job) -> tuple:
    from trainer.train import local_devices

    devices = local_devices(job.train.data_parallel)
    n = max(k for k in range(1, len(devices) + 1) if job.train.batch_size % k == 0)
    if n < len(devices):
        warnings.warn(f"batch_size={job.train.batch_size} does not split over {len(devices)} devices; training on {n}. "
                      f"Use a batch size divisible by {len(devices)} to use them all.", stacklevel=3)
    return devices[:n]


def run_job(job: Job, source, *, runs_dir: str | Path, sources: Sequence[str] | None = None,
            attrs: dict | None = None, progress: Callable[[int], None] | None = None,
            devices: Sequence[Any] | None = None) -> list[str]:
    """Train ``job`` (resuming from its checkpoint if one exists) and write every missing run's file.

    Returns the ids of the runs written now. ``sources`` is the ``src`` coordinate of the run files
    (default: the mixture's languages); ``attrs`` go into every run file (language metadata,
    relatedness...). ``progress(n)`` is called with the number of optimiser steps just taken.
    """
    runs_dir = Path(runs_dir)
    job_hash = job.job_hash
    todo = sorted((r for r in job.runs if not run_done(runs_dir, job, r)), key=lambda r: r.steps)
    if not todo:
        return []
    trainer = make_trainer(job.model, tuple(devices) if devices is not None else _devices(job))
    replicated = jax.sharding.NamedSharding(trainer.mesh, jax.sharding.PartitionSpec())
    opt = job.train.optim
    streams, U = job_streams(job, source)
    init_key, data_key = jax.random.split(job.key())
    data_seed = int(jax.random.randint(data_key, (), 0, 2**31 - 1))
    smp = sampler_lib.Sampler(streams, dict(job.weights), batch_size=job.train.batch_size, seq_len=job.model.seq_len,
                              total_steps=todo[-1].steps, seed=data_seed,
                              shuffle=[l for l, u in U.items() if math.isfinite(u)])
    windows, owner = _eval_windows(job, source, job.train.batch_size)
    evaluate = _Evaluator(trainer, windows, owner, len(job.eval_langs))

    starts = [schedule.decay_start(r.steps, opt.decay_fraction) for r in todo]
    own = [curve_steps(r.steps, decay_fraction=opt.decay_fraction, eval_points=job.train.eval_points) for r in todo]
    evals = sorted({p for trunk, _ in own for p in trunk})
    last_start = max(starts)
    trunk_lr = schedule.values(schedule.trunk(opt), 0, last_start + 1)

    state = trainer.init(init_key, hyperparams(opt))
    ckpt_path = runs_dir / "checkpoints" / f"{job_hash}.npz"
    history: list[dict] = []
    if ckpt_path.exists() and checkpoint.read_meta(ckpt_path).get("job_hash") == job_hash:
        restored, meta = checkpoint.restore(ckpt_path, state, sharding=replicated)
        seen = {h["step"] for h in meta["history"]}
        if all(p in seen for p in evals if p <= meta["step"]):  # else (run files deleted since) start afresh
            state, history = restored, meta["history"]
    if int(state.step) == 0 and job.kind == "finetune":
        params, _ = checkpoint.load_params(job.base_checkpoint, state.params)
        state = state._replace(params=jax.device_put(params, replicated))

    bounded = trainer.bounded_dispatch

    def train(st: TrainState, lrs: np.ndarray, start: int, stop: int):
        metrics = previous = None
        for s in range(start, stop):  # the hot loop: nothing is fetched from the device
            st, metrics = trainer.step(st, smp.batch(s), lrs[s])
            if bounded:  # see Trainer.bounded_dispatch: wait for the step before, never the current one
                if previous is not None:
                    previous.block_until_ready()
                previous = metrics["loss"]
        if progress and stop > start:
            progress(stop - start)
        return st, metrics

    step = int(state.step)
    every = job.train.checkpoint_every
    events = sorted({p for p in evals if p > step} | {b for b in starts if b >= step}
                    | set(range((step // every + 1) * every, last_start, every)))
    metrics, written = None, []
    for event in events:
        state, m = train(state, trunk_lr, step, event)
        metrics, step = m or metrics, event
        if step in evals and not any(h["step"] == step for h in history):
            history.append(evaluate(state, metrics, trunk_lr[max(step - 1, 0)], job))
        branching = [i for i, b in enumerate(starts) if b == step]
        if branching or step % every == 0:
            checkpoint.save(ckpt_path, state, meta={"job_hash": job_hash, "step": step, "history": history})
        for i in branching:
            run, (trunk_points, decay_points) = todo[i], own[i]
            lrs = schedule.values(schedule.wsd(opt, run.steps), 0, run.steps)
            # The trunk's buffers are donated to the next step: branch off a copy, except for the last branch.
            branch = state if step == last_start and i == branching[-1] else trainer.copy(state)
            curve = [h for h in history if h["step"] in trunk_points]
            bm = metrics
            for stop in decay_points:
                branch, m = train(branch, lrs, int(branch.step), stop)
                bm = m or bm
                curve.append(evaluate(branch, bm, lrs[stop - 1], job))
            _write_run(job, run, curve, U, smp, runs_dir, list(sources or dict(job.weights)), attrs or {})
            if run.save_checkpoint:
                checkpoint.save(final_checkpoint_path(runs_dir, run.run_id), branch,
                                meta={"run_id": run.run_id, "run_hash": job.run_hash(run), "scale": job.scale,
                                      "model": dataclasses.asdict(job.model), "tokens": run.steps * job.tokens_per_step})
            written.append(run.run_id)
    ckpt_path.unlink(missing_ok=True)
    return written


def _write_run(job: Job, run: RunSpec, curve: list[dict], U: dict[str, float], smp: sampler_lib.Sampler,
               runs_dir: Path, srcs: list[str], attrs: dict) -> Path:
    from atlas_bayes import cube as cube_lib

    weights = dict(job.weights)
    drawn = smp.tokens_drawn(run.steps)
    n, n_ne = scales.count_params(job.model)
    tokens = run.steps * job.tokens_per_step
    u = np.array([[U.get(s, math.inf) for s in srcs]])
    epochs = np.array([[drawn.get(s, 0) / U[s] if math.isfinite(U.get(s, math.inf)) else 0.0 for s in srcs]])
    base_tokens = float(job.base_tokens)
    config = {"group": job.group, "kind": job.kind, "scale": job.scale, "model": dataclasses.asdict(job.model),
              "train": dataclasses.asdict(job.train), "mixture": job.mixture, "weights": weights,
              "unique": dict(job.unique), "seed": job.seed, "cell_index": job.cell_index, "steps": run.steps,
              "tokens": tokens, "base": job.base}
    step_vars = {k: np.array([[h[k] for h in curve]]) for k in ("train_loss", "lr", "step")}
    cube = cube_lib.make_cube(
        loss=np.array([[[h["loss"][i] for h in curve] for i in range(len(job.eval_langs))]]),
        N=np.array([float(n)]),
        D=np.array([[float(h["tokens"]) for h in curve]]),
        mix=np.array([[weights.get(s, 0.0) for s in srcs]]),
        U=u,
        run=[run.run_id],
        lang=list(job.eval_langs),
        src=srcs,
        seed=np.array([job.seed]),
        kind=[job.kind],
        base=[job.base],
        units=UNITS,
        attrs=dict(attrs) | {"run_hash": job.run_hash(run)},
        extra={
            "N_nonembed": (("run",), np.array([float(n_ne)])),
            "epochs": (("run", "src"), epochs),
            "D_base": (("run",), np.array([base_tokens])),
            "flops_per_token": (("run",), np.array([scales.flops_per_token(job.model)])),
            "train_loss": (("run", "step"), step_vars["train_loss"]),
            "lr": (("run", "step"), step_vars["lr"]),
            "steps": (("run", "step"), step_vars["step"].astype(float)),
            "group": (("run",), np.array([job.group], dtype=object)),
            "scale": (("run",), np.array([job.scale], dtype=object)),
            "mixture": (("run",), np.array([job.mixture], dtype=object)),
            "cell_index": (("run",), np.array([job.cell_index], dtype=np.int64)),
            "config": (("run",), np.array([json.dumps(config, sort_keys=True, default=str)], dtype=object)),
        },
    )
    cube["train_loss"].attrs["units"] = UNITS
    cube["epochs"].attrs["long_name"] = "epochs over each language's unique tokens (tokens drawn / U; 0 when U is inf)"
    cube["D_base"].attrs["long_name"] = "tokens the base model of a finetune was trained on (0 for pretraining)"
    return cube_lib.write_netcdf(cube, run_path(runs_dir, run.run_id))
