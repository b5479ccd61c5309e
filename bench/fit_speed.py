"""Speed of the Bayesian ATLAS fit, measured side by side in one run.

1. Sampler efficiency: the smallest bulk ESS over the parameters per second of wall time, NumPyro
   (:func:`atlas_bayes.inference.fit_bayes`, its defaults: dense mass matrix, start at the
   posterior mode) against the PyMC twin (:mod:`atlas_bayes.pymc_twin`) with PyMC's default sampler
   (``pm.sample``: NUTS, diagonal mass matrix, jittered starts, PyMC's default C backend and its
   default parallel chain processes), on the same small cube (one target, 75 runs) and with the
   same 4 chains x (1000 warmup + 1000 draws) and target acceptance 0.8. Both are timed warm (the
   second call: NumPyro's program cached, PyTensor's C modules in the on-disk cache) over the whole
   call, start to posterior; the first (cold) calls and the sampling-only times are reported too.
2. Paper scale: a cube the size of the ATLAS paper's (774 runs, 6 target languages, 50 mixtures,
   simulated from the law with per-target parameters), one joint fit of all six targets (partial
   pooling, 4 chains x 1000 draws): wall time of the first call, compilation included, as a user
   running ``atlas fit`` once would see it (``--paper-repeats 2``: and of a second call); max
   R-hat and divergences. CPU seconds are reported next to wall seconds: on a shared machine they
   say how much of the wall time was waiting for a core. ``--paper-baseline``: first the same fit
   with the sampler settings before the speed-ups of issue #3 (chains vectorised in lockstep, XLA's
   YNNPACK fusions on, NumPyro's windowed mass-matrix adaptation; the fit's set-up is today's either
   way), every cache cleared before each fit, so that both are cold. ``--paper-windowed``: first the
   same fit with NumPyro's own windowed mass-matrix adaptation in place of warmup's Laplace-anchored
   one (``inference._anchored_windows``), all else today's, caches cleared before each.

``--json`` prints one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

if "--devices" in sys.argv:  # must precede the first JAX import
    n = sys.argv[sys.argv.index("--devices") + 1]
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from atlas_bayes import inference, results, simulate  # noqa: E402

SMALL_MIXTURES = [
    {"fr": 1.0},
    {"fr": 0.5, "en": 0.5},
    {"fr": 0.5, "de": 0.5},
    {"fr": 0.25, "en": 0.25, "de": 0.25, "sw": 0.25},
    {"fr": 0.4, "en": 0.2, "it": 0.2, "sw": 0.2},
]
SMALL_TRUTH = dict(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36, lam=0.065, tau_en=0.3, tau_de=0.2, tau_sw=0.1,
                   tau_other=0.05)
TARGETS = ("en", "fr", "de", "es", "ru", "zh")
OTHERS = ("ja", "pt", "vi", "sw")


def small_cube():
    runs = simulate.grid(N=[1e7, 1e8, 1e9], D=[1e9, 3e9, 1e10, 3e10, 1e11], mixtures=SMALL_MIXTURES, U={"fr": 3e9})
    return simulate.simulate_cube("atlas", SMALL_TRUTH, runs, key=jax.random.key(0), sigma=0.01, targets=["fr"])


def paper_cube(seed: int = 0):
    """774 runs over 50 mixtures of 10 languages, evaluated on 6 targets; 3 languages data-constrained."""
    rng = np.random.default_rng(seed)
    langs = TARGETS + OTHERS
    mixtures = [{t: 1.0} for t in TARGETS]
    for t in TARGETS:  # bilingual 50/50 runs with 4 partners each
        for s in rng.choice([x for x in langs if x != t], size=4, replace=False):
            mixtures.append({t: 0.5, str(s): 0.5})
    while len(mixtures) < 50:  # multilingual mixtures of 3 to 6 languages
        k = int(rng.integers(3, 7))
        chosen = rng.choice(langs, size=k, replace=False)
        weights = rng.dirichlet(np.ones(k))
        mixtures.append({str(s): float(w) for s, w in zip(chosen, weights)})
    runs = simulate.grid(N=[2e7, 6e7, 2e8, 6e8], D=[2e9, 6e9, 2e10, 6e10], mixtures=mixtures,
                         U={"fr": 1e10, "zh": 5e9, "sw": 2e9})
    keep = np.sort(rng.choice(len(runs.N), size=774, replace=False))
    runs = simulate.Runs(N=runs.N[keep], D=runs.D[keep], mix=runs.mix[keep], U=runs.U[keep], srcs=runs.srcs,
                         seed=runs.seed[keep])
    params = {}
    for t in TARGETS:
        p = dict(E=float(rng.uniform(1.6, 2.2)), A=float(rng.uniform(300, 600)), B=float(rng.uniform(1000, 3000)),
                 alpha=float(rng.uniform(0.3, 0.4)), beta=float(rng.uniform(0.3, 0.4)), lam=float(rng.uniform(0.05, 0.1)),
                 tau_other=float(rng.uniform(0.0, 0.1)))
        p |= {f"tau_{s}": float(rng.uniform(0.0, 0.4)) for s in langs if s != t}
        params[t] = p
    return simulate.simulate_cube("atlas", params, runs, key=jax.random.key(seed), sigma=0.01, targets=list(TARGETS))


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (PyMC's chain processes)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _min_ess(posterior) -> float:
    import arviz as az

    ess = az.ess(posterior, method="bulk")
    return float(np.nanmin(ess.to_array().values))


def numpyro_side(cube, *, warmup: int, draws: int, chains: int) -> dict:
    opts = dict(target="fr", num_chains=chains, num_warmup=warmup, num_samples=draws, check=False)
    t0 = time.perf_counter()
    inference.fit_bayes(cube, "atlas", seed=0, **opts)
    cold = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), _cpu()
    fit = inference.fit_bayes(cube, "atlas", seed=1, **opts)
    warm, cpu = time.perf_counter() - t0, _cpu() - c0
    d = results.diagnostics(fit)
    ess = d["min_ess_bulk"]
    return {"seconds_cold": cold, "seconds": warm, "cpu_seconds": cpu, "seconds_sampling": fit.config.options["seconds"]["sampling"],
            "min_ess_bulk": ess, "ess_per_s": ess / warm, "ess_per_s_sampling": ess / fit.config.options["seconds"]["sampling"],
            "max_r_hat": d["max_r_hat"], "divergences": d["divergences"],
            "leapfrog_steps_per_draw": float(fit.idata.sample_stats["n_steps"].mean())}


def pymc_side(cube, *, warmup: int, draws: int, chains: int, cores: int | None) -> dict:
    from atlas_bayes import pymc_twin

    names = ["E", "A", "B", "alpha", "beta", "lam", "tau_other", "tau", "sigma"]
    runs = []
    for seed in (0, 1):
        t0, c0 = time.perf_counter(), _cpu()
        idata = pymc_twin.fit_pymc(cube, "atlas", target="fr", draws=draws, tune=warmup, chains=chains, cores=cores,
                                   seed=seed)
        runs.append((time.perf_counter() - t0, _cpu() - c0, idata))
    (cold, _, _), (warm, cpu, idata) = runs
    post = idata.posterior[names]
    ess = _min_ess(post)
    import arviz as az

    sampling = float(idata.posterior.attrs.get("sampling_time", float("nan")))
    return {"seconds_cold": cold, "seconds": warm, "cpu_seconds": cpu, "seconds_sampling": sampling, "min_ess_bulk": ess,
            "ess_per_s": ess / warm, "ess_per_s_sampling": ess / sampling,
            "max_r_hat": float(az.rhat(post).to_array().max()), "divergences": int(idata.sample_stats["diverging"].sum()),
            "leapfrog_steps_per_draw": float(idata.sample_stats["n_steps"].mean()), "cores": cores or "default"}


def _clear_caches() -> None:
    for f in (inference._potential, inference._mode_program, inference._nuts_program, inference._constrain_program):
        f.cache_clear()
    jax.clear_caches()


def paper_side(*, chain_method: str, warmup: int, draws: int, chains: int, target_accept: float, repeats: int,
               baseline: bool = False, windowed: bool = False) -> dict:
    cube = paper_cube()
    opts = dict(target="all", num_chains=chains, num_warmup=warmup, num_samples=draws, chain_method=chain_method,
                target_accept=target_accept, check=False)
    out = {}
    _clear_caches()
    if baseline:  # the settings before issue #3's speed-ups
        opts["chain_method"] = "vectorized"
        options = inference.cpu_compiler_options
        inference.cpu_compiler_options = lambda: ()
    prepare = inference._prepare_nuts
    if baseline or windowed:  # NumPyro's windowed mass-matrix adaptation, not anchored at the Laplace start
        inference._prepare_nuts = lambda *a, **k: prepare(*a, **(k | {"anchor_mass": False}))
    try:
        fits = _paper_fits(cube, opts, repeats, out)
    finally:
        if baseline:
            inference.cpu_compiler_options = options
        inference._prepare_nuts = prepare
    fit = fits[-1]
    n_obs = int(fit.idata.observed_data.sizes["obs"])
    return {"runs": int(cube.sizes["run"]), "targets": len(TARGETS), "mixtures": 50, "observations": n_obs,
            "parameters": int(sum(np.prod(v.shape[2:]) for v in fit.idata.posterior.data_vars.values())),
            "chain_method": opts["chain_method"], "devices": jax.local_device_count(),
            "chain_groups": fit.config.options["chain_groups"],
            "compiler_options": dict(() if baseline else inference.cpu_compiler_options()), **out}


def _paper_fits(cube, opts, repeats, out) -> list:
    fits = []
    for label, seed in (("cold", 0), ("warm", 1))[:repeats]:
        t0, c0 = time.perf_counter(), _cpu()
        fit = inference.fit_bayes(cube, "atlas", seed=seed, **opts)
        seconds, cpu = time.perf_counter() - t0, _cpu() - c0
        d = results.diagnostics(fit)
        stats = fit.idata.sample_stats
        out[label] = {"seconds": seconds, "cpu_seconds": cpu, "seconds_parts": fit.config.options["seconds"],
                      "max_r_hat": d["max_r_hat"], "min_ess_bulk": d["min_ess_bulk"], "min_ess_tail": d["min_ess_tail"],
                      "divergences": d["divergences"], "leapfrog_steps_per_draw": float(stats["n_steps"].mean()),
                      "max_leapfrog_steps": int(stats["n_steps"].max()), "step_size": float(stats["step_size"].mean())}
        fits.append(fit)
    return fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup", type=int, default=1000, help="warmup (tune) of the side-by-side comparison")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--pymc-cores", type=int, default=None, help="PyMC chain processes (default: PyMC's)")
    parser.add_argument("--paper-warmup", type=int, default=500)
    parser.add_argument("--paper-target-accept", type=float, default=0.8)
    parser.add_argument("--paper-repeats", type=int, default=1, choices=[1, 2], help="2: also a second (warm) fit")
    parser.add_argument("--chain-method", default="auto", choices=["auto", "vectorized", "parallel"])
    parser.add_argument("--devices", type=int, default=1, help="XLA host devices (on CPU the chains run in threads on one device whatever this is)")
    parser.add_argument("--paper-baseline", action="store_true",
                        help="first the paper-scale fit with the settings before issue #3's speed-ups")
    parser.add_argument("--paper-windowed", action="store_true",
                        help="first the paper-scale fit with NumPyro's windowed mass-matrix adaptation")
    parser.add_argument("--skip", choices=["compare", "paper"], default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out: dict = {}
    if args.skip != "compare":
        cube = small_cube()
        npy = numpyro_side(cube, warmup=args.warmup, draws=args.draws, chains=args.chains)
        pmc = pymc_side(cube, warmup=args.warmup, draws=args.draws, chains=args.chains, cores=args.pymc_cores)
        out |= {"numpyro_ess_per_s": npy["ess_per_s"], "pymc_ess_per_s": pmc["ess_per_s"],
                "ratio": npy["ess_per_s"] / pmc["ess_per_s"],
                "ratio_sampling_only": npy["ess_per_s_sampling"] / pmc["ess_per_s_sampling"],
                "ratio_cold": (npy["min_ess_bulk"] / npy["seconds_cold"]) / (pmc["min_ess_bulk"] / pmc["seconds_cold"]),
                "numpyro": npy, "pymc": pmc}
    if args.skip != "paper" and args.paper_baseline:
        base = paper_side(chain_method=args.chain_method, warmup=args.paper_warmup, draws=args.draws, chains=args.chains,
                          target_accept=args.paper_target_accept, repeats=args.paper_repeats, baseline=True)
        out |= {"paper_baseline_seconds": base["cold"]["seconds"], "paper_baseline": base,
                "load_average_after_baseline": os.getloadavg()}
    if args.skip != "paper" and args.paper_windowed:
        win = paper_side(chain_method=args.chain_method, warmup=args.paper_warmup, draws=args.draws, chains=args.chains,
                         target_accept=args.paper_target_accept, repeats=args.paper_repeats, windowed=True)
        out |= {"paper_windowed_seconds": win["cold"]["seconds"], "paper_windowed": win}
    if args.skip != "paper":
        paper = paper_side(chain_method=args.chain_method, warmup=args.paper_warmup, draws=args.draws, chains=args.chains,
                           target_accept=args.paper_target_accept, repeats=args.paper_repeats)
        out |= {"paper_scale_seconds": paper["cold"]["seconds"], "paper_scale_max_rhat": paper["cold"]["max_r_hat"],
                "paper_scale_divergences": paper["cold"]["divergences"], "paper_scale": paper}
    out["load_average"] = os.getloadavg()
    if args.json:
        from atlas_bayes.cli.common import emit_json

        emit_json(out)
    else:
        print(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
