"""Bayesian fits of the registry's laws: NUTS (default), SVI or Laplace -> :class:`FitResult`.

:func:`fit_bayes` builds the observations of one or several target languages
(:func:`observations`), starts at the posterior mode (L-BFGS from the prior medians, or from point
fits, :func:`atlas_bayes.point.fit_point_arrays`, with ``init="point"``), runs the model of :mod:`atlas_bayes.models` and returns an ArviZ-backed
:class:`~atlas_bayes.results.FitResult` with the posterior (SPEC names, a ``lang`` dim when there
are several targets), sampler statistics, the per-observation log-likelihood (for PSIS-LOO), the
cube and the configuration. Every fit is checked (:func:`atlas_bayes.results.check_diagnostics`).

NUTS runs as one compiled program per model structure and data shape: warmup and sampling are
``lax`` loops over NumPyro's functional kernel (:func:`numpyro.infer.hmc.hmc`), chains are
vectorised on one device, or with ``chain_method="parallel"`` (and ``"auto"`` on large fits when
there are several devices) split over the host's XLA devices
(one launch per device; a single multi-device launch deadlocks the XLA CPU runtime on the larger
dense-mass models). The program is cached, and the data, priors and observation weights are its
arguments: refits on other data of the same shapes -- held-out splits through ``weights`` --
never recompile.

``laplace`` is the Gaussian at the posterior mode (L-BFGS, exact Hessian); ``svi`` a full-rank
Gaussian fitted by the ELBO, started from the Laplace approximation and optimised in coordinates
whitened by its Hessian (so that one Adam step size suits parameters whose posterior widths differ
by orders of magnitude). Both run in float64 and are checked by the Pareto-k of
importance weights between the approximation and the posterior (Yao et al. 2018): k > 0.7 means
the approximation cannot be trusted and NUTS should be used. (On small cubes it often cannot: the
joint mode sits at a noise scale ``sigma`` smaller than the marginal posterior's, by the
``n / (n - p)`` of a variance estimate, and the amplitudes and ``E`` bend around each other.)
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache, partial
from typing import Any, Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from atlas_bayes import cube as cube_lib
from atlas_bayes import models, registry
from atlas_bayes import priors as priors_lib
from atlas_bayes.noise import LIKELIHOODS, Likelihood
from atlas_bayes.registry import Law
from atlas_bayes.results import FitConfig, FitResult, check_diagnostics, make_result

__all__ = [
    "BayesMethod",
    "BAYES_METHODS",
    "Replicates",
    "Observations",
    "observations",
    "resolve_targets",
    "ModelInputs",
    "build_model",
    "fit_bayes",
]

BayesMethod = Literal["nuts", "svi", "laplace"]
BAYES_METHODS: tuple[str, ...] = get_args(BayesMethod)
Replicates = Literal["auto", "grouped", "independent"]
ChainMethod = Literal["auto", "vectorized", "parallel"]
Precision = Literal["float32", "float64"]
INIT_JITTER = 0.05  # init="prior": sd of each chain's start around the prior medians, unconstrained space


class Observations(NamedTuple):
    """The observations of a (multi-target) fit, concatenated target by target.

    ``x`` holds the law's inputs in natural units (``D_src``/``U_src`` padded to the largest
    ``K_t`` with zero tokens), ``lang`` the target index of each observation; ``weights`` given
    to :func:`fit_bayes` follow this order.
    """

    law: Law
    targets: tuple[str, ...]
    sources: tuple[tuple[str, ...], ...]
    x: dict[str, np.ndarray]
    loss: np.ndarray
    lang: np.ndarray
    run: np.ndarray
    seed: np.ndarray | None
    excluded: dict[str, int]


def resolve_targets(cube: xr.Dataset, law: Law, target: str | Sequence[str] | None) -> tuple[str, ...]:
    """Targets to fit: one, a comma-separated list, a sequence, or ``"all"``; errors list the valid ones."""
    langs = cube_lib.languages(cube)
    if target is None:
        return (registry.resolve_target(cube, None),)
    if isinstance(target, str) and target == "all":
        srcs = [str(s) for s in cube["src"].values]
        items = [t for t in langs if t in srcs or not law.target_tokens]
    elif isinstance(target, str):
        items = [t.strip() for t in target.split(",") if t.strip()]
    else:
        items = [str(t) for t in target]
    if not items:
        raise ValueError(f"no target given; choose from the cube's evaluation languages {langs} (or 'all')")
    dups = sorted({t for t in items if items.count(t) > 1})
    if dups:
        raise ValueError(f"target(s) {dups} given twice")
    for t in items:
        registry.resolve_target(cube, t)
    return tuple(items)


def observations(
    cube: xr.Dataset, law: Law | str, *, target: str | Sequence[str] | None = None, use_steps: bool = False
) -> Observations:
    """Every target's observations (:func:`atlas_bayes.registry.design`), in fit order."""
    law = registry.get_law(law) if isinstance(law, str) else law
    targets = resolve_targets(cube, law, target)
    designs = [registry.design(cube, law, target=t, use_steps=use_steps) for t in targets]
    slots = max(len(d.sources) for d in designs) if law.transfer == "sources" else 0
    parts: dict[str, list[np.ndarray]] = {}
    for d in designs:
        for k, v in d.x.items():
            v = np.asarray(v, dtype=float)
            if k in ("D_src", "U_src") and law.transfer == "sources":
                pad = np.full((len(v), slots - v.shape[1]), 0.0 if k == "D_src" else np.inf)
                v = np.concatenate([v, pad], axis=1)
            parts.setdefault(k, []).append(v)
    seeds = [d.seed for d in designs]
    return Observations(
        law=law,
        targets=targets,
        sources=tuple(d.sources for d in designs),
        x={k: np.concatenate(v) for k, v in parts.items()},
        loss=np.concatenate([d.loss for d in designs]),
        lang=np.concatenate([np.full(len(d.loss), i) for i, d in enumerate(designs)]).astype(np.int32),
        run=np.concatenate([d.run for d in designs]),
        seed=None if any(s is None for s in seeds) else np.concatenate(seeds),
        excluded={d.target: d.excluded for d in designs},
    )


def _run_configs(cube: xr.Dataset, run: np.ndarray) -> np.ndarray:
    """Each observation's training configuration, ``(obs, k)``: ``N``, ``D``, mixture, ``U`` (``kind``, ``base``).

    What makes two runs replicates (seeds). The law's inputs alone do not: ATLAS lumps a target's
    languages outside ``K_t`` into ``D_other``, so a 50/50 de/en and a 50/50 de/fr run have the same
    inputs for ``de`` when neither en nor fr is in its ``K_t``, yet they are different experiments
    whose law misfits need not agree (taking them for seeds put a ``sigma_law``/``sigma_seed`` split
    on every target, unidentified on those without such pairs, and the bench's six-target ATLAS fit
    of ``bench/surrogate.py`` reached R-hat 1.6).
    """
    index = {str(r): i for i, r in enumerate(cube["run"].values)}
    rows = np.array([index[str(r)] for r in run])
    cols = [cube[k].values.reshape(cube.sizes["run"], -1).astype(float) for k in ("N", "mix", "U")]
    if cube["D"].ndim == 1:  # a learning curve's D is the observation's own, already among the law's inputs
        cols.append(cube["D"].values[:, None].astype(float))
    for k in ("kind", "base"):
        if k in cube:
            cols.append(np.unique(cube[k].values.astype(str), return_inverse=True)[1].reshape(-1, 1).astype(float))
    return np.concatenate(cols, axis=1)[rows]


def _replicate_groups(obs: Observations, configs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group id of each observation (same target, run configuration and law inputs) and group sizes."""
    cols = [obs.lang[:, None].astype(float), configs]
    cols += [np.asarray(v, float).reshape(len(obs.loss), -1) for _, v in sorted(obs.x.items())]
    rows = np.concatenate(cols, axis=1)
    _, group, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    return group.reshape(-1).astype(np.int32), counts


def _parse_fixed(fix, law: Law, sources: Sequence[str]) -> dict[str, float]:
    from atlas_bayes.point import parse_fix

    if fix is None or isinstance(fix, str):
        return parse_fix(fix, law, sources)
    valid = law.param_names(sources)
    bad = [k for k in fix if k not in valid]
    if bad:
        raise ValueError(f"unknown parameter(s) {bad} for law {law.name!r}; valid parameters: {', '.join(valid)}")
    return {k: float(v) for k, v in fix.items()}


def _check_choice(name: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


# ----------------------------------------------------------------------------- initial values

_CLIP = {"alpha": (0.01, 3.0), "beta": (0.01, 3.0), "lam": (1e-4, 10.0), "R_D_star": (0.05, 1e4),
         "R_N_star": (0.05, 1e4), "gamma": (-0.9, 0.9), "phi": (-0.9, 0.9), "psi": (-0.9, 0.9),
         "tau_other": (-0.9, 1.9)}


def _point_inits(obs: Observations, fixed: Mapping[str, float], weights: np.ndarray, max_starts: int) -> tuple[list, list]:
    """Point fit of each target (one compilation: every target padded to the same length)."""
    from atlas_bayes.point import fit_point_arrays

    law = obs.law
    slots = models.slot_names(obs.x["D_src"].shape[1]) if law.transfer == "sources" else ()
    n_max = int(np.bincount(obs.lang).max())
    inits, notes = [], []
    for t, target in enumerate(obs.targets):
        rows = np.flatnonzero(obs.lang == t)
        pad = np.concatenate([rows, np.full(n_max - len(rows), rows[0])])
        w = np.concatenate([weights[rows], np.zeros(n_max - len(rows))])
        fixed_t = {k: v for k, v in fixed.items() if not (k.startswith("tau_") and k != "tau_other")}
        for k, s in enumerate(obs.sources[t]):
            if f"tau_{s}" in fixed:
                fixed_t[f"tau_{slots[k]}"] = fixed[f"tau_{s}"]
        try:
            pf = fit_point_arrays(law, {k: v[pad] for k, v in obs.x.items()}, obs.loss[pad], sources=slots, fixed=fixed_t,
                                  weights=w, max_starts=max_starts, polish=32, polish_iter=100, refine=4,
                                  max_iter=200, tol=1e-6)
            inits.append(dict(pf.params, sigma=pf.sigma))
            notes.append("point fit")
        except ValueError as err:
            inits.append(None)
            notes.append(f"prior median (point fit failed: {err})")
    return inits, notes


def _prior_median(name: str, priors: Mapping, t: int) -> float:
    loc = float(np.asarray(priors[name][0]).reshape(-1)[t])
    return math.exp(loc) if priors_lib.family(name) == "lognormal" else loc


def _init_values(obs: Observations, spec: models.ModelSpec, priors: Mapping, inits: list, N0, D0, L_ref) -> dict:
    """Constrained values of every sampled site, from the point fits (prior medians where missing)."""
    law = obs.law
    fixed = dict(spec.fixed)
    n = spec.n_lang
    per: dict[str, np.ndarray] = {}
    for p in law.params:
        if p.name in fixed:
            per[p.name] = np.full(n, fixed[p.name])
            continue
        v = np.array([inits[t][p.name] if inits[t] is not None else np.nan for t in range(n)])
        lo, hi = _CLIP.get(p.name, (-np.inf, np.inf))
        per[p.name] = np.clip(v, lo, hi)
    values: dict[str, np.ndarray] = {}
    for p in law.params:
        name = p.name
        if name in fixed:
            continue
        v = per[name]
        missing = ~np.isfinite(v)
        if name in ("A", "B"):
            exponent = per["alpha" if name == "A" else "beta"]
            ref = v * np.power(N0 if name == "A" else D0, -exponent)
            ref = np.where(missing, [_prior_median(name, priors, t) for t in range(n)], ref)
            values[f"{name}_ref"] = np.clip(ref, 1e-6 * L_ref, 1e3 * L_ref)
            continue
        v = np.where(missing, [_prior_median(name, priors, t) for t in range(n)], v)
        if name in ("E", "L_inf"):
            v = np.clip(v, 1e-3 * L_ref, 3 * L_ref)
        if n > 1 and name in models.POOLED and spec.pooling != "none":
            log = priors_lib.family(name) == "lognormal"
            scale = np.log(v) if log else v
            if spec.pooling == "full":
                values[name] = np.asarray(np.exp(scale.mean()) if log else scale.mean())
                continue
            values[f"mu_{name}"] = np.asarray(scale.mean())
        values[name] = v
    if spec.tau_pairs:
        free = [i for i in range(len(spec.tau_pairs)) if i not in dict(spec.fixed_tau)]
        slots = models.slot_names(spec.slots)
        tau = [inits[t][f"tau_{slots[k]}"] if inits[t] is not None else 0.0 for t, k in (spec.tau_pairs[i] for i in free)]
        if free:
            values["tau"] = np.clip(np.asarray(tau, float), -0.9, 1.9)
    sigma = np.array([np.clip(s["sigma"], 2e-3, 0.5) if s is not None else 0.02 for s in inits])
    if spec.n_groups:
        values["sigma_law"] = values["sigma_seed"] = sigma / math.sqrt(2)
    else:
        values["sigma"] = sigma
    if spec.likelihood == "student_t":
        values["nu"] = np.asarray(10.0)
    return values


# ----------------------------------------------------------------------------- NUTS


def _prototype(model, args, kwargs) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Latent sites and their shapes (the layout of the flat unconstrained vector)."""
    import numpyro

    def latent():
        tr = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace(*args, **kwargs)
        return {k: s["value"] for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}

    # Abstract evaluation: run op by op, the trace compiles every primitive of the model (10 s at paper scale).
    return tuple(sorted((k, tuple(v.shape)) for k, v in jax.eval_shape(latent).items()))


def _unravel(proto):
    from jax.flatten_util import ravel_pytree

    _, unravel = ravel_pytree({k: jnp.zeros(shape) for k, shape in proto})
    return unravel


@lru_cache(maxsize=32)
def _potential(spec: models.ModelSpec, proto):
    """``(z, data, priors, loss) -> potential energy``, jitted: the sampler's and the optimiser's loops
    call it many times over, and a jitted function is traced once per program, not once per call
    (halves the time to build a NUTS program)."""
    from numpyro.infer.util import potential_energy

    model = partial(models.get_model(spec.law), spec=spec)
    unravel = _unravel(proto)
    return jax.jit(lambda z, data, priors, loss: potential_energy(model, (data, priors), {"loss": loss}, unravel(z)))


# XLA's CPU backend hands small dot products and reductions to YNNPACK fusions; at these models'
# shapes (a few thousand observations times a handful of targets or source slots, a mass matrix of
# a hundred dimensions) XLA's own loops are faster: the gradient of the paper-scale ATLAS model
# (1,440 observations, 6 targets, 75 dimensions, 4 vectorised chains) takes 0.78 ms instead of
# 1.01 ms (best of 25 interleaved trials on the 2-core development machine), and a 200-iteration
# NUTS program of it runs 1.34x faster.
_NO_YNN = (("xla_cpu_experimental_ynn_fusion_type", ""),)


@lru_cache(maxsize=1)
def cpu_compiler_options() -> tuple[tuple[str, str], ...]:
    """XLA options of the sampler's programs: YNNPACK fusions off on CPU, where this jaxlib knows the option."""
    if jax.default_backend() != "cpu":
        return ()
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(_NO_YNN)).lower(np.float32(1)).compile()
    except Exception:  # an older or newer jaxlib without the option: XLA's defaults
        return ()
    return _NO_YNN


# Warmup's mass-matrix estimate counts the starting (Laplace) covariance as MASS_ANCHOR * dim^2 / n
# draws, pooled with an adaptation window's n draws (see :func:`_anchored_windows`).
MASS_ANCHOR = 1.0


def _window_flags(num_warmup: int, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Per iteration: whether its draw enters the mass-matrix estimate, and whether the estimate is
    set before it (the last iteration of each of warmup's middle windows, as in NumPyro's schedule)."""
    from numpyro.infer.hmc_util import build_adaptation_schedule

    windows = build_adaptation_schedule(num_warmup)
    collect = np.zeros(num_warmup + num_samples, dtype=bool)
    swap = np.zeros(num_warmup + num_samples, dtype=bool)
    for w in windows[1:-1]:  # the first and last windows are the fast (step-size only) buffers
        collect[w.start:w.end] = True
        swap[w.end] = True
    return collect, swap


def _anchored_windows(sample_kernel, *, dense_mass: bool, anchor: float):
    """Warmup whose mass matrix is each window's sample covariance pooled with the start's.

    NumPyro's windowed adaptation estimates the covariance from each window's draws alone (shrunk
    towards ``1e-3 I``). A dense estimate from ``n`` draws in ``d`` dimensions is poor unless ``n``
    is many times ``d`` (its eigenvalues spread by a factor of order ``(1 + sqrt(d/n))^2 /
    (1 - sqrt(d/n))^2``, more for autocorrelated draws), and warmup's windows hold 25 to a few
    hundred draws. At paper scale (75 dimensions) the posterior covariance had a condition number of
    550 to 1,200 in the metric of the last 200-draw window's estimate, and of 11 to 30 with the
    estimate below.

    The starting covariance ``C0`` (the Laplace covariance at the mode) counts as
    ``k = anchor d^2 / n`` pseudo-draws: a window's estimate is ``(S + k C0) / (n - 1 + k)``, with
    ``S`` the Welford sum of squares of its ``n`` draws (the conjugate inverse-Wishart update of
    ``C0`` by the window). ``k`` grows with the estimate's error, ``d / n`` per dimension: at paper
    scale 225 pseudo-draws for the first 25-draw window and 28 for the last 200-draw one; for an
    11-dimensional single-target fit 5 and 0.6, i.e. NumPyro's estimate nearly. Directions where
    the Laplace covariance is right keep it; directions where the posterior is much wider (a noise
    component near zero) are taken from the draws. A diagonal mass matrix is estimated per
    dimension, so there ``d = 1``.

    Returns ``init(state) -> carry`` and ``step(carry, (collect, swap)) -> (carry, state)`` for a
    scan over :func:`_window_flags`. The kernel must have been initialised with
    ``adapt_mass_matrix=False``: it still adapts the step size, and finds a new one at each window's
    end with the mass matrix set here.
    """
    from numpyro.infer.hmc_util import welford_covariance

    mm_init, mm_update, mm_final = welford_covariance(diagonal=not dense_mass)

    def init(state):
        c0 = state.adapt_state.inverse_mass_matrix
        return state, mm_init(c0.shape[-1]), c0

    def set_mass(state, mm, c0):
        mean, m2, n = mm
        d = c0.shape[-1] if c0.ndim == 2 else 1
        k = anchor * d**2 / jnp.maximum(n, 1)
        # no shrinkage towards NumPyro's 1e-3 I: the anchor is the better target, and at paper scale the
        # shrinkage doubled the steps per draw
        cov, sqrt, sqrt_inv = mm_final((mean, m2 + k * c0, n + k), regularize=False)
        adapt = state.adapt_state._replace(inverse_mass_matrix=cov, mass_matrix_sqrt=sqrt,
                                           mass_matrix_sqrt_inv=sqrt_inv)
        return state._replace(adapt_state=adapt), mm_init(c0.shape[-1])

    def step(carry, flags):
        state, mm, c0 = carry
        collect, swap = flags
        state, mm = jax.lax.cond(swap, set_mass, lambda s, m, _: (s, m), state, mm, c0)
        state = sample_kernel(state)
        updated = mm_update(state.z, mm)
        mm = jax.tree.map(lambda new, old: jnp.where(collect, new, old), updated, mm)
        return (state, mm, c0), state

    return init, step


@lru_cache(maxsize=32)
def _nuts_program(spec: models.ModelSpec, proto, *, num_warmup: int, num_samples: int, dense_mass: bool,
                  target_accept: float, max_tree_depth: int, n_groups: int, anchor_mass: bool,
                  compiler_options: tuple[tuple[str, str], ...] = ()):
    """One compiled NUTS program: ``(keys, z0, inverse_mass, data, priors, loss) -> trace`` over chains.

    ``inverse_mass`` is warmup's first mass matrix (dense ``(dim, dim)``, or its diagonal ``(dim,)``),
    shared by the chains: the Laplace covariance at the mode, so that the first trajectories are not
    taken with a unit mass across parameters whose posterior widths differ by orders of magnitude.
    ``anchor_mass``: warmup's later mass matrices pool it with the draws (:func:`_anchored_windows`);
    otherwise NumPyro's windowed adaptation (for a start that is not an informed covariance).
    ``compiler_options``: XLA options of the program (:func:`cpu_compiler_options`).
    """
    from numpyro.infer.hmc import hmc

    potential = _potential(spec, proto)

    def one_chain(key, z0, inverse_mass, data, priors, loss):
        pe = lambda z: potential(z, data, priors, loss)  # noqa: E731
        init_kernel, sample_kernel = hmc(potential_fn=pe, algo="NUTS")
        state = init_kernel(z0, num_warmup, inverse_mass_matrix=inverse_mass, dense_mass=dense_mass,
                            adapt_mass_matrix=not anchor_mass, target_accept_prob=target_accept,
                            max_tree_depth=max_tree_depth, rng_key=key)

        def record(s):
            return (s.z, s.diverging, s.num_steps, s.energy, s.potential_energy, s.accept_prob, s.adapt_state.step_size)

        # One loop through warmup and sampling (the kernel knows which is which from its counter):
        # a single copy of the NUTS tree builder in the program compiles in half the time.
        if anchor_mass:
            init, step = _anchored_windows(sample_kernel, dense_mass=dense_mass, anchor=MASS_ANCHOR)
            collect, swap = _window_flags(num_warmup, num_samples)

            def body(carry, flags):
                carry, s = step(carry, flags)
                return carry, record(s)

            trace = jax.lax.scan(body, init(state), (jnp.asarray(collect), jnp.asarray(swap)))[1]
        else:
            def body(s, _):
                s = sample_kernel(s)
                return s, record(s)

            trace = jax.lax.scan(body, state, None, length=num_warmup + num_samples)[1]
        return jax.tree.map(lambda a: a[num_warmup:], trace)

    chains = jax.jit(jax.vmap(one_chain, in_axes=(0, 0, None, None, None, None)), compiler_options=dict(compiler_options))
    return _ChainGroups(chains, n_groups)


class _ChainGroups:
    """A vectorised NUTS program run over ``n_groups`` groups of chains concurrently.

    Each group runs its own NUTS loop, so no chain waits for the longest trajectory of the others
    (vectorised chains advance in lockstep: at paper scale they paid for 1.3x the leapfrog steps they
    took). The groups are launched from threads and waited for there: XLA's CPU client runs an
    execution on its caller's thread, so one thread per group keeps every core busy with a single
    compiled program. Other backends place the groups on their devices in turn.

    Executables are compiled ahead of time, once per device and argument shapes, and
    :meth:`precompile` builds one from shapes alone, so that compiling overlaps the search for the
    chains' starts (which the call needs).
    """

    def __init__(self, chains, n_groups: int):
        self.chains, self.n_groups = chains, n_groups
        self._compiled: dict = {}
        self._lock = threading.Lock()

    def _groups(self, keys, z0, inverse_mass, data, priors, loss) -> list:
        devices = jax.local_devices()[:1] if jax.default_backend() == "cpu" else jax.local_devices()
        per = keys.shape[0] // self.n_groups
        out = []
        for i in range(self.n_groups):
            block = slice(i * per, (i + 1) * per)
            dev = devices[i % len(devices)]
            out.append((dev, (keys[block], z0[block], inverse_mass, data, priors, loss)))
        return out

    def _executable(self, dev, args):
        sig = (dev.id, str(jax.tree.map(lambda a: (a.shape, a.dtype), args)))
        with self._lock:
            if sig not in self._compiled:
                specs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=jax.sharding.SingleDeviceSharding(dev)), args)
                self._compiled[sig] = self.chains.lower(*specs).compile()
            return self._compiled[sig]

    @property
    def compilations(self) -> int:
        """Executables compiled so far (one per device and argument shapes)."""
        return len(self._compiled)

    def precompile(self, *args) -> None:
        """Compile for arguments of these shapes (values unused)."""
        for dev, group in self._groups(*args):
            self._executable(dev, group)

    def __call__(self, *args):
        launches = [(self._executable(dev, group), jax.device_put(group, dev)) for dev, group in self._groups(*args)]
        if len(launches) == 1:
            (exe, group), = launches
            return exe(*group)
        with ThreadPoolExecutor(max_workers=len(launches)) as pool:
            outs = list(pool.map(lambda job: jax.block_until_ready(job[0](*job[1])), launches))
        return jax.tree.map(lambda *a: jnp.concatenate([jax.device_get(x) for x in a]), *outs)


@lru_cache(maxsize=32)
def _constrain_program(spec: models.ModelSpec, proto):
    """``(z (draws, dim), data, priors, loss) -> constrained sites and deterministics``."""
    from numpyro.infer.util import constrain_fn

    model = partial(models.get_model(spec.law), spec=spec)
    unravel = _unravel(proto)

    def one(z, data, priors, loss):
        return constrain_fn(model, (data, priors), {"loss": loss}, unravel(z), return_deterministic=True)

    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))


def _flat_init(model, args, kwargs, values: Mapping, proto, key, num_chains: int, jitter: float, dtype) -> np.ndarray:
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import unconstrain_fn

    names = [k for k, _ in proto]
    missing = [k for k in names if k not in values]
    if missing:  # pragma: no cover - a model/initialiser mismatch is a bug
        raise RuntimeError(f"no initial value for sites {missing}")
    constrained = {k: jnp.asarray(values[k], dtype=dtype).reshape(shape) for k, shape in proto}
    # Jitted: op by op, finding the transforms would compile every primitive of the model.
    z = jax.jit(lambda c: ravel_pytree(unconstrain_fn(model, args, kwargs, c))[0])(constrained)
    noise = jitter * jax.random.normal(key, (num_chains, z.shape[0]), dtype=dtype)
    return np.asarray(z[None, :] + noise)


def _chain_starts(spec, proto, args, loss, z0, key, *, num_chains: int, at_mode: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each chain's start and warmup's first inverse mass matrix (unconstrained space).

    ``at_mode``: the posterior mode found by L-BFGS from ``z0`` and one draw per chain from the
    Laplace approximation there (starts spread like the posterior, so R-hat compares chains that
    began apart, none absurdly far: a fixed jitter is hundreds of posterior sd off along the
    well-determined directions, where warmup can lose itself), with its covariance as the first
    mass matrix. Otherwise ``z0`` with a small jitter and a unit mass matrix.
    """
    dim = z0.shape[0]
    noise = np.asarray(jax.random.normal(key, (num_chains, dim), dtype=z0.dtype))
    if not at_mode:
        return np.asarray(z0)[None, :] + INIT_JITTER * noise, np.eye(dim)
    z_mode, H = _mode_program(spec, proto)(jnp.asarray(z0), *args, loss, 500, 1e-3)
    H = np.asarray(H, dtype=np.float64)
    lam, V = np.linalg.eigh(0.5 * (H + H.T))  # numpy: float64 whatever the fit's precision
    M = V * np.maximum(np.abs(lam), 1e-10 * np.abs(lam).max()) ** -0.5
    starts = np.asarray(z_mode, dtype=np.float64)[None, :] + noise @ M.T
    potential = _potential(spec, proto)
    energy = np.asarray(jax.vmap(lambda z: potential(z, *args, loss))(jnp.asarray(starts, dtype=z0.dtype)))
    starts[~np.isfinite(energy)] = np.asarray(z_mode)  # a draw off the support: start at the mode itself
    return starts.astype(z0.dtype), M @ M.T


# chain_method="auto" runs the chains concurrently from this much work on (observations times NUTS
# iterations per chain). Below it the fit takes a few seconds and vectorised chains, whose step costs
# less per chain than a lone chain's, are as fast.
PARALLEL_WORK = 200_000


def _groups_for(num_chains: int, chain_method: ChainMethod, work: int = 0) -> int:
    """Groups of chains run concurrently: 1 (vectorised) for ``"vectorized"`` and small ``"auto"`` fits.

    Otherwise on CPU one group per chain when the host has several cores (threads on one device), and
    on other backends the most devices that divide ``num_chains``.
    """
    if chain_method == "vectorized" or num_chains == 1 or (chain_method == "auto" and work < PARALLEL_WORK):
        return 1
    if jax.default_backend() == "cpu":
        return num_chains if (os.cpu_count() or 1) > 1 or chain_method == "parallel" else 1
    n = jax.local_device_count()
    return max(d for d in range(1, min(n, num_chains) + 1) if num_chains % d == 0)


def _prepare_nuts(spec, proto, args, loss, dim: int, dtype, *, num_warmup, num_samples, dense_mass, target_accept,
                  max_tree_depth, chain_method, num_chains, anchor_mass: bool) -> tuple[_ChainGroups, Future]:
    """The NUTS program of a fit and a future of its compilation, which runs in a thread meanwhile."""
    n_groups = _groups_for(num_chains, chain_method, int(loss.shape[0]) * (num_warmup + num_samples))
    program = _nuts_program(spec, proto, num_warmup=num_warmup, num_samples=num_samples, dense_mass=dense_mass,
                            target_accept=float(target_accept), max_tree_depth=max_tree_depth, n_groups=n_groups,
                            anchor_mass=anchor_mass, compiler_options=cpu_compiler_options())
    keys = jax.random.split(jax.random.key(0), num_chains)
    mass = jnp.zeros((dim, dim) if dense_mass else (dim,), dtype=dtype)
    x64 = jnp.dtype(dtype) == jnp.float64

    def compile_():
        with jax.enable_x64(x64):
            program.precompile(keys, jnp.zeros((num_chains, dim), dtype=dtype), mass, *args, loss)
            # and the program that maps the draws back to the parameters (compiled by a first call)
            _constrain_program(spec, proto)(jnp.zeros((num_chains * num_samples, dim), dtype=dtype), *args, loss)

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(compile_)
    pool.shutdown(wait=False)
    return program, future


def _run_nuts(spec, proto, program, compiled: Future, args, loss, z0, inverse_mass, key, *, num_samples, dense_mass,
              num_chains, max_tree_depth):
    compiled.result()  # re-raises a compilation error
    keys = jax.random.split(key, num_chains)
    inverse_mass = jnp.asarray(inverse_mass if dense_mass else np.diag(inverse_mass), dtype=z0.dtype)
    z, diverging, num_steps, energy, pe, accept, step_size = program(keys, jnp.asarray(z0), inverse_mass, *args, loss)
    flat = z.reshape((-1, z.shape[-1]))
    sites = _constrain_program(spec, proto)(flat, *args, loss)
    draws = {k: np.asarray(v).reshape((num_chains, num_samples) + v.shape[1:]) for k, v in sites.items()}
    steps = np.asarray(num_steps)
    stats = {
        "diverging": np.asarray(diverging),
        "energy": np.asarray(energy),
        "lp": -np.asarray(pe),
        "acceptance_rate": np.asarray(accept),
        "step_size": np.asarray(step_size),
        "n_steps": steps,
        "tree_depth": np.floor(np.log2(np.maximum(steps, 1))).astype(int) + 1,
    }
    extra = {"chain_groups": program.n_groups, "max_tree_depth_hits": int((stats["tree_depth"] > max_tree_depth).sum())}
    return draws, stats, extra


# ----------------------------------------------------------------------------- SVI and Laplace


def _pareto_k(log_w: np.ndarray) -> float:
    import arviz as az

    log_w = np.asarray(log_w, dtype=float)
    log_w = np.where(np.isfinite(log_w), log_w, -np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz warns when k is large: we report k ourselves
        _, k = az.psislw(log_w - np.max(log_w))
    return float(k)


@lru_cache(maxsize=32)
def _mode_program(spec: models.ModelSpec, proto):
    """``(z0, data, priors, loss, max_iter, tol) -> (z, H)``: the posterior mode (L-BFGS, unconstrained
    space) and the Hessian of the potential there.

    Cached like the NUTS program, with the iteration limit and tolerance as arguments: refits on new
    data of the same shapes, and the Laplace fit's tighter solve, reuse one compilation.
    """
    import optax

    potential = _potential(spec, proto)
    opt = optax.lbfgs(linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=20))

    def solve(z, data, priors, loss, max_iter, tol):
        U = lambda z: potential(z, data, priors, loss)  # noqa: E731
        value_and_grad = optax.value_and_grad_from_state(U)

        def step(carry):
            z, state = carry
            value, grad = value_and_grad(z, state=state)
            updates, state = opt.update(grad, state, z, value=value, grad=grad, value_fn=U)
            return optax.apply_updates(z, updates), state

        def cond(carry):
            _, state = carry
            count = optax.tree.get(state, "count")
            return (count == 0) | ((count < max_iter) & (optax.tree.norm(optax.tree.get(state, "grad")) > tol))

        z_new = jax.lax.while_loop(cond, step, (z, opt.init(z)))[0]
        # keep the start if the search went astray (non-finite or worse)
        ok = jnp.isfinite(U(z_new)) & (U(z_new) <= U(z))
        z = jnp.where(ok, z_new, z)
        return z, jax.hessian(U)(z)

    return jax.jit(solve)


def _run_laplace(model, args, kwargs, proto, z0, key, *, num_draws: int, dtype, spec):
    potential = _potential(spec, proto)
    U = lambda z: potential(z, *args, kwargs["loss"])  # noqa: E731
    z_map, H = _mode_program(spec, proto)(jnp.asarray(z0, dtype=dtype), *args, kwargs["loss"], 2000, 1e-6)
    H = 0.5 * (H + H.T)
    chol = jnp.linalg.cholesky(H)
    if not bool(jnp.all(jnp.isfinite(chol))):
        raise ValueError("Laplace approximation failed: the Hessian at the posterior mode is not positive definite "
                         "(a flat or unidentified direction); use --method nuts, or --fix the unidentified parameter")
    eps = jax.random.normal(key, (num_draws, z_map.shape[0]), dtype=dtype)
    z = z_map + jax.scipy.linalg.solve_triangular(chol.T, eps.T, lower=False).T  # cov = H^-1
    log_q = -0.5 * jnp.sum(eps**2, axis=1) + jnp.sum(jnp.log(jnp.diag(chol)))
    log_p = -jax.vmap(U)(z)
    return z, np.asarray(log_p - log_q), {"grad_norm_at_mode": float(jnp.linalg.norm(jax.grad(U)(z_map)))}


def _whitening(H: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(M, log|det M|)`` with ``M M^T = H^-1`` (eigenvalues floored: a preconditioner, always valid)."""
    lam, V = jnp.linalg.eigh(0.5 * (H + H.T))
    lam = jnp.maximum(jnp.abs(lam), 1e-10 * jnp.max(jnp.abs(lam)))
    return V * lam**-0.5, -0.5 * jnp.sum(jnp.log(lam))


@lru_cache(maxsize=32)
def _svi_program(spec: models.ModelSpec, proto, steps: int, num_particles: int):
    """``(z_map, M, key, data, priors, loss) -> (m, raw)``: a full-rank Gaussian fitted by the ELBO.

    The Gaussian lives in the coordinates whitened at the mode, ``z = z_map + M w`` with
    ``M M^T = H^-1``: there the posterior is close to ``Normal(0, I)`` whatever the scales of the
    parameters, so Adam's step (the same size in every coordinate) suits all of them. ``q(w) =
    Normal(m, S S^T)``, ``S = tril(raw, -1) + diag(exp(diag(raw)))``, starts at the Laplace
    approximation (``m = 0``, ``S = I``); reparametrised gradients, ``num_particles`` per step.
    """
    import optax

    potential = _potential(spec, proto)
    opt = optax.adam(optax.cosine_decay_schedule(1e-2, steps, alpha=0.01))

    def fit(z_map, M, key, data, priors, loss):
        dim = z_map.shape[0]

        def neg_elbo(params, k):
            m, raw = params
            S = jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diag(raw)))
            w = m + jax.random.normal(k, (num_particles, dim), z_map.dtype) @ S.T
            energy = jnp.mean(jax.vmap(lambda z: potential(z, data, priors, loss))(z_map + w @ M.T))
            return energy - jnp.sum(jnp.diag(raw))  # minus the entropy of q, up to a constant

        def step(carry, k):
            params, state = carry
            grad = jax.grad(neg_elbo)(params, k)
            updates, state = opt.update(grad, state, params)
            return (optax.apply_updates(params, updates), state), None

        params = (jnp.zeros(dim, z_map.dtype), jnp.zeros((dim, dim), z_map.dtype))
        return jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, steps))[0][0]

    return jax.jit(fit)


def _run_svi(spec, proto, args, loss, z0, key, *, steps: int, num_draws: int, dtype):
    potential = _potential(spec, proto)
    U = lambda z: potential(z, *args, loss)  # noqa: E731
    z_map, H = _mode_program(spec, proto)(jnp.asarray(z0, dtype=dtype), *args, loss, 2000, 1e-6)
    M, logdet_M = _whitening(H)
    k_fit, k_draw = jax.random.split(key)
    m, raw = _svi_program(spec, proto, int(steps), 8)(z_map, M, k_fit, *args, loss)
    S = jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diag(raw)))
    eps = jax.random.normal(k_draw, (num_draws, z_map.shape[0]), dtype=dtype)
    z = z_map + (m + eps @ S.T) @ M.T
    log_q = -0.5 * jnp.sum(eps**2, axis=1) - jnp.sum(jnp.diag(raw)) - logdet_M - 0.5 * eps.shape[1] * jnp.log(2 * jnp.pi)
    log_w = np.asarray(-jax.vmap(U)(z) - log_q)
    finite = log_w[np.isfinite(log_w)]
    return z, log_w, {"elbo": float(finite.mean()) if finite.size else None, "svi_steps": int(steps)}


# ----------------------------------------------------------------------------- results


def _posterior(draws: Mapping[str, np.ndarray], obs: Observations, spec: models.ModelSpec, fixed: Mapping[str, float],
               N0: np.ndarray, D0: np.ndarray) -> tuple[dict, dict]:
    """Reported variables (SPEC names, natural units, float64) and their dims.

    Per-target variables have a trailing ``lang`` axis (dropped for a single target); fully pooled
    and fixed parameters and the pooling hyper-parameters are scalars per draw.
    """
    n = spec.n_lang
    shape = next(iter(draws.values())).shape[:2]
    f64 = {k: np.asarray(v, dtype=np.float64) for k, v in draws.items()}

    def per_target(v):  # (chain, draw[, lang]) -> (chain, draw, lang)
        return np.broadcast_to(v[..., None], shape + (n,)) if v.ndim == 2 else v

    out: dict[str, np.ndarray] = {}
    for p in sorted(obs.law.params, key=lambda p: p.name in ("A", "B")):  # exponents before amplitudes
        if p.name in fixed:
            out[p.name] = np.full(shape, fixed[p.name])
        elif p.name in ("A", "B"):
            exponent = per_target(out["alpha"] if p.name == "A" else out["beta"])
            out[p.name] = f64[f"{p.name}_ref"] * np.power((N0 if p.name == "A" else D0)[None, None, :], exponent)
        else:
            out[p.name] = f64[p.name]
    for k in sorted(f64):
        if k.startswith("tau_") and k not in out and k not in fixed:
            out[k] = f64[k]
        elif k in ("sigma", "sigma_law", "sigma_seed", "nu") or k.startswith(("mu_", "sd_")):
            out[k] = f64[k]
    for k in fixed:
        if k not in out:  # a fixed per-source weight
            out[k] = np.full(shape, fixed[k])
    order = [p.name for p in obs.law.params]
    out = {k: out[k] for k in sorted(out, key=lambda k: (order.index(k) if k in order else len(order)))}
    dims: dict[str, tuple[str, ...]] = {}
    for k, v in list(out.items()):
        if v.ndim == 3:
            if n == 1:
                out[k] = v[..., 0]
            else:
                dims[k] = ("lang",)
    return out, dims


def _log_likelihood(posterior: Mapping[str, np.ndarray], obs: Observations, likelihood: Likelihood) -> np.ndarray:
    """``(chain, draw, obs)`` log density of each observed loss (natural units, float64).

    With replicated configurations this is the marginal density of a run (noise ``sigma``), the
    density a new run would have; it is what PSIS-LOO needs.
    """
    from atlas_bayes.models import loss_distribution

    law = obs.law
    first = next(iter(posterior.values()))
    chains, draws = first.shape[:2]
    out = np.empty((chains, draws, len(obs.loss)))
    with jax.enable_x64(True):
        for t, target in enumerate(obs.targets):
            rows = np.flatnonzero(obs.lang == t)
            sources = obs.sources[t]
            p = {}
            for k, v in posterior.items():
                v = v[..., t] if v.ndim == 3 else v
                p[k] = jnp.asarray(v.reshape(-1, 1))
            k_t = len(sources)
            x = {k: jnp.asarray(v[rows][:, :k_t] if k in ("D_src", "U_src") and law.transfer == "sources" else v[rows])
                 for k, v in obs.x.items()}

            # One compiled program per target: op by op, every primitive would compile on its own
            # (37 s of a paper-scale fit's 2 minutes of overhead).
            @jax.jit
            def log_density(x, p, y, sources=tuple(sources)):
                d = loss_distribution(jnp.log(law.evaluate(x, p, sources)), p["sigma"], p.get("nu"), likelihood)
                return d.log_prob(y)

            out[:, :, rows] = np.asarray(log_density(x, p, jnp.asarray(obs.loss[rows]))).reshape(chains, draws, -1)
    return out


class ModelInputs(NamedTuple):
    """Everything a model needs, as numpy arrays: the observations, the static structure, the priors.

    ``arrays(dtype)`` gives the ``(data, priors, loss)`` the model function takes; ``model`` is the
    model with its ``spec`` bound. The PyMC twin reads the same arrays.
    """

    obs: Observations
    spec: models.ModelSpec
    fixed: dict[str, float]
    weights: np.ndarray
    group: np.ndarray  # replicate group of each observation, in model order
    group_lang: np.ndarray
    N0: np.ndarray
    D0: np.ndarray
    L_ref: np.ndarray
    priors: dict[str, tuple[np.ndarray, np.ndarray]]
    order: np.ndarray  # model order of the observations: obs[order] (replicates contiguous, by group size)

    @property
    def model(self):
        return partial(models.get_model(self.spec.law), spec=self.spec)

    def arrays(self, dtype=jnp.float32) -> tuple[models.ModelData, dict, jax.Array]:
        obs, o = self.obs, self.order
        x = models.scale_inputs({k: v[o] for k, v in obs.x.items()}, obs.lang[o], self.N0, self.D0)
        data = models.ModelData(
            x={k: jnp.asarray(v, dtype=dtype) for k, v in x.items()},
            lang=jnp.asarray(obs.lang[o]),
            weight=jnp.asarray(self.weights[o], dtype=dtype),
            N0=jnp.asarray(self.N0, dtype=dtype),
            D0=jnp.asarray(self.D0, dtype=dtype),
            group=jnp.asarray(self.group),
            group_lang=jnp.asarray(self.group_lang),
        )
        priors = jax.tree.map(lambda a: jnp.asarray(a, dtype=dtype), self.priors)
        return data, priors, jnp.asarray(obs.loss[o], dtype=dtype)


def build_model(
    cube: xr.Dataset,
    law: Law | str,
    *,
    target: str | Sequence[str] | None = None,
    fix: Mapping[str, float] | str | None = None,
    prior: priors_lib.PriorName = "default",
    likelihood: Likelihood = "normal",
    pooling: models.Pooling = "partial",
    replicates: Replicates = "auto",
    use_steps: bool = False,
    weights: np.ndarray | None = None,
) -> ModelInputs:
    """The model of ``law`` for ``target``'s observations in ``cube`` (arguments as :func:`fit_bayes`)."""
    law = registry.get_law(law) if isinstance(law, str) else law
    _check_choice("prior", prior, priors_lib.PRIORS)
    _check_choice("likelihood", likelihood, LIKELIHOODS)
    _check_choice("pooling", pooling, models.POOLINGS)
    _check_choice("replicates", replicates, get_args(Replicates))
    obs = observations(cube, law, target=target, use_steps=use_steps)
    union = tuple(dict.fromkeys(s for srcs in obs.sources for s in srcs))
    fixed = _parse_fixed(fix, law, union)
    n_obs, n_lang = len(obs.loss), len(obs.targets)
    w = np.ones(n_obs) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (n_obs,) or not np.all((w == 0) | (w == 1)):
        raise ValueError(f"weights must be {n_obs} values of 0 or 1 (one per observation, in observations() order); "
                         f"got shape {w.shape}")
    for t, target_name in enumerate(obs.targets):
        if not np.any(w[obs.lang == t] > 0):
            raise ValueError(f"weights leave no observation of target {target_name!r}")

    group, counts = _replicate_groups(obs, _run_configs(cube, obs.run))
    has_replicates = bool(counts.max() >= 2)
    if replicates == "grouped" and likelihood != "normal":
        raise ValueError("replicates='grouped' needs likelihood='normal' (the configuration effect is integrated out "
                         "in closed form); use replicates='independent' with a Student-t likelihood")
    if replicates == "grouped" and not has_replicates:
        raise ValueError("replicates='grouped' needs runs that share a configuration (several seeds); this cube has none")
    grouped = has_replicates and likelihood == "normal" and replicates != "independent"
    n_groups = int(counts.size) if grouped else 0
    lone = [t for i, t in enumerate(obs.targets) if counts[group[obs.lang == i]].max() < 2]
    if grouped and lone:
        warnings.warn(f"replicated configurations for some targets but none for {lone}: their sigma_law and sigma_seed "
                      "are identified only through sqrt(sigma_law^2 + sigma_seed^2), a ridge NUTS mixes slowly along; "
                      "pass replicates='independent', or fit those targets separately", UserWarning, stacklevel=3)
    order = np.arange(n_obs)
    group_lang = np.zeros(1, dtype=np.int32)
    sizes: tuple[tuple[int, int], ...] = ()
    if grouped:
        # model order: observations sorted by the size of their group, then by group, so that each size
        # class is a contiguous (groups, size) block (replicate sums are reshapes, not scatters)
        order = np.lexsort((group, counts[group]))
        _, first = np.unique(group[order], return_index=True)
        renumber = np.empty(n_groups, dtype=np.int64)
        renumber[group[order][np.sort(first)]] = np.arange(n_groups)
        group = renumber[group[order]].astype(np.int32)
        group_lang = np.zeros(n_groups, dtype=np.int32)
        group_lang[group] = obs.lang[order]
        k, n_k = np.unique(np.bincount(group), return_counts=True)
        sizes = tuple((int(a), int(b)) for a, b in zip(k, n_k))

    pairs, names = [], []
    for t, srcs in enumerate(obs.sources if law.transfer == "sources" else ()):
        for k, s in enumerate(srcs):
            pairs.append((t, k))
            names.append(s)
    spec = models.ModelSpec(
        law=law.name,
        n_lang=n_lang,
        slots=obs.x["D_src"].shape[1] if law.transfer == "sources" else 0,
        tau_pairs=tuple(pairs),
        tau_names=tuple(names),
        pooling=pooling if n_lang > 1 else "none",
        likelihood=likelihood,
        n_groups=n_groups,
        group_sizes=sizes,
        fixed=tuple(sorted((k, v) for k, v in fixed.items() if not (k.startswith("tau_") and k != "tau_other"))),
        fixed_tau=tuple((i, fixed[f"tau_{s}"]) for i, s in enumerate(names) if f"tau_{s}" in fixed),
    )
    fitted = w > 0
    N0, D0 = models.reference_scales({k: v[fitted] for k, v in obs.x.items()}, obs.lang[fitted], n_lang, law.name)
    L_ref = np.array([np.median(obs.loss[fitted & (obs.lang == t)]) for t in range(n_lang)])
    prior_arrays = priors_lib.prior_arrays(law, prior=prior, targets=obs.targets,
                                           tau_pairs=[(obs.targets[t], s) for (t, _), s in zip(pairs, names)], L_ref=L_ref)

    return ModelInputs(obs=obs, spec=spec, fixed=fixed, weights=w, group=group if grouped else np.zeros(n_obs, np.int32),
                       group_lang=group_lang, N0=N0, D0=D0, L_ref=L_ref, priors=prior_arrays, order=order)


def fit_bayes(
    cube: xr.Dataset,
    law: Law | str,
    *,
    method: BayesMethod = "nuts",
    target: str | Sequence[str] | None = None,
    fix: Mapping[str, float] | str | None = None,
    prior: priors_lib.PriorName = "default",
    likelihood: Likelihood = "normal",
    pooling: models.Pooling = "partial",
    replicates: Replicates = "auto",
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 1000,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = True,
    chain_method: ChainMethod = "auto",
    precision: Precision = "float32",
    init: Literal["map", "point", "prior"] = "map",
    init_starts: int = 128,
    svi_steps: int = 4000,
    seed: int = 0,
    use_steps: bool = False,
    weights: np.ndarray | None = None,
    check: bool = True,
) -> FitResult:
    """Posterior of ``law``'s parameters given ``target``'s losses in ``cube``.

    Parameters
    ----------
    cube
        A run cube (:mod:`atlas_bayes.cube`).
    law
        A registered law (:data:`atlas_bayes.registry.LAWS`).
    method
        ``"nuts"`` (exact, default), ``"svi"`` (full-rank Gaussian variational fit) or
        ``"laplace"`` (Gaussian at the mode): the latter two are fast options for very large cubes.
    target
        An evaluation language, several (a list or ``"fr,de"``) or ``"all"``; may be left out
        when the cube has one. Several targets make one joint model with a ``lang`` dim.
    fix
        Parameters held at values (``{"E": 1.8}`` or ``"E=1.8,..."``), for every target.
    prior
        ``"default"`` (weakly informative) or ``"paper"`` (published values): :mod:`atlas_bayes.priors`.
    likelihood
        ``"normal"`` or ``"student_t"`` (heavy tails for outlier runs) noise on log-loss.
    pooling
        Several targets: ``"none"``, ``"partial"`` (hierarchical, default) or ``"full"`` pooling of
        ``E`` and the exponents across targets (:mod:`atlas_bayes.models`).
    replicates
        ``"auto"``: runs sharing a configuration (seeds: the same ``N``, ``D``, mixture and ``U``)
        get a shared configuration effect and a seed-to-seed noise ``sigma_seed`` (normal
        likelihood only; Student-t treats runs as independent); ``"grouped"`` requires it,
        ``"independent"`` turns it off.
    num_chains, num_warmup, num_samples, target_accept, max_tree_depth, dense_mass
        NUTS settings (``num_chains * num_samples`` draws for SVI and Laplace).
    chain_method
        ``"vectorized"``: chains vectorised in one program (they advance in lockstep); ``"parallel"``:
        one chain per thread on CPU (one compiled program, every core busy, no chain waiting for the
        others' trajectories), one group per device on other backends; ``"auto"``: parallel on a
        multi-core host when the fit is large (observations x iterations per chain at least
        :data:`PARALLEL_WORK`), else vectorised.
    precision
        ``"float32"`` (default: inputs are in reference units, every quantity is of order one) or
        ``"float64"``.
    init
        Where the chains start (each with a small jitter): ``"map"`` (default) the posterior mode
        found by L-BFGS from the prior medians; ``"point"`` point fits of each target (Huber/L-BFGS
        from ``init_starts`` random starts of the paper's grid: more robust to local optima,
        slower) polished to the posterior mode; ``"prior"`` the prior medians (warmup does all).
    weights
        0/1 per observation in :func:`observations` order: 0 leaves it out of the likelihood
        (held-out splits; the compiled program is reused across splits).
    check
        Warn (:class:`~atlas_bayes.results.DiagnosticsWarning`) when the diagnostics are bad.

    Examples
    --------
    >>> import jax
    >>> from atlas_bayes import simulate
    >>> runs = simulate.grid(N=[1e7, 3e7, 1e8, 3e8], D=[1e9, 3e9, 1e10, 3e10])
    >>> cube = simulate.simulate_cube("chinchilla", simulate.PAPER["chinchilla_refit"], runs, key=jax.random.key(0))
    >>> fit = fit_bayes(cube, "chinchilla", num_chains=2, num_warmup=300, num_samples=300, check=False)
    >>> sorted(fit.param_names)
    ['A', 'B', 'E', 'alpha', 'beta', 'sigma']
    """
    t_start = time.perf_counter()
    law = registry.get_law(law) if isinstance(law, str) else law
    _check_choice("method", method, BAYES_METHODS)
    _check_choice("chain_method", chain_method, get_args(ChainMethod))
    _check_choice("precision", precision, get_args(Precision))
    _check_choice("init", init, ("map", "point", "prior"))
    if num_chains < 1 or num_warmup < 1 or num_samples < 1:
        raise ValueError(f"num_chains, num_warmup and num_samples must be >= 1; got {num_chains}, {num_warmup}, {num_samples}")
    if not 0 < target_accept < 1:
        raise ValueError(f"target_accept must be between 0 and 1 (e.g. 0.9); got {target_accept}")

    m = build_model(cube, law, target=target, fix=fix, prior=prior, likelihood=likelihood, pooling=pooling,
                    replicates=replicates, use_steps=use_steps, weights=weights)
    obs, spec, fixed, w, N0, D0, L_ref = m.obs, m.spec, m.fixed, m.weights, m.N0, m.D0, m.L_ref
    prior_arrays, n_lang, grouped = m.priors, spec.n_lang, spec.n_groups > 0
    x64 = precision == "float64" or method in ("laplace", "svi")  # the Hessian at the mode needs float64
    dtype = jnp.float64 if x64 else jnp.float32
    with jax.enable_x64(x64):
        data, priors_j, loss = m.arrays(dtype)
        model = m.model
        args, kwargs = (data, priors_j), {"loss": loss}
        proto = _prototype(model, args, kwargs)

        t_init = time.perf_counter()
        if init == "point":
            inits, notes = _point_inits(obs, fixed, w, init_starts)
        else:
            inits, notes = [None] * n_lang, [f"prior median{' -> posterior mode' if init == 'map' else ''}"] * n_lang
        for target_name, note in zip(obs.targets, notes):
            if note.startswith("prior median (point fit failed"):
                warnings.warn(f"{law.name} fit of {target_name!r}: starting from the {note}", UserWarning, stacklevel=2)
        values = _init_values(obs, spec, prior_arrays, inits, N0, D0, L_ref)
        key = jax.random.key(seed)
        k_init, k_run = jax.random.split(key)
        z0 = _flat_init(model, args, kwargs, values, proto, k_init, 1, 0.0, dtype)[0]
        if method == "nuts":
            program, compiled = _prepare_nuts(spec, proto, args, loss, z0.shape[0], dtype, num_warmup=num_warmup,
                                              num_samples=num_samples, dense_mass=dense_mass,
                                              target_accept=target_accept, max_tree_depth=max_tree_depth,
                                              chain_method=chain_method, num_chains=num_chains,
                                              anchor_mass=init in ("map", "point"))
            z0, inverse_mass = _chain_starts(spec, proto, args, loss, z0, k_init, num_chains=num_chains,
                                             at_mode=init in ("map", "point"))
        else:
            z0 = z0[None, :]
        t_run = time.perf_counter()

        extra: dict[str, Any] = {}
        stats = None
        if method == "nuts":
            draws, stats, extra = _run_nuts(spec, proto, program, compiled, args, loss, z0, inverse_mass, k_run,
                                            num_samples=num_samples, dense_mass=dense_mass, num_chains=num_chains,
                                            max_tree_depth=max_tree_depth)
        else:
            n_draws = num_chains * num_samples
            if method == "laplace":
                z, log_w, extra = _run_laplace(model, args, kwargs, proto, z0[0], k_run, num_draws=n_draws, dtype=dtype, spec=spec)
            else:
                z, log_w, extra = _run_svi(spec, proto, args, loss, z0[0], k_run, steps=svi_steps, num_draws=n_draws,
                                           dtype=dtype)
            sites = _constrain_program(spec, proto)(z, *args, loss)
            draws = {k: np.asarray(v)[None] for k, v in sites.items()}
            extra["pareto_k"] = _pareto_k(log_w)
        t_done = time.perf_counter()

    posterior, dims = _posterior(draws, obs, spec, fixed, N0, D0)
    log_lik = _log_likelihood(posterior, obs, likelihood)
    multi = n_lang > 1
    config = FitConfig(
        law=law.name,
        target=",".join(obs.targets),
        method=method,
        sources=() if multi else obs.sources[0],
        fixed=fixed,
        units=str(cube["loss"].attrs.get("units", "")),
        options={
            "targets": list(obs.targets),
            "sources_by_target": {t: list(s) for t, s in zip(obs.targets, obs.sources)},
            "prior": prior,
            "likelihood": likelihood,
            "pooling": spec.pooling,
            "replicates": "grouped" if grouped else "independent",
            "num_chains": num_chains if method == "nuts" else 1,
            "num_warmup": num_warmup,
            "num_samples": num_samples,
            "target_accept": target_accept,
            "max_tree_depth": max_tree_depth,
            "dense_mass": dense_mass,
            "precision": precision,
            "init": dict(zip(obs.targets, notes)),
            "seed": seed,
            "use_steps": use_steps,
            "excluded_cells": obs.excluded,
            "held_out": int((w == 0).sum()),
            "reference": {t: {"N0": float(N0[i]), "D0": float(D0[i]), "L_ref": float(L_ref[i])}
                          for i, t in enumerate(obs.targets)},
            "seconds": {"init": t_run - t_init, "sampling": t_done - t_run, "total": time.perf_counter() - t_start},
            **extra,
        },
    )
    x_store = dict(obs.x)
    if not multi and law.transfer == "sources":
        k_t = len(obs.sources[0])
        x_store = {k: (v[:, :k_t] if k in ("D_src", "U_src") else v) for k, v in x_store.items()}
    result = make_result(
        config=config, posterior=posterior, estimate={}, x=x_store, loss=obs.loss, run=obs.run, cube=cube,
        sample_stats=stats, log_likelihood=log_lik, dims=dims, coords={"lang": list(obs.targets)} if multi else None,
        obs_coords={"target": np.asarray(obs.targets, dtype=object)[obs.lang], "weight": w},
    )
    if check:
        check_diagnostics(result, stacklevel=2)
    return result
