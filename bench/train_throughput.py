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
"""

from __future__ import annotations

import argparse
import json
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
    tokens_per_s = steps * batch * seq_len / seconds
    fpt = scales.flops_per_token(cfg)
    return {"scale": scale, "N": scales.count_params(cfg)[0], "tokens_per_s": tokens_per_s,
            "mfu": tokens_per_s * fpt / peak, "compilations": int(compiled["step"]), "flops_per_token": fpt,
            "devices": trainer.num_devices}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", default="s02,s04,s06", help="comma-separated scales (default: the demo's s02,s04,s06)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=15, help="timed steps per block")
    p.add_argument("--blocks", type=int, default=3, help="timed blocks per scale; the fastest counts")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    args = p.parse_args()
    peak = matmul_peak()
    rows = [measure(s, batch=args.batch, seq_len=args.seq_len, steps=args.steps, blocks=args.blocks, peak=peak)
            for s in args.scales.split(",")]
    if args.json:
        print(json.dumps({"peak_flops": peak, "backend": jax.default_backend(), "batch": args.batch,
                          "seq_len": args.seq_len, "scales": rows}))
        return
    print(f"float32 matmul peak: {peak / 1e9:.1f} GFLOP/s ({jax.default_backend()}, {jax.device_count()} device(s))")
    print(f"{'scale':>6} {'N':>10} {'tokens/s':>10} {'MFU':>6} {'compilations':>13}")
    for r in rows:
        print(f"{r['scale']:>6} {r['N']:>10} {r['tokens_per_s']:>10.0f} {r['mfu']:>6.1%} {r['compilations']:>13}")


if __name__ == "__main__":
    main()
