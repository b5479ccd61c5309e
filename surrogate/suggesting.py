r""":func:`suggest`: the next runs that most reduce the uncertainty of a decision.

:func:`suggest` ranks candidate runs by how much observing them is expected to reduce the variance of
the quantity a decision turns on -- computed exactly for the GP, since conditioning a GP on a
fantasised observation changes its covariance by a rank-one term that does not depend on the value
observed:

.. math::
    \Sigma' = \Sigma - \frac{k_c k_c^\top}{k_{cc} + \sigma^2}, \qquad
    \mu' = \mu + \frac{k_c}{\sqrt{k_{cc} + \sigma^2}}\,\xi, \quad \xi \sim \mathcal N(0, 1)

for a candidate run ``c`` (``k_c`` its posterior covariance with the decision's points). The score
is ``Var[h] - E_xi Var[h | y_c]``, by Monte Carlo with common random numbers over the joint
posterior of the decision's points ``Z``:

- ``decision="optimum"``: ``Z`` = configurations around the plan for the budget (sizes from 1/4 to 4
  times the planned ``N`` at the planned mixture, the mixture moved towards each allowed language,
  and the other starts' local optima), ``h`` = the lowest average target loss over ``Z``: the loss of
  the optimum, which moves with the argmin when the emulator is unsure which configuration wins;
- ``decision="crossover"``: ``Z`` = a grid of ``D`` for a model of size ``N`` trained on the target
  alone, pretrained from scratch and finetuned; ``h`` = ``log D*``, the first ``D`` at which scratch
  beats finetuning (SPEC section 3), clamped to the grid's ends.

Runs are picked greedily: after each pick the GP is conditioned on it (the covariance update
above; the mean is kept, "kriging believer"), so the batch does not repeat itself. Only the GP's
variance can be reduced by new runs; a prior law's parameter uncertainty is left out of ``h``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from surrogate import gp
from surrogate.emulator import Surrogate, _moments_core
from surrogate.features import features, mixture_key
from surrogate.planning import _check_languages, _check_targets, _mix_dict, _rng, _U_row, plan

__all__ = ["Suggestions", "suggest", "DECISIONS"]

DECISIONS = ("optimum", "crossover")


@dataclass(frozen=True)
class Suggestions:
    """Runs ranked by the expected reduction in the variance of a decision's quantity."""

    decision: str
    quantity: str  # what h is, in words
    current_sd: float  # sd of h now (the GP's reducible part)
    runs: list[dict[str, Any]]  # N, D, mix, kind, compute, reduction, remaining_sd, in pick order
    context: dict[str, Any]  # the plan (optimum) or the crossover's N and target
    n_candidates: int

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "quantity": self.quantity, "current_sd": self.current_sd, "runs": self.runs,
                "context": self.context, "n_candidates": self.n_candidates}


def _candidates(model: Surrogate, n: int, languages, kinds, max_compute: float, key) -> dict[str, np.ndarray]:
    """Random candidate runs inside the trained N and D ranges, with compute at most ``max_compute``."""
    (n_lo, n_hi), (d_lo, d_hi) = model.ranges["N"], model.ranges["D"]
    allowed = [model.srcs.index(s) for s in languages]
    S, K = len(model.srcs), len(allowed)
    rng = _rng(key)
    m = 8 * n
    N = np.exp(rng.uniform(np.log(n_lo), np.log(n_hi) + 1e-12, m))
    D = np.exp(rng.uniform(np.log(d_lo), np.log(d_hi) + 1e-12, m))
    w = rng.dirichlet(np.ones(K), m)
    corner = rng.integers(0, K, m)
    w = np.where((np.arange(m) % 4 == 0)[:, None], np.eye(K)[corner], w)  # a quarter single-language runs
    mix = np.zeros((m, S))
    mix[:, allowed] = w
    keep = np.flatnonzero(6 * N * D <= max_compute * (1 + 1e-9))[:n]
    if keep.size == 0:
        raise ValueError(f"no candidate run fits --max-run-compute {max_compute:.3g} FLOPs inside the trained ranges "
                         f"(smallest possible: {6 * n_lo * d_lo:.3g})")
    kind = np.asarray([kinds[i % len(kinds)] for i in range(keep.size)])
    return {"N": N[keep], "D": D[keep], "mix": mix[keep], "finetune": (kind == "finetune").astype(float)}


def _decision_points(model, decision, *, compute, targets, languages, objective, quantile, U, N, key):
    """The points ``Z`` (dict of arrays) a decision depends on, and the context reported."""
    if decision == "optimum":
        if compute is None:
            raise ValueError("decision 'optimum' needs the budget: give --compute FLOPs")
        p = plan(model, compute=compute, targets=targets, languages=languages, objective=objective, quantile=quantile, U=U, key=key)
        w0 = np.array([p.mix.get(s, 0.0) for s in model.srcs])
        sizes = p.N * np.exp(np.linspace(-np.log(4.0), np.log(4.0), 9))
        sizes = np.clip(sizes, *p.N_range)
        mixes = [w0] * len(sizes)
        Ns = list(sizes)
        for s in _check_languages(model, languages):
            e = np.eye(len(model.srcs))[model.srcs.index(s)]
            mixes.append(w0 + 0.3 * (e - w0))
            Ns.append(p.N)
        for o in p.local_optima[:6]:
            mixes.append(np.array([o["mix"].get(s, 0.0) for s in model.srcs]))
            Ns.append(o["N"])
        Ns = np.asarray(Ns)
        Z = {"N": Ns, "D": compute / 6.0 / Ns, "mix": np.asarray(mixes), "finetune": np.zeros(len(Ns))}
        return Z, {"plan": p.to_dict()}
    if decision == "crossover":
        if set(model.kinds) != {"pretrain", "finetune"}:
            raise ValueError(f"decision 'crossover' needs both pretrain and finetune runs in the training cube; it has only {list(model.kinds)}")
        if len(targets) != 1:
            raise ValueError(f"decision 'crossover' is about one target language; got {targets}")
        if N is None:
            raise ValueError("decision 'crossover' needs the model size: give --N")
        if targets[0] not in model.srcs:
            raise ValueError(f"the crossover target {targets[0]!r} is not a training language of the emulator {list(model.srcs)}")
        (d_lo, d_hi) = model.ranges["D"]
        grid = np.exp(np.linspace(np.log(d_lo), np.log(d_hi), 24))
        e = np.eye(len(model.srcs))[model.srcs.index(targets[0])]
        Z = {"N": np.full(48, float(N)), "D": np.concatenate([grid, grid]), "mix": np.tile(e, (48, 1)),
             "finetune": np.concatenate([np.zeros(24), np.ones(24)])}
        return Z, {"target": targets[0], "N": float(N), "D_grid": [float(grid[0]), float(grid[-1])]}
    raise ValueError(f"unknown decision {decision!r}; valid: {', '.join(DECISIONS)}")


@partial(jax.jit, static_argnums=(0, 1))
def _prepare(static, t_list, state, prior_arrays, N, D, mix, U, finetune):
    """Log-loss means of every language, and each target's joint GP covariance and noise variance."""
    mean, _, _ = _moments_core(static, state, prior_arrays, N, D, mix, U, finetune)
    zs = features(static[0], N, D, mix, U, finetune)
    gs = mixture_key(mix)
    covs = jnp.stack([gp.posterior_at(state, j, zs, gs)[1] for j in t_list])
    noise = (jax.vmap(gp.sigma_of)(state.hyper) ** 2)[jnp.asarray(t_list)]
    return mean, covs, noise


def _h_optimum(f):
    """Lowest average target loss over the points: ``f`` is ``(..., T, M)`` log-loss draws."""
    return jnp.min(jnp.mean(jnp.exp(f), axis=-2), axis=-1)


def _h_crossover(f, log_d):
    """``log D*``: first grid point where scratch (first half) beats finetuning (second half), interpolated."""
    g = f[..., 0, :]
    G = g.shape[-1] // 2
    diff = g[..., :G] - g[..., G:]  # < 0: scratch is better
    below = diff < 0
    first = jnp.argmax(below, axis=-1)
    any_below = jnp.any(below, axis=-1)
    i0 = jnp.maximum(first - 1, 0)
    d0, d1 = jnp.take_along_axis(diff, i0[..., None], -1)[..., 0], jnp.take_along_axis(diff, first[..., None], -1)[..., 0]
    frac = jnp.where(first > 0, d0 / jnp.where(d0 - d1 == 0, 1.0, d0 - d1), 0.0)
    x = log_d[i0] + jnp.clip(frac, 0.0, 1.0) * (log_d[first] - log_d[i0])
    return jnp.where(any_below, x, log_d[-1])


def suggest(
    model: Surrogate,
    *,
    n: int = 5,
    decision: Literal["optimum", "crossover"] = "optimum",
    compute: float | None = None,
    targets: Sequence[str] | str | None = None,
    languages: Sequence[str] | str | None = None,
    objective: Literal["mean", "quantile"] = "mean",
    quantile: float = 0.9,
    U: Mapping[str, float] | None = None,
    N: float | None = None,
    candidates: Mapping[str, np.ndarray] | None = None,
    n_candidates: int = 256,
    max_run_compute: float | None = None,
    draws: int = 128,
    fantasies: int = 32,
    key: jax.Array | None = None,
) -> Suggestions:
    """The ``n`` runs that most reduce the variance of the decision's quantity (see the module docstring).

    ``candidates`` (``{"N", "D", "mix" (n, S), optionally "finetune"}`` arrays over the emulator's
    training languages) replaces the random candidates, which lie inside the trained N and D ranges
    with compute at most ``max_run_compute`` (default: the largest training run's).
    """
    if model.state is None:
        raise ValueError("suggest needs an emulator with a GP (atlas emulate); a fit alone cannot be conditioned on new runs")
    if n < 1:
        raise ValueError(f"n must be a positive number of runs; got {n}")
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}; valid: {', '.join(DECISIONS)}")
    targets = _check_targets(model, targets)
    key = jax.random.key(0) if key is None else key
    k_plan, k_cand, k_mc = jax.random.split(key, 3)
    Z, context = _decision_points(model, decision, compute=compute, targets=targets, languages=languages,
                                  objective=objective, quantile=quantile, U=U, N=N, key=k_plan)
    u_row = _U_row(model, U, _check_languages(model, languages))
    if candidates is None:
        limit = max_run_compute or float(np.max(6 * model.train["N"] * model.train["D"]))
        kinds = list(model.kinds) if decision == "crossover" else ["pretrain"]
        cands = _candidates(model, n_candidates, _check_languages(model, languages) if decision == "optimum" else list(model.srcs),
                            kinds, limit, k_cand)
        if decision == "crossover":
            e = np.eye(len(model.srcs))[model.srcs.index(targets[0])]
            cands["mix"] = np.where((cands["finetune"] > 0)[:, None], e, cands["mix"])
    else:
        cands = {k: np.asarray(v, float) for k, v in candidates.items()}
        cands.setdefault("finetune", np.zeros(len(cands["N"])))
        model.check_configs(cands["N"], cands["D"], cands["mix"], warn=False,
                            kind=np.where(cands["finetune"] > 0, "finetune", "pretrain"))
    M, C = len(Z["N"]), len(cands["N"])
    allp = {k: np.concatenate([Z[k], cands[k]]) for k in ("N", "D", "mix", "finetune")}
    allp["U"] = np.broadcast_to(u_row, (M + C, len(model.srcs)))
    t_list = [model.langs.index(t) for t in targets]
    with jax.enable_x64(True):
        args = [jnp.asarray(allp[k], jnp.float64) for k in ("N", "D", "mix", "U", "finetune")]
        mean, covs, noise = _prepare(model._static, tuple(t_list), model.state, model._prior_arrays, *args)  # covs (T, M+C, M+C)
        mu_z = mean[jnp.asarray(t_list), :M]
        log_d = jnp.log(jnp.asarray(Z["D"][:24])) if decision == "crossover" else jnp.zeros(1)
        rng = _rng(k_mc)
        eps = jnp.asarray(rng.standard_normal((draws, len(t_list), M)))
        eps_now = jnp.asarray(rng.standard_normal((8 * draws, len(t_list), M)))
        xi = jnp.asarray(rng.standard_normal((fantasies, len(t_list))))
        data = (mu_z, log_d)
        picks: list[dict[str, Any]] = []
        current = float(_var_now(covs[:, :M, :M], eps_now, *data, decision=decision))
        remaining = current
        for _ in range(min(n, C)):
            gain = np.array(_reduction(covs, noise, eps, xi, *data, M=M, decision=decision))
            gain[[p["_index"] for p in picks]] = -np.inf
            best = int(np.argmax(gain))
            # Var_y E[h | y_c] >= 0 exactly; its bias-corrected estimate can dip below 0 by Monte Carlo noise
            gain[best] = max(float(gain[best]), 0.0)
            remaining = max(remaining - float(gain[best]), 0.0)
            i = M + best
            covs = covs - covs[:, :, i, None] * covs[:, None, i, :] / (covs[:, i, i] + noise)[:, None, None]
            picks.append({"_index": best, "reduction": float(gain[best]), "remaining": remaining})
    runs = []
    for p in picks:
        b = p["_index"]
        runs.append({"N": float(cands["N"][b]), "D": float(cands["D"][b]), "mix": _mix_dict(model, cands["mix"][b]),
                     "kind": "finetune" if cands["finetune"][b] > 0 else "pretrain",
                     "compute": float(6 * cands["N"][b] * cands["D"][b]), "variance_reduction": p["reduction"],
                     "remaining_sd": float(np.sqrt(max(p["remaining"], 0.0)))})
    quantity = ("lowest average loss of " + ",".join(targets) + f" at C={compute:.3g}" if decision == "optimum"
                else f"log D* (crossover of scratch and finetune for {targets[0]} at N={float(N):.3g})")
    return Suggestions(decision=decision, quantity=quantity, current_sd=float(np.sqrt(max(current, 0.0))), runs=runs,
                       context=context, n_candidates=C)


def _h(f, log_d, decision):
    return _h_optimum(f) if decision == "optimum" else _h_crossover(f, log_d)


def _chol(cov):
    M = cov.shape[-1]
    jitter = 1e-9 * (1.0 + jnp.trace(cov, axis1=-2, axis2=-1)[..., None, None] / M)
    return jnp.linalg.cholesky(cov + jitter * jnp.eye(M, dtype=cov.dtype))


def _draws(mu_z, cov, eps):
    return mu_z[None] + jnp.einsum("tij,stj->sti", _chol(cov), eps)  # (S, T, M)


@partial(jax.jit, static_argnames=("decision",))
def _var_now(cz, eps, mu_z, log_d, *, decision):
    """Variance of ``h`` under the current joint posterior of the decision's points."""
    return jnp.var(_h(_draws(mu_z, cz, eps), log_d, decision), ddof=1)


@partial(jax.jit, static_argnames=("M", "decision"))
def _reduction(covs, noise, eps, xi, mu_z, log_d, *, M, decision):
    """``Var[h] - E_y Var[h | y_c] = Var_y E[h | y_c]`` per candidate (law of total variance).

    Estimated as the variance over fantasies ``xi`` of the mean over draws ``eps``, less the
    ``1/S`` bias that the mean's own Monte Carlo noise adds; the same draws for every candidate.
    """
    S = eps.shape[0]
    cz = covs[:, :M, :M]  # (T, M, M)
    kc = jnp.moveaxis(covs[:, :M, M:], 2, 0)  # (C, T, M)
    vc = (jnp.diagonal(covs[:, M:, M:], axis1=1, axis2=2) + noise[:, None]).T  # (C, T)

    def one(args):
        k, v = args
        base = _draws(mu_z, cz - k[:, :, None] * k[:, None, :] / v[:, None, None], eps)  # (S, T, M)
        shift = k / jnp.sqrt(v)[:, None]  # (T, M): the mean moves by shift * xi
        hv = _h(base[None] + xi[:, None, :, None] * shift[None, None], log_d, decision)  # (F, S)
        return jnp.var(jnp.mean(hv, axis=1)) - jnp.mean(jnp.var(hv, axis=1, ddof=1)) / S

    return jax.lax.map(one, (kc, vc), batch_size=8)
