"""Pretrain from scratch or finetune a multilingual base? The crossover with its credible interval.

What it shows
-------------
For one target language, a model pretrained from scratch and one finetuned from a multilingual
base, at several model sizes: every learning curve gets a Bayesian fit (``atlas_bayes.curves``),
and each posterior draw gives one crossover ``D*``, the number of target tokens beyond which
training from scratch wins (SPEC section 3; ``atlas_bayes.crossover.crossover``). Printed with
intervals: ``D*`` and ``C* = 6 N D*`` per size, the posterior probability that finetuning is
better at a token budget, the same at equal *total* compute (the base's ``6 N D_base`` counted,
which the paper treats as sunk), and ``C*(N) = k N^gamma`` across sizes (paper: gamma = 1.65).

Where the runs come from (say which you use)
--------------------------------------------
- default, ``--data simulate``: learning curves drawn at the paper's scales (1e8, 4e8 and 2e9
  parameters, 5 to 500 tokens per parameter, 3 seeds, 0.3 % noise). The from-scratch curve is
  Chinchilla's published law (Hoffmann et al. 2022: E 1.69, A 406.4, B 410.7, alpha 0.34, beta
  0.28); the finetune's head start (worth 10 N tokens) and its higher plateau (+0.01) are
  illustrative, chosen so that ``D*`` at 2e9 parameters lands near the paper's 144B (English) to
  283B (Chinese) tokens. The true ``D*`` is known, so the script says whether each interval covers it.
- ``--data train``: trains trainer/data/exp_crossover.toml on the synthetic world (a uniform
  8-language base finetuned on ``ama``, against ``ama`` from scratch; about 15 minutes on 2 cores
  with ``--workers 2``; with ``--tiny`` a toy version). On it the curves do not cross within the
  data (finetuning stays better while the base is free; see BENCHMARKS.md).
- ``--cube PATH``: any run cube with ``kind`` = pretrain/finetune runs of ``--target`` at matching sizes.

How to run
----------
::

    python examples/pretrain_vs_finetune.py                      # simulated, under a minute
    python examples/pretrain_vs_finetune.py --data train --workers 2
    python examples/pretrain_vs_finetune.py --cube crossover_cube.nc --target ama --budget 1.6e5
    python examples/pretrain_vs_finetune.py --tiny               # seconds-scale settings (tests)

What to expect
--------------
One line per size: ``D* median [lower, upper]`` tokens, ``C*`` FLOPs and ``P(finetune better at
the budget)``; simulated, also the true ``D*`` and whether the interval covers it. Then
``gamma`` and ``k`` of ``C*(N)`` with intervals (needs crossovers at 2+ sizes). Written to
``--out`` (default ``out/pretrain_vs_finetune``): ``crossover.png`` (both curves per size with
their bands and the ``D*`` interval shaded) and ``crossover.csv`` (the per-size table).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from scipy.optimize import brentq

from atlas_bayes import crossover, plots, simulate
from atlas_bayes import cube as cube_lib

# Chinchilla (Hoffmann et al. 2022, approach 3) for the from-scratch curve: published.
E, A, B, ALPHA, BETA = (simulate.PAPER["chinchilla"][k] for k in ("E", "A", "B", "alpha", "beta"))
# The finetune: a head start worth HEAD_START * N tokens, a plateau PENALTY higher: illustrative.
HEAD_START, PENALTY = 10.0, 0.01
D_BASE = 1e12  # tokens of the multilingual base (the paper's 1T)

TINY_SWEEP = """\
name = "crossover_tiny"
seed = 0

[data]
world = "default"
langs = ["ama", "ami", "bel"]
seq_len = 32
test_tokens = 512
eval_langs = ["ama"]

[train]
batch_size = 8
warmup_steps = 3
eval_points = 3

[[group]]
name = "base"
scales = ["s01"]
tokens = [1e4]
mixtures = [{ uniform = ["ama", "ami", "bel"], name = "uni3" }]
save_checkpoints = true

[[group]]
name = "scratch"
scales = ["s01"]
tokens = [2.5e3, 5e3, 1e4]
mixtures = [{ monolingual = "ama" }]

[[group]]
name = "ft"
kind = "finetune"
base = { group = "base", tokens = 1e4 }
tokens = [2.5e3, 5e3, 1e4]
mixtures = [{ monolingual = "ama" }]
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("simulate", "train"), default="simulate",
                   help="simulated curves at the paper's scales (default) or train exp_crossover on the synthetic world")
    p.add_argument("--cube", help="use this run cube instead")
    p.add_argument("--target", help="target language (default: en simulated, ama trained)")
    p.add_argument("--workers", type=int, default=1, help="training processes with --data train (default 1)")
    p.add_argument("--budget", type=float, help="tokens of the target at which to report P(finetune better) "
                   "(default: the geometric middle of the finetunes' tokens)")
    p.add_argument("--draws", type=int, default=1000, help="posterior draws per chain (default 1000)")
    p.add_argument("--warmup", type=int, default=1000, help="NUTS warmup steps per chain (default 1000)")
    p.add_argument("--chains", type=int, default=4, help="chains (default 4)")
    p.add_argument("--level", type=float, default=0.9, help="credible level (default 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="few curves and short chains (for tests)")
    p.add_argument("--out", default="out/pretrain_vs_finetune", help="folder for the files")
    args = p.parse_args(argv)
    if args.tiny:
        args.draws, args.warmup, args.chains = 100, 100, 2
    if args.target is None:
        args.target = "ama" if (args.data == "train" and not args.cube) else "en"
    return args


def true_crossover(N: float) -> float:
    """Where the simulated curves cross: B (D^-beta - (D + D0)^-beta) = penalty."""
    d0 = HEAD_START * N
    return brentq(lambda D: B * (D**-BETA - (D + d0) ** -BETA) - PENALTY, 1.0, 1e18)


def simulated_cube(args):
    rng = np.random.default_rng(args.seed)
    sizes, seeds, points = ((1e8, 2e9), 1, 8) if args.tiny else ((1e8, 4e8, 2e9), 3, 12)
    rows = []
    for N in sizes:
        D = np.geomspace(5 * N, 500 * N, points)
        for s in range(seeds):
            pt = E + A * N**-ALPHA + B * D**-BETA
            ft = E + A * N**-ALPHA + PENALTY + B * (D + HEAD_START * N) ** -BETA
            for kind, curve in (("pretrain", pt), ("finetune", ft)):
                rows.append((kind, N, D, curve * np.exp(0.003 * rng.standard_normal(points)), s))
    cube = cube_lib.make_cube(
        loss=np.stack([r[3] for r in rows])[:, None, :], N=np.array([r[1] for r in rows]), D=np.stack([r[2] for r in rows]),
        lang=[args.target], seed=np.array([r[4] for r in rows]), kind=[r[0] for r in rows],
        extra={"D_base": (("run",), np.array([0.0 if r[0] == "pretrain" else D_BASE for r in rows]))},
        attrs={"simulated_from": "chinchilla (published) + illustrative finetune head start and penalty"})
    return cube, {float(N): true_crossover(N) for N in sizes}


def trained_cube(args, out: Path):
    from trainer import load_sweep, run_sweep

    spec = "exp_crossover"
    if args.tiny:
        spec = out / "crossover_tiny.toml"
        spec.write_text(TINY_SWEEP)
    res = run_sweep(load_sweep(spec), out=out / "crossover_cube.nc", workers=args.workers, progress=not args.tiny)
    print(f"trained {len(res.trained)} runs ({len(res.skipped)} already there) in {res.seconds:.0f} s -> {res.path}")
    return res.cube


def fmt(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.3g}"


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    truth = None
    if args.cube:
        cube, source = cube_lib.load(args.cube), f"run cube {args.cube}"
    elif args.data == "train":
        cube, source = trained_cube(args, out), "trained on the synthetic world"
    else:
        cube, truth = simulated_cube(args)
        source = "simulated learning curves (Chinchilla published; finetune head start and penalty illustrative)"
    budget = args.budget
    if budget is None and truth is not None:
        budget = 5e10  # 50B tokens: inside the simulated data of every size
    elif budget is None:  # the geometric middle of the finetunes' budgets
        fin = cube_lib.final(cube)
        tokens = fin["D"].values[fin["kind"].values == "finetune"] if "kind" in fin else fin["D"].values
        budget = float(np.sqrt(tokens.min() * tokens.max()))
    print(f"{source}: {cube.sizes['run']} runs of {args.target!r}")

    res = crossover.crossover(cube, target=args.target, include_base_compute=True, budget=budget, level=args.level,
                              draws=args.draws, warmup=args.warmup, chains=args.chains, seed=args.seed)
    table = res.table
    table.to_csv(out / "crossover.csv", index=False)
    plots.crossover_plot(res, out / "crossover.png")
    d = res.diagnostics
    pct = f"{args.level:.0%}"
    print(f"\ncurve fits ({d['points']}): max R-hat {d['max_r_hat']:.3f}, min bulk ESS {d['min_ess_bulk']:.0f}, "
          f"divergences {d['divergences']}; {pct} credible intervals")
    for prefix, title in (("", "base compute sunk (as the paper)"), ("total_", "equal total compute (the base's 6 N D_base counted)")):
        print(f"\n{title}:")
        for r in table.to_dict("records"):
            le = "<=" if r[prefix + "below_range"] > 0.5 else "="
            line = (f"  N = {r['N']:.3g}: D* {le} {fmt(r[prefix + 'D_star_median'])} tokens [{fmt(r[prefix + 'D_star_lower'])}, "
                    f"{fmt(r[prefix + 'D_star_upper'])}], C* = {fmt(r[prefix + 'C_star_median'])} FLOPs "
                    f"[{fmt(r[prefix + 'C_star_lower'])}, {fmt(r[prefix + 'C_star_upper'])}]; "
                    f"P(finetune better at {budget:.3g} tokens) = {r[prefix + 'p_finetune_better']:.2f}")
            if r[prefix + "p_cross"] < 1:
                line += f"; no crossing within 100x the data in {1 - r[prefix + 'p_cross']:.0%} of draws"
            if r[prefix + "below_range"] > 0.05:
                line += f"; scratch better from the first finetune point in {r[prefix + 'below_range']:.0%} of draws"
            if truth is not None and not prefix:
                true = truth[float(r["N"])]
                inside = r["D_star_lower"] <= true <= r["D_star_upper"]
                line += f"; truth {true:.3g}: {'covered' if inside else 'NOT covered'}"
            print(line)
        law = res.power_law["sunk" if not prefix else "total"]
        if law:
            g, k = law["gamma"], law["k"]
            print(f"  C*(N) = k N^gamma over {law['sizes']} sizes: gamma = {g['median']:.3g} [{g['lower']:.3g}, "
                  f"{g['upper']:.3g}] (paper 1.65), k = {k['median']:.3g} [{k['lower']:.3g}, {k['upper']:.3g}]")
        else:
            print("  C*(N) = k N^gamma: needs crossovers inside the search range at 2 or more sizes")
        if truth is not None and not prefix:
            true_gamma = 1.0 + np.polyfit(np.log(list(truth)), np.log(list(truth.values())), 1)[0]
            print(f"  (the simulated curves' own C*(N) has gamma = {true_gamma:.3g})")

    print(f"\nwrote crossover.png, crossover.csv to {out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
