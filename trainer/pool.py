"""Running sweep jobs: in this process, or several at once in a pool of worker processes.

Workers are spawned (JAX is not fork-safe), open the sweep's text source once each, share the XLA
compilation cache on disk (so a shape is compiled once per machine rather than once per worker), keep
freed memory rather than page-fault it in again each step (:mod:`trainer.allocator`) and report
optimiser steps to the parent's progress bar over a queue. A finetune job is submitted only once
its base run's final checkpoint exists. Ctrl-C stops every worker within a few seconds; what they were
training resumes from its last checkpoint on the next run.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import queue as queue_lib
import time
from pathlib import Path

from trainer import runner
from trainer.config import DataConfig
from trainer.runner import Job

__all__ = ["open_source_cached", "enable_compile_cache", "ordered", "run_pool"]

_SOURCES: dict = {}  # a one-entry cache: the text source of the sweep this process is working on


def open_source_cached(data: DataConfig, cap: float, text_cache: str | None):
    key = (data, cap, text_cache)
    if key not in _SOURCES:
        from trainer.corpus import open_source

        _SOURCES.clear()
        _SOURCES[key] = open_source(data, max_train_tokens=cap, cache_dir=text_cache)
    return _SOURCES[key]


def enable_compile_cache(path: Path) -> None:
    import jax

    if not jax.config.jax_compilation_cache_dir:
        path.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


_WORKER: dict = {}  # per worker process: the progress queue it was started with


def _init_worker(cache_dir: str | None, progress_queue) -> None:
    from trainer.allocator import retain_freed_memory

    retain_freed_memory()
    _WORKER["progress"] = progress_queue
    if cache_dir:
        enable_compile_cache(Path(cache_dir))


def _work(job: Job, data: DataConfig, cap: float, text_cache: str | None, runs_dir: str, sources: list[str],
          attrs: dict) -> list[str]:
    source = open_source_cached(data, cap, text_cache)

    def report(n: int) -> None:
        try:
            _WORKER["progress"].put(n)
        except (OSError, EOFError):  # the main process is gone or shutting down: keep training
            pass

    try:
        return runner.run_job(job, source, runs_dir=runs_dir, sources=sources, attrs=attrs, progress=report)
    except KeyboardInterrupt:  # Ctrl-C: the job's last checkpoint stays for the next run; no traceback
        return []


def ordered(jobs: list[Job]) -> list[Job]:
    return sorted(jobs, key=lambda j: j.kind == "finetune")


def run_pool(todo: list[Job], data: DataConfig, cap: float, text_cache: str, runs_dir: Path, sources: list[str], attrs: dict,
             workers: int, bar, finished, cache_dir: str | None) -> None:
    """Train ``todo`` on ``workers`` processes; ``finished(run_ids)`` is called as jobs complete."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    waiting = ordered(todo)
    running: dict[cf.Future, Job] = {}
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                initargs=(cache_dir, q)) as pool:
        try:
            while waiting or running:
                pending_ids = {r.run_id for j in list(running.values()) + waiting for r in j.runs}
                for job in list(waiting):
                    if job.base and not Path(job.base_checkpoint).exists():
                        if job.base in pending_ids:
                            continue  # its base is still training
                        raise ValueError(f"finetune {job.runs[0].run_id!r}: base checkpoint {job.base_checkpoint!r} is missing")
                    waiting.remove(job)
                    running[pool.submit(_work, job, data, cap, text_cache, str(runs_dir), sources, attrs)] = job
                done, _ = cf.wait(list(running), timeout=0.2, return_when=cf.FIRST_COMPLETED)
                _drain(q, bar)
                for fut in done:
                    running.pop(fut)
                    finished(fut.result())
            _drain(q, bar)
        except BaseException:
            for fut in running:
                fut.cancel()
            # Stop the jobs in progress too (their trunk checkpoints are on disk): a short grace period,
            # then terminate, so a worker does not pick up a queued job and finish it first.
            procs = list((getattr(pool, "_processes", None) or {}).values())
            deadline = time.monotonic() + 5.0
            for proc in procs:
                proc.join(max(0.0, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    _drain(q, bar)
    q.close()


def _drain(q, bar) -> None:
    while True:
        try:
            bar.update(q.get_nowait())
        except (queue_lib.Empty, EOFError, OSError):
            return
