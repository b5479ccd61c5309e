"""The curse of multilinguality: what adding languages costs, with credible intervals.

What it shows
-------------
The ATLAS paper's law for ``K`` languages sampled uniformly (SPEC section 1; eq. 5 of Longpre et
al. 2025), ``L(K, N, D_t) = L_inf + A K^phi / N^alpha + B K^psi / D_t^beta``, fitted by NUTS pooled
over target languages (``atlas_bayes.curse.fit_curse``). Then, with intervals:

- ``phi`` (the capacity cost of each added language) and ``psi`` (what the other languages' tokens
  do for the target's), with ``alpha`` and ``beta``;
- the minimum-compute iso-loss scaling from ``K`` to ``2K``, ``4K``, ``8K``, ``16K`` languages
  (``curse_scaling_summary``: ``N'/N``, ``D_tot'/D_tot``, ``C'/C``) next to the paper's worked
  examples (2K: N x1.18, D_tot x1.66 ... 16K: N x1.96, D_tot x7.52);
- the general iso-loss curve, every model size that keeps the loss fixed with its tokens
  multiplier (``iso_loss_curve``), as a plot.

Where the runs come from (say which you use)
--------------------------------------------
- default, ``--data simulate``: a run cube drawn from the law itself with ``atlas_bayes.simulate``
  at the paper's scales (N = 1e7 to 3e9 parameters, 2e9 to 1.6e11 tokens, K = 1 to 32 of the
  paper's languages, 2 % log-normal noise). ``phi = 0.11`` and ``psi = -0.04`` are the paper's
  published values; ``alpha = 0.45`` and ``beta = 0.15`` are implied by its iso-loss exponents
  (derived); ``L_inf``, ``A`` and ``B`` are not published (illustrative values,
  ``atlas_bayes.simulate.PAPER["curse"]``). Because the truth is known, the script also says
  whether each interval covers it.
- ``--data train``: trains trainer/data/exp_curse.toml on the synthetic world (about 20 minutes on
  2 cores with ``--workers 2``; with ``--tiny`` a toy version).
- ``--cube PATH``: any run cube with uniform K-language mixtures at several K (``atlas import``,
  ``atlas train``).

How to run
----------
::

    python examples/curse_of_multilinguality.py                 # simulated, under a minute
    python examples/curse_of_multilinguality.py --data train --workers 2
    python examples/curse_of_multilinguality.py --cube curse_cube.nc --from-k 8
    python examples/curse_of_multilinguality.py --tiny          # seconds-scale settings (tests)

What to expect
--------------
Printed: the parameters with 90 % intervals (simulated: and whether each covers the truth), the
K -> rK table, a few points of the iso-loss curve. Written to ``--out`` (default
``out/curse_of_multilinguality``): ``iso_loss.png``, ``iso_loss.csv``, ``scaling.csv`` (the K -> rK
table) and ``curse_fit.nc`` (the fit, readable by ``atlas curse``). On the simulated cube (264 runs,
R-hat 1.003, no divergences) phi 0.09 [0.05, 0.13], psi -0.040 [-0.045, -0.034] and alpha cover
the truth, beta 0.161 [0.151, 0.172] just misses 0.15, and the multipliers agree with the
paper's worked examples (2K: N x1.16 [1.09, 1.26], D_tot x1.69 [1.66, 1.72]); on the synthetic
world (``--data train``) psi comes out far more negative than the paper's (its languages
share much of their form, so other languages' tokens stand in for the target's).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from atlas_bayes import cube as cube_lib
from atlas_bayes import curse, laws, plots, simulate

# The paper's languages (SPEC section 2's matrix), first the targets evaluated.
POOL = ("en", "ru", "es", "fr", "de", "pt", "zh", "vi", "ja", "sw", "ko", "cy", "kk", "tr", "af", "no", "sv", "el",
        "bn", "ckb", "fa", "gu", "mr", "ps", "ur", "fil", "id", "ms", "ca", "it", "ro", "ar")
# The paper's worked examples (SPEC section 1): r -> (N'/N, D_tot'/D_tot) at minimum compute.
PAPER_EXAMPLES = {2: (1.18, 1.66), 4: (1.4, 2.74), 8: (1.66, 4.54), 16: (1.96, 7.52)}

TINY_SWEEP = """\
name = "curse_tiny"
seed = 0

[data]
world = "default"
langs = ["ama", "bel", "cai", "ami"]
seq_len = 32
test_tokens = 512

[train]
batch_size = 8
warmup_steps = 3
eval_points = 3

[[group]]
name = "k"
scales = ["s01"]
tokens = [1e4, 2e4]
mixtures = [{ uniform = ["ama", "bel", "cai", "ami"], k = [1, 2, 4] }]
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("simulate", "train"), default="simulate",
                   help="simulate from the law at the paper's scales (default) or train exp_curse on the synthetic world")
    p.add_argument("--cube", help="use this run cube instead")
    p.add_argument("--workers", type=int, default=1, help="training processes with --data train (default 1)")
    p.add_argument("--targets", type=int, default=4, help="simulated: evaluated target languages (default 4)")
    p.add_argument("--sigma", type=float, default=0.02, help="simulated: log-scale noise sd (default 0.02)")
    p.add_argument("--from-k", type=float, default=8, help="languages now, for the iso-loss curve to 2x (default 8)")
    p.add_argument("--draws", type=int, default=1000, help="posterior draws per chain (default 1000)")
    p.add_argument("--warmup", type=int, default=1000, help="NUTS warmup steps per chain (default 1000)")
    p.add_argument("--chains", type=int, default=2, help="chains (default 2)")
    p.add_argument("--level", type=float, default=0.9, help="credible level (default 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="a small cube and short chains (for tests)")
    p.add_argument("--out", default="out/curse_of_multilinguality", help="folder for the files")
    args = p.parse_args(argv)
    if args.tiny:
        args.draws, args.warmup, args.targets = 100, 100, 2
        args.from_k = min(args.from_k, 2)
    return args


def ci(e: dict, fmt: str = ".4g") -> str:
    return f"{e['median']:{fmt}} [{e['lower']:{fmt}}, {e['upper']:{fmt}}]"


def simulated_cube(args):
    """Uniform mixtures: for each target and K, the target plus the next K - 1 languages of the pool."""
    if args.tiny:
        pool, ks, N, D = POOL[:4], (1, 2, 4), (1e8, 1e9), (4e9, 4e10)
    else:
        pool, ks, N, D = POOL, (1, 2, 4, 8, 16, 32), (1e7, 3e7, 1e8, 3e8, 1e9, 3e9), (2e9, 1e10, 4e10, 1.6e11)
    targets = pool[: args.targets]
    mixtures, seen = [], set()
    for t in targets:
        others = [x for x in pool if x != t]
        for k in ks:
            langs = frozenset([t, *others[: k - 1]])
            if langs not in seen:
                seen.add(langs)
                mixtures.append({x: 1.0 / k for x in sorted(langs)})
    runs = simulate.grid(N=N, D=D, mixtures=mixtures)
    truth = {t: dict(simulate.PAPER["curse"], L_inf=simulate.PAPER["curse"]["L_inf"] + 0.1 * i) for i, t in enumerate(targets)}
    cube = simulate.simulate_cube("curse", truth, runs, key=jax.random.key(args.seed), targets=targets, sigma=args.sigma)
    return cube, truth


def trained_cube(args, out: Path):
    from trainer import load_sweep, run_sweep

    spec = "exp_curse"
    if args.tiny:
        spec = out / "curse_tiny.toml"
        spec.write_text(TINY_SWEEP)
    res = run_sweep(load_sweep(spec), out=out / "curse_cube.nc", workers=args.workers, progress=not args.tiny)
    print(f"trained {len(res.trained)} runs ({len(res.skipped)} already there) in {res.seconds:.0f} s -> {res.path}")
    return res.cube


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
        source = "simulated from the curse law (phi, psi published; L_inf, A, B illustrative)"
    print(f"{source}: {cube.sizes['run']} runs, evaluation languages {cube_lib.languages(cube)}")

    fit = curse.fit_curse(cube, draws=args.draws, warmup=args.warmup, chains=args.chains, seed=args.seed)
    fit.save(out / "curse_fit.nc")
    diag = fit.config.options["diagnostics"]
    pct = f"{args.level:.0%}"
    print(f"\ncurse law pooled over {', '.join(fit.targets)} (NUTS, {diag['chains']} x {diag['draws']} draws; max R-hat "
          f"{diag['max_r_hat']:.3f}, min bulk ESS {diag['min_ess_bulk']:.0f}, divergences {diag['divergences']}; "
          f"{pct} intervals)")
    first = curse.curse_scaling_summary(fit, from_k=1, to_k=2, level=args.level)
    params = first["params"]
    for k, e in params.items():
        note = ""
        if truth is not None:
            true = next(iter(truth.values()))[k]
            note = f"   truth {true:g}: {'covered' if e['lower'] <= true <= e['upper'] else 'NOT covered'}"
        print(f"  {k:>6} {ci(e)}{note}")
    for k in ("phi", "psi"):
        post = fit.params_for(fit.targets[0])[k]
        print(f"  P({k} > 0) = {float(np.mean(post > 0)):.2f}")

    # K -> rK at minimum compute: only r matters (from a compute-optimal start).
    scaling = []
    print(f"\nfrom K to rK languages at equal loss, minimum compute (posterior median [{pct} interval]; paper in brackets):")
    print(f"  {'r':>3}  {'N_prime/N':<28} {'D_tot_prime/D_tot':<28} {'C_prime/C':<28}")
    for r, (paper_n, paper_d) in PAPER_EXAMPLES.items():
        s = curse.curse_scaling_summary(fit, from_k=1, to_k=r, level=args.level)["min_compute"]
        scaling.append({"r": r, "paper_N": paper_n, "paper_D_tot": paper_d}
                       | {f"{q}_{k}": s[q][k] for q in ("N", "D_tot", "C") for k in ("median", "lower", "upper")})
        print(f"  {r:>3}  {ci(s['N']) + f' ({paper_n})':<28} {ci(s['D_tot']) + f' ({paper_d})':<28} {ci(s['C']):<28}")
    pub = laws.curse_scaling(2.0, **{k: simulate.PAPER["curse"][k] for k in ("alpha", "beta", "phi", "psi")})
    print(f"  (the published exponents at r = 2: N x{float(pub.N):.3g}, D_tot x{float(pub.D_tot):.3g}, C x{float(pub.C):.3g})")

    pd.DataFrame(scaling).to_csv(out / "scaling.csv", index=False)

    to_k = 2 * args.from_k
    iso = curse.iso_loss_curve(fit, from_k=args.from_k, to_k=to_k, level=args.level)
    iso.to_csv(out / "iso_loss.csv", index=False)
    plots.iso_loss_plot(iso, out / "iso_loss.png")
    best = iso.attrs["min_compute"]
    print(f"\niso-loss curve from K={args.from_k:g} to K={to_k:g} (from a compute-optimal run): minimum compute at "
          f"N x {ci(best['N'])}, D_t x {ci(best['D_t'])}, C x {ci(best['C'])}")
    for row in iso.iloc[:: max(1, len(iso) // 6)].itertuples():
        print(f"  N x {row.N_mult:7.3g}  ->  D_t x {row.D_t_mult:8.3g} [{row.D_t_lower:.3g}, {row.D_t_upper:.3g}]  "
              f"C x {row.C_mult:7.3g} [{row.C_lower:.3g}, {row.C_upper:.3g}]  feasible in {row.p_feasible:.0%} of draws")

    print(f"\nwrote iso_loss.png, iso_loss.csv, scaling.csv, curse_fit.nc to {out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
