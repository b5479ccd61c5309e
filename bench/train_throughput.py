"""Trainer throughput: tokens per second and model FLOP utilisation at three scales, in one run.

MFU = (training FLOPs per token, attention included: ``trainer.scales.flops_per_token``) x tokens/s
/ peak, where the peak is this machine's float32 matmul rate measured here, just before, with a
square matmul large enough to saturate it. Also reports how many times XLA compiled the train step of
each model shape (the target is one: no recompiles across steps or learning rates).

    .venv/bin/python bench/train_throughput.py            # a table
    .venv/bin/python bench/train_throughput.py --json     # one line: {"peak_flops", "scales": [...]}

``--scales`` picks the model sizes (default: the demo sweep's three, s02, s04, s06), ``--batch`` and
``--seq-len`` the batch shape, ``--steps`` and ``--blocks`` the timing: the fastest of ``blocks`` blocks of
``steps`` steps counts (the peak too is a best of five), which makes the figures robust to a shared,
intermittently busy machine.

The trainer keeps freed heap memory in its processes (:func:`trainer.allocator.retain_freed_memory`),
and so does this script unless ``--allocator default``; each scale reports the page faults per timed
step. ``--compare-allocator`` runs the measurement in child processes, glibc's default allocator and the
trainer's setting alternately, twice each, and prints the best tokens/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 ``n x n`` matmul rate (FLOP/s) over a few timed repeats."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(4):
            out = f(a, b)
        out.block_until_ready()
        best = min(best, (time.perf_counter() - t) / 4)
    return 2.0 * n**3 / best


def measure(scale: str, *, batch: int, seq_len: int, steps: int, blocks: int, peak: float) -> dict:
    from trainer import scales, train
    from trainer.config import OptimConfig

    cfg = scales.get_scale(scale, seq_len=seq_len)
    with train.count_compilations() as compiled:
        trainer = train.make_trainer(cfg)
        state = trainer.init(jax.random.key(0), train.hyperparams(OptimConfig()))
        rng = np.random.default_rng(0)
        batches = [rng.integers(0, 256, (batch, seq_len + 1)).astype(np.int32) for _ in range(8)]
        lrs = np.linspace(1e-4, 1e-3, 97).astype(np.float32)  # a different rate every step
        for i in range(3):  # compile and warm up
            state, metrics = trainer.step(state, batches[i % 8], lrs[i])
        metrics["loss"].block_until_ready()
        # The machine is shared: time `blocks` blocks of steps and keep the fastest, as for the peak.
        seconds, i = np.inf, 0
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(blocks):
            t = time.perf_counter()
            previous = None
            for _ in range(steps):
                state, metrics = trainer.step(state, batches[i % 8], lrs[i % len(lrs)])
                i += 1
                if trainer.bounded_dispatch:  # as in trainer.runner (host-CPU collectives)
                    if previous is not None:
                        previous.block_until_ready()
                    previous = metrics["loss"]
            metrics["loss"].block_until_ready()
            seconds = min(seconds, time.perf_counter() - t)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (blocks * steps)
    tokens_per_s = steps * batch * seq_len / seconds
    fpt = scales.flops_per_token(cfg)
    return {"scale": scale, "N": scales.count_params(cfg)[0], "tokens_per_s": tokens_per_s,
            "mfu": tokens_per_s * fpt / peak, "compilations": int(compiled["step"]), "flops_per_token": fpt,
            "devices": trainer.num_devices, "page_faults_per_step": faults}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", default="s02,s04,s06", help="comma-separated scales (default: the demo's s02,s04,s06)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=15, help="timed steps per block")
    p.add_argument("--blocks", type=int, default=3, help="timed blocks per scale; the fastest counts")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("--allocator", choices=("retain", "default"), default="retain",
                   help="retain: keep freed memory, as the trainer does (default); default: glibc's defaults")
    p.add_argument("--compare-allocator", action="store_true",
                   help="both allocator settings, alternately in child processes, and their ratio")
    args = p.parse_args()
    if args.compare_allocator:
        compare_allocator(args)
        return
    if args.allocator == "retain":
        from trainer.allocator import retain_freed_memory

        retain_freed_memory()  # before the first buffers (the peak matmul, below)
    peak = matmul_peak()
    rows = [measure(s, batch=args.batch, seq_len=args.seq_len, steps=args.steps, blocks=args.blocks, peak=peak)
            for s in args.scales.split(",")]
    if args.json:
        print(json.dumps({"peak_flops": peak, "backend": jax.default_backend(), "batch": args.batch,
                          "seq_len": args.seq_len, "scales": rows}))
        return
    print(f"float32 matmul peak: {peak / 1e9:.1f} GFLOP/s ({jax.default_backend()}, {jax.device_count()} device(s))")
    print(f"{'scale':>6} {'N':>10} {'tokens/s':>10} {'MFU':>6} {'compilations':>13} {'faults/step':>12}")
    for r in rows:
        print(f"{r['scale']:>6} {r['N']:>10} {r['tokens_per_s']:>10.0f} {r['mfu']:>6.1%} {r['compilations']:>13} "
              f"{r['page_faults_per_step']:>12.0f}")


def compare_allocator(args) -> None:
    """Default and retaining allocator in alternate child processes (A B A B); best tokens/s of each."""
    flags = ["--scales", args.scales, "--batch", str(args.batch), "--seq-len", str(args.seq_len),
             "--steps", str(args.steps), "--blocks", str(args.blocks), "--json"]
    best: dict[str, dict[str, dict]] = {"default": {}, "retain": {}}
    for _ in range(2):
        for mode in best:
            out = subprocess.run([sys.executable, __file__, *flags, "--allocator", mode], capture_output=True,
                                 text=True, check=True).stdout
            for row in json.loads(out.strip().splitlines()[-1])["scales"]:
                if row["tokens_per_s"] > best[mode].get(row["scale"], {}).get("tokens_per_s", 0):
                    best[mode][row["scale"]] = row
    rows = [{"scale": s, "default": best["default"][s], "retain": best["retain"][s],
             "speedup": best["retain"][s]["tokens_per_s"] / best["default"][s]["tokens_per_s"]}
            for s in args.scales.split(",")]
    if args.json:
        print(json.dumps({"compare_allocator": rows}))
        return
    print(f"{'scale':>6} {'tokens/s default':>17} {'retain':>10} {'speedup':>8} {'faults/step default':>20} {'retain':>7}")
    for r in rows:
        d, k = r["default"], r["retain"]
        print(f"{r['scale']:>6} {d['tokens_per_s']:>17.0f} {k['tokens_per_s']:>10.0f} {r['speedup']:>7.2f}x "
              f"{d['page_faults_per_step']:>20.0f} {k['page_faults_per_step']:>7.0f}")


if __name__ == "__main__":
    main()
