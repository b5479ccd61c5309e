"""Point fits by the paper convention: Huber loss on log-loss, L-BFGS from a grid of starts.

This is the baseline every scaling-law paper reports (Hoffmann et al. 2022, App. D.2): minimise

.. math:: \\sum_i \\mathrm{Huber}_\\delta\\big(\\log \\hat L(x_i; \\theta) - \\log L_i\\big), \\qquad \\delta = 10^{-3}

over ``theta`` in the logsumexp parametrisation (``a = log A``, ``b = log B``, ``e = log E``;
exponents as they are), by L-BFGS from every point of the grid ``a, b in {0, 5, ..., 25}``,
``e in {-1, -.5, ..., 1}``, ``alpha, beta in {0, .5, ..., 2}`` -- all starts at once, vmapped and
jitted -- keeping the best. Works for any law of the registry; ``fixed`` holds parameters at given
values (two-stage fits such as DCSL's base-then-decay).

Vmapped, every L-BFGS iteration costs as much as the slowest start's line search, so the starts run
in stages: all of them for ``screen_iter`` iterations, the ``polish`` best of those for
``polish_iter``, and the ``refine`` best of those to convergence (gradient norm below ``tol``, at most
``max_iter`` iterations: ATLAS's E-B-beta-lam valley can take thousands). On the Chinchilla data this
finds the same optimum as running every start to convergence (to 1e-15 in the objective) about 20
times faster. Starts go
through one jitted solver in chunks of ``CHUNK`` with a traced iteration limit, so screening,
polishing and the bootstrap share a single compilation per law and data shape.

A point fit alone has no error bar, so :func:`fit_point` also refits ``bootstrap`` resamples of the
observations (one vmapped L-BFGS from the optimum, as Besiroglu et al. 2024 did for Chinchilla):
their spread is the interval reported next to each estimate.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

from atlas_bayes import registry
from atlas_bayes.registry import Law
from atlas_bayes.results import FitConfig, FitResult, make_result

__all__ = ["PointFit", "fit_point", "fit_point_arrays", "parse_fix", "start_grid"]

DELTA = 1e-3


class PointFit(NamedTuple):
    """Result of :func:`fit_point_arrays`."""

    params: dict[str, float]  # best fit, natural scale (A, not log A)
    objective: float  # Huber objective at the best fit
    sigma: float  # RMS of log residuals at the best fit (observation noise on log L)
    n_starts: int
    starts_at_best: int  # refined starts that reached the best objective (to 1e-6 relative)
    draws: dict[str, np.ndarray]  # bootstrap refits, (bootstrap,) each; empty if bootstrap = 0
    bootstrap_failed: int  # bootstrap refits that ended non-finite (dropped, and counted here)
    unidentified: tuple[str, ...]  # free parameters the predictions do not depend on at all


def parse_fix(text: str | None, law: Law, sources: Sequence[str] = ()) -> dict[str, float]:
    """Parse ``"NAME=VALUE,NAME=VALUE"``; the error lists the law's parameter names."""
    if not text:
        return {}
    valid = law.param_names(sources)
    fixed = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"--fix expects NAME=VALUE pairs separated by commas; got {item!r}")
        if name not in valid:
            raise ValueError(f"unknown parameter {name!r} for law {law.name!r}; valid parameters: {', '.join(valid)}")
        try:
            fixed[name] = float(value)
        except ValueError:
            raise ValueError(f"--fix value for {name!r} must be a number; got {value!r}") from None
    return fixed


def _to_fit_space(spec: registry.Param, value: float) -> float:
    return math.log(value) if spec.transform == "log" else value


def start_grid(law: Law, sources: Sequence[str] = (), fixed: Mapping[str, float] | None = None) -> np.ndarray:
    """Starting points in fit space, ``(n_starts, n_free)``: the product of each free parameter's starts."""
    fixed = fixed or {}
    free = [p for p in law.param_specs(sources) if p.name not in fixed]
    axes = [[_to_fit_space(p, v) for v in p.starts] for p in free]
    return np.array(list(itertools.product(*axes)), dtype=np.float64).reshape(-1, len(free))


def _natural(theta, free: tuple[registry.Param, ...], fixed: tuple[tuple[str, float], ...]) -> dict:
    params = {name: jnp.asarray(value, dtype=theta.dtype) for name, value in fixed}
    for i, p in enumerate(free):
        params[p.name] = jnp.exp(theta[i]) if p.transform == "log" else theta[i]
    return params


def _objective(theta, w, x, log_y, *, law, sources, free, fixed, delta):
    pred = law.evaluate(x, _natural(theta, free, fixed), sources)
    return jnp.sum(w * optax.losses.huber_loss(jnp.log(pred), log_y, delta=delta))


def _minimize(fun, theta0, max_iter, *, tol: float):
    """L-BFGS with zoom line search until the gradient norm drops below ``tol`` (optax recipe).

    ``max_iter`` is traced, so screening and polishing share one compiled program.
    """
    opt = optax.lbfgs(linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=10))
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        theta, state = carry
        value, grad = value_and_grad(theta, state=state)
        updates, state = opt.update(grad, state, theta, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(theta, updates), state

    def keep_going(carry):
        _, state = carry
        count = optax.tree.get(state, "count")
        grad_norm = optax.tree.norm(optax.tree.get(state, "grad"))
        return (count == 0) | ((count < max_iter) & (grad_norm >= tol))

    theta, state = jax.lax.while_loop(keep_going, step, (theta0, opt.init(theta0)))
    return theta, fun(theta)


CHUNK = 128  # starts per compiled call: every call has this shape, so a fit compiles once


@partial(jax.jit, static_argnames=("law", "sources", "free", "fixed", "delta", "tol"))
def _solve_chunk(theta0, w, x, log_y, max_iter, *, law, sources, free, fixed, delta, tol):
    """Minimise from each of ``CHUNK`` starts ``theta0`` with observation weights ``w``."""

    def one(t0, wi):
        fun = partial(_objective, w=wi, x=x, log_y=log_y, law=law, sources=sources, free=free, fixed=fixed, delta=delta)
        return _minimize(fun, t0, max_iter, tol=tol)

    return jax.vmap(one)(theta0, w)


def _solve(theta0, w, x, log_y, *, max_iter: int, **kw):
    """Minimise from every row of ``theta0`` (weights ``w`` per row), ``CHUNK`` rows per call.

    Calls are dispatched asynchronously and gathered once at the end (no host sync per chunk).
    """
    n = theta0.shape[0]
    pad = -n % CHUNK
    theta0 = jnp.concatenate([theta0, jnp.broadcast_to(theta0[-1:], (pad,) + theta0.shape[1:])])
    w = jnp.concatenate([w, jnp.broadcast_to(w[-1:], (pad,) + w.shape[1:])])
    limit = jnp.asarray(max_iter, dtype=jnp.int32)
    parts = [
        _solve_chunk(theta0[i : i + CHUNK], w[i : i + CHUNK], x, log_y, limit, **kw) for i in range(0, n + pad, CHUNK)
    ]
    thetas = jnp.concatenate([p[0] for p in parts])[:n]
    objs = jnp.concatenate([p[1] for p in parts])[:n]
    return thetas, objs


def fit_point_arrays(
    law: Law | str,
    x: Mapping[str, np.ndarray],
    loss: np.ndarray,
    *,
    sources: Sequence[str] = (),
    fixed: Mapping[str, float] | None = None,
    delta: float = DELTA,
    bootstrap: int = 0,
    key: jax.Array | None = None,
    screen_iter: int = 30,
    polish: int = CHUNK,
    polish_iter: int = 500,
    refine: int = 8,
    max_iter: int = 5000,
    tol: float = 1e-10,
    starts: np.ndarray | None = None,
    max_starts: int | None = None,
    weights: np.ndarray | None = None,
) -> PointFit:
    """Fit ``law`` to observations ``loss`` with inputs ``x`` (see :func:`atlas_bayes.registry.design`).

    Runs in float64 (the Huber objective with ``delta = 1e-3`` needs the precision).
    ``weights`` (``(obs,)``, non-negative, default all 1) multiply each observation's Huber term;
    a weight of 0 leaves an observation out without changing any array shape, so fits on several
    subsets of one design (cross-validation splits) share one compilation. The bootstrap then
    resamples the observations of positive weight only, and ``sigma`` is their weighted RMS.
    ``starts`` replaces the grid; ``max_starts`` keeps a fixed random subset of it (for quick
    fits such as initialising a sampler; the full grid is the paper convention).
    """
    law = registry.get_law(law) if isinstance(law, str) else law
    fixed = dict(fixed or {})
    sources = tuple(sources)
    free = tuple(p for p in law.param_specs(sources) if p.name not in fixed)
    if not free:
        raise ValueError(f"every parameter of {law.name!r} is fixed; nothing to fit")
    loss = np.asarray(loss, dtype=np.float64)
    n = len(loss)
    w0 = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w0.shape != (n,) or not np.all(np.isfinite(w0) & (w0 >= 0)) or not np.any(w0 > 0):
        raise ValueError(f"weights must be {n} finite non-negative numbers, not all zero; got shape {w0.shape}")
    used = np.flatnonzero(w0 > 0)
    with jax.enable_x64(True):
        xj = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in x.items()}
        log_y = jnp.log(jnp.asarray(loss))
        grid = start_grid(law, sources, fixed) if starts is None else np.asarray(starts, dtype=np.float64)
        if max_starts is not None and len(grid) > max_starts:
            # a fixed pseudo-random subset: a regular stride aliases with the grid's periods
            keep = np.random.default_rng(0).choice(len(grid), max_starts, replace=False)
            grid = grid[np.sort(keep)]
        kw = dict(law=law, sources=sources, free=free, fixed=tuple(sorted(fixed.items())), delta=float(delta), tol=tol)
        ones = jnp.broadcast_to(jnp.asarray(w0), (len(grid), n))
        thetas, objs = _solve(jnp.asarray(grid), ones, xj, log_y, max_iter=screen_iter, **kw)
        objs = np.where(np.isfinite(np.asarray(objs)), np.asarray(objs), np.inf)
        for keep, iters in ((polish, polish_iter), (refine, max_iter)):
            lead = np.argsort(objs, kind="stable")[: min(keep, len(objs))]
            thetas, objs = _solve(thetas[lead], ones[: len(lead)], xj, log_y, max_iter=iters, **kw)
            objs = np.where(np.isfinite(np.asarray(objs)), np.asarray(objs), np.inf)
        best = int(np.argmin(objs))
        if not np.isfinite(objs[best]):
            raise ValueError(f"no start of the {law.name!r} fit reached a finite objective; check the data's units and ranges")
        theta = thetas[best]
        at_best = int(np.sum(objs <= objs[best] * (1 + 1e-6) + 1e-12))
        params = {k: float(v) for k, v in _natural(theta, free, kw["fixed"]).items()}
        resid = np.log(np.asarray(law.evaluate(xj, params, sources))) - np.asarray(log_y)
        sigma = float(np.sqrt(np.sum(w0 * resid**2) / np.sum(w0)))
        log_pred = lambda t: jnp.log(law.evaluate(xj, _natural(t, free, kw["fixed"]), sources))  # noqa: E731
        jac = np.asarray(jax.jacfwd(log_pred)(theta))
        unidentified = tuple(p.name for p, col in zip(free, jac[used].T) if not np.any(np.abs(col) > 0))

        draws: dict[str, np.ndarray] = {}
        failed = 0
        if bootstrap > 0:
            key = jax.random.key(0) if key is None else key
            idx = jnp.asarray(used)[jax.random.randint(key, (bootstrap, len(used)), 0, len(used))]
            w = jax.vmap(lambda i: jnp.bincount(i, length=n))(idx).astype(jnp.float64) * jnp.asarray(w0)
            b_theta, b_obj = _solve(jnp.broadcast_to(theta, (bootstrap, len(free))), w, xj, log_y, max_iter=max_iter, **kw)
            nat = jax.vmap(lambda t: _natural(t, free, kw["fixed"]))(b_theta)
            pred = jax.vmap(lambda p: law.evaluate(xj, p, sources))(nat)
            r = jnp.log(pred) - log_y
            b_sigma = jnp.sqrt(jnp.sum(w * r**2, axis=1) / jnp.sum(w, axis=1))
            ok = np.isfinite(np.asarray(b_obj)) & np.isfinite(np.asarray(b_sigma))
            for name in list(nat):
                ok &= np.isfinite(np.asarray(nat[name]))
            failed = int((~ok).sum())
            draws = {k: np.asarray(v)[ok] for k, v in nat.items()}
            draws["sigma"] = np.asarray(b_sigma)[ok]
    return PointFit(
        params=params,
        objective=float(objs[best]),
        sigma=sigma,
        n_starts=len(grid),
        starts_at_best=at_best,
        draws=draws,
        bootstrap_failed=failed,
        unidentified=unidentified,
    )


def fit_point(
    cube: xr.Dataset,
    law: Law | str,
    *,
    target: str | None = None,
    fix: Mapping[str, float] | str | None = None,
    delta: float = DELTA,
    bootstrap: int = 200,
    seed: int = 0,
    use_steps: bool = False,
    max_starts: int | None = None,
) -> FitResult:
    """Point fit of ``law`` to ``target``'s losses in ``cube``, with a bootstrap interval.

    Parameters
    ----------
    cube
        A run cube (:mod:`atlas_bayes.cube`).
    law
        A registered law name (:data:`atlas_bayes.registry.LAWS`).
    target
        The evaluation language; may be left out when the cube has one.
    fix
        Parameters held fixed, as a mapping or ``"NAME=VALUE,..."``.
    bootstrap
        Resamples refitted for the interval (0 disables it; then only the estimate is known).
    seed
        Seed of the bootstrap resampling.
    max_starts
        Use a fixed random subset of the start grid of at most this size (default: all of it).

    Examples
    --------
    >>> import numpy as np
    >>> from atlas_bayes import laws, cube as cube_lib
    >>> N, D = np.meshgrid([1e7, 3e7, 1e8, 3e8], [1e9, 3e9, 1e10, 3e10])
    >>> loss = laws.chinchilla(N.ravel(), D.ravel(), E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.36)
    >>> c = cube_lib.make_cube(loss=np.asarray(loss)[:, None], N=N.ravel(), D=D.ravel())
    >>> fit = fit_point(c, "chinchilla", bootstrap=0)
    >>> round(fit.estimate["alpha"], 2), round(fit.estimate["E"], 2)
    (0.34, 1.8)
    """
    law = registry.get_law(law) if isinstance(law, str) else law
    d = registry.design(cube, law, target=target, use_steps=use_steps)
    fixed = parse_fix(fix, law, d.sources) if isinstance(fix, str) or fix is None else dict(fix)
    bad = [k for k in fixed if k not in law.param_names(d.sources)]
    if bad:
        raise ValueError(f"unknown parameter(s) {bad} for law {law.name!r}; valid parameters: {', '.join(law.param_names(d.sources))}")
    pf = fit_point_arrays(
        law, d.x, d.loss, sources=d.sources, fixed=fixed, delta=delta, bootstrap=bootstrap,
        key=jax.random.key(seed), max_starts=max_starts,
    )
    for spec in law.param_specs(d.sources):
        v = pf.params[spec.name]
        if not spec.lower <= v <= spec.upper:
            warnings.warn(
                f"{law.name} fit for {d.target!r}: {spec.name} = {v:.4g} lies outside its plausible range "
                f"[{spec.lower:g}, {spec.upper:g}]; the data may not constrain it (try --fix {spec.name}=...)",
                UserWarning,
                stacklevel=2,
            )
    for name in pf.unidentified:
        warnings.warn(
            f"{law.name} fit for {d.target!r}: {name} is not identified by these runs (no prediction depends on it; "
            f"e.g. no run mixes in the languages it weighs); it stays at its start {pf.params[name]:g} -- "
            f"fix it with --fix {name}=VALUE or add runs that inform it",
            UserWarning,
            stacklevel=2,
        )
    names = list(law.param_names(d.sources)) + ["sigma"]
    estimate = {k: (pf.sigma if k == "sigma" else pf.params[k]) for k in names}
    if pf.draws:
        posterior = {k: pf.draws[k][None, :] for k in names}
    else:
        posterior = {k: np.array([[v]]) for k, v in estimate.items()}
    config = FitConfig(
        law=law.name,
        target=d.target,
        method="point",
        sources=d.sources,
        fixed=fixed,
        units=str(cube["loss"].attrs.get("units", "")),
        options={
            "delta": delta,
            "objective": pf.objective,
            "n_starts": pf.n_starts,
            "max_starts": max_starts,
            "starts_at_best": pf.starts_at_best,
            "bootstrap": bootstrap,
            "bootstrap_failed": pf.bootstrap_failed,
            "seed": seed,
            "excluded_cells": d.excluded,
            "unidentified": list(pf.unidentified),
            "use_steps": use_steps,
        },
    )
    return make_result(config=config, posterior=posterior, estimate=estimate, x=d.x, loss=d.loss, run=d.run, cube=cube)
