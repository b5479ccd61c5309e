r""":func:`plan`: the run that minimises the targets' loss for a compute budget.

For a budget of ``C = 6 N D`` FLOPs, :func:`plan` minimises over ``log N`` and the mixture ``w``
(a softmax over the languages allowed in it; ``D = C / 6N`` follows) the average over the target
languages of

- ``objective="mean"``: the expected loss of the run, ``E[L_t] = exp(mu_t + v_t / 2)``;
- ``objective="quantile"``: its ``q``-quantile ``exp(mu_t + z_q sqrt(v_t))`` (risk-averse: a plan the
  emulator is unsure about is penalised),

where ``mu_t, v_t`` are the emulator's log-loss mean and variance for a new run (noise included).
``log N`` is kept inside the trained range widened by the extrapolation-warning factor (and so is
``D``), by a sigmoid. Adam runs from many starts at once (``vmap``: a grid of sizes times random,
uniform and one-language mixtures), compiled once per model structure and question; the best end
point is the plan. Each target keeps at least the smallest share at which a training run measured
it: below that the emulator would extrapolate in the mixture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats

from surrogate.emulator import Surrogate, _moments_core

__all__ = ["Plan", "plan", "OBJECTIVES"]

OBJECTIVES = ("mean", "quantile")


@dataclass(frozen=True)
class Plan:
    """The configuration :func:`plan` chose, with the predicted loss of each target at it."""

    compute: float
    N: float
    D: float
    mix: dict[str, float]
    objective: str
    quantile: float | None
    value: float  # the minimised objective (average over targets)
    average: dict[str, float]  # mean, lower, upper of the average target loss
    loss: dict[str, dict[str, float]]  # per target: mean, median, lower, upper, sd
    extrapolation: float
    level: float
    units: str
    n_starts: int
    N_range: tuple[float, float]  # the sizes the search was allowed
    min_share: dict[str, float]  # the targets' lowest allowed weights (their smallest share in a scored training run)
    local_optima: list[dict[str, Any]]  # other starts' end points (distinct), best first

    def to_dict(self) -> dict[str, Any]:
        return {
            "compute": self.compute, "N": self.N, "D": self.D, "mix": self.mix, "objective": self.objective,
            "quantile": self.quantile, "value": self.value, "average": self.average, "loss": self.loss,
            "extrapolation": self.extrapolation, "level": self.level, "units": self.units, "n_starts": self.n_starts,
            "N_range": list(self.N_range), "min_share": self.min_share,
        }


def _rng(key: jax.Array) -> np.random.Generator:
    """A NumPy generator seeded by a JAX key (host-side draws without compiling a sampler per shape)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key), dtype=np.uint32).ravel().tolist())


def _check_targets(model: Surrogate, targets) -> list[str]:
    if targets is None:
        raise ValueError(f"give the target languages to plan for (--targets), from {list(model.langs)}")
    targets = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else list(targets)
    if not targets:
        raise ValueError(f"give at least one target language, from {list(model.langs)}")
    for t in targets:
        if t not in model.langs:
            raise ValueError(f"unknown target {t!r}; the emulator predicts {list(model.langs)}")
    return targets


def _check_languages(model: Surrogate, languages) -> list[str]:
    if languages is None:
        return list(model.srcs)
    languages = [s.strip() for s in languages.split(",")] if isinstance(languages, str) else list(languages)
    for s in languages:
        if s not in model.srcs:
            raise ValueError(f"unknown training language {s!r} for the mixture; the emulator was trained on {list(model.srcs)}")
    if not languages:
        raise ValueError(f"give at least one training language for the mixture, from {list(model.srcs)}")
    return languages


def _U_row(model: Surrogate, U: Mapping[str, float] | None, languages: Sequence[str]) -> np.ndarray:
    row = model.default_U.copy()
    for s, v in (U or {}).items():
        if s not in model.srcs:
            raise ValueError(f"U names {s!r}, which the emulator never saw in training; its training languages are {list(model.srcs)}")
        if not float(v) > 0:
            raise ValueError(f"U must be a positive token count or inf; got U:{s}={v!r}")
        row[model.srcs.index(s)] = float(v)
    for s in languages:
        if np.isnan(row[model.srcs.index(s)]):
            raise ValueError(f"give U for {s!r} (--U {s}=TOKENS): the training runs used several budgets, so there is no default")
    return np.where(np.isnan(row), np.inf, row)


def _log_n_box(model: Surrogate, compute: float, factor: float) -> tuple[float, float]:
    (n_lo, n_hi), (d_lo, d_hi) = model.ranges["N"], model.ranges["D"]
    lo = max(np.log(n_lo / factor), np.log(compute / 6.0 / (d_hi * factor)))
    hi = min(np.log(n_hi * factor), np.log(compute / 6.0 / (d_lo / factor)))
    if not lo < hi:
        c_lo, c_hi = 6 * n_lo * d_lo / factor**2, 6 * n_hi * d_hi * factor**2
        raise ValueError(f"compute {compute:.3g} FLOPs is outside what the emulator can plan for: with N and D within "
                         f"{factor:g}x of the trained ranges, C = 6ND must lie in [{c_lo:.3g}, {c_hi:.3g}] "
                         "(raise --max-extrapolation, or train on runs nearer this budget)")
    return float(lo), float(hi)


def _objective_fn(static, targets, objective: str, quantile: float):
    t_idx = jnp.asarray([static[1].index(t) for t in targets])
    zq = float(stats.norm.ppf(quantile))

    def value(state, prior_arrays, N, D, mix, U, finetune):
        mean, var, noise = _moments_core(static, state, prior_arrays, N, D, mix, U, finetune)
        mu, v = mean[t_idx], var[t_idx] + noise[t_idx]
        per = jnp.exp(mu + v / 2) if objective == "mean" else jnp.exp(mu + zq * jnp.sqrt(v))
        return jnp.mean(per, axis=0)  # (n,)

    return value


@lru_cache(maxsize=32)
def _runner(static, targets, objective, quantile, allowed, steps, lr):
    """The compiled multi-start optimiser for one model structure and question (compiled once)."""
    value = _objective_fn(static, targets, objective, quantile)
    place = np.eye(len(static[0].srcs))[list(allowed)]  # (K, S): weights over the allowed languages -> all

    def unpack(p, lo, hi, floor):
        log_n = lo + (hi - lo) * jax.nn.sigmoid(p[..., 0])
        w = floor + (1.0 - floor.sum()) * jax.nn.softmax(p[..., 1:], axis=-1)
        return log_n, w @ jnp.asarray(place, p.dtype)

    def one(p, state, prior_arrays, lo, hi, compute, floor, u_row):
        log_n, mix = unpack(p, lo, hi, floor)
        N = jnp.exp(log_n)
        return value(state, prior_arrays, N[None], (compute / 6.0 / N)[None], mix[None], u_row[None],
                     jnp.zeros((1,), p.dtype))[0]

    @jax.jit
    def run(p0, state, prior_arrays, lo, hi, compute, floor, u_row):
        opt = optax.adam(lr)
        f = partial(one, state=state, prior_arrays=prior_arrays, lo=lo, hi=hi, compute=compute, floor=floor, u_row=u_row)
        grad = jax.vmap(jax.value_and_grad(f))

        def step(carry, _):
            p, opt_state = carry
            _, g = grad(p)
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            updates, opt_state = opt.update(g, opt_state, p)
            return (optax.apply_updates(p, updates), opt_state), None

        (p, _), _ = jax.lax.scan(step, (p0, opt.init(p0)), None, length=steps)
        return p, jax.vmap(f)(p)

    return run, jax.jit(unpack)


def plan(
    model: Surrogate,
    *,
    compute: float,
    targets: Sequence[str] | str,
    languages: Sequence[str] | str | None = None,
    objective: Literal["mean", "quantile"] = "mean",
    quantile: float = 0.9,
    U: Mapping[str, float] | None = None,
    level: float = 0.9,
    max_extrapolation: float | None = None,
    n_starts: int = 32,
    steps: int = 300,
    lr: float = 0.05,
    key: jax.Array | None = None,
) -> Plan:
    """The ``N``, ``D = C / 6N`` and mixture over ``languages`` that minimise the targets' average loss.

    Parameters
    ----------
    model
        A :class:`~surrogate.emulator.Surrogate` (or a law-only model from :func:`~surrogate.emulator.from_fit`).
    compute
        The budget ``C`` in FLOPs.
    targets
        Evaluation languages whose average loss is minimised.
    languages
        Training languages the mixture may use (default all); the others get weight 0.
    objective, quantile
        ``"mean"`` (expected loss) or ``"quantile"`` (the ``quantile`` of each target's loss).
    U
        Unique tokens per language (default: the training runs' budgets).
    max_extrapolation
        How far beyond the trained N and D ranges the plan may go (default the model's warning factor).
    n_starts, steps, lr, key
        Adam starts (run at once), steps, learning rate and the PRNG key of the random starts.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be between 0 and 1 (e.g. 0.9); got {quantile}")
    if not (np.isfinite(compute) and compute > 0):
        raise ValueError(f"compute must be a positive number of FLOPs (e.g. 1e20); got {compute!r}")
    if n_starts < 1 or steps < 1:
        raise ValueError(f"n_starts and steps must be positive; got {n_starts} and {steps}")
    targets = _check_targets(model, targets)
    languages = _check_languages(model, languages)
    factor = float(max_extrapolation or model.options.get("warn_factor", 2.0))
    if factor < 1:
        raise ValueError(f"max_extrapolation must be >= 1; got {factor}")
    lo, hi = _log_n_box(model, compute, factor)
    u_row = _U_row(model, U, languages)
    allowed = np.asarray([model.srcs.index(s) for s in languages])
    K, S = len(languages), len(model.srcs)
    # each target keeps at least the smallest share at which a training run measured it
    floor = np.array([model.min_share.get(s, 0.0) if s in targets else 0.0 for s in languages])
    if floor.sum() >= 1:
        raise ValueError(f"the targets' smallest measured shares {dict(zip(languages, floor.round(3)))} add up to more than 1")
    key = jax.random.key(0) if key is None else key

    with jax.enable_x64(True):
        run, unpack = _runner(model._static, tuple(targets), objective, float(quantile), tuple(int(a) for a in allowed),
                              int(steps), float(lr))
        box = tuple(jnp.asarray(v, jnp.float64) for v in (lo, hi, compute))
        consts = (*box, jnp.asarray(floor, jnp.float64), jnp.asarray(u_row, jnp.float64))
        p0 = _starts(n_starts, K, key)
        p, vals = (np.asarray(a) for a in run(jnp.asarray(p0), model.state, model._prior_arrays, *consts))
        vals = np.where(np.isfinite(vals), vals, np.inf)
        order = np.argsort(vals)
        ends_log_n, ends_mix = (np.asarray(a) for a in unpack(jnp.asarray(p), *consts[:2], consts[3]))
        log_n, mix = ends_log_n[order[0]], ends_mix[order[0]]
    N = float(np.exp(log_n))
    D = float(compute / 6.0 / N)
    small = (mix < 1e-4) & ~np.isin(np.arange(S), allowed[floor > 0])
    mix = np.where(small, 0.0, mix)
    mix = mix / mix.sum()
    pred = model.predict(N=[N], D=[D], mix=mix[None], U=u_row[None], langs=targets, level=level, precision="float64")
    loss = {t: {k: float(pred[k].sel(lang=t).values[0]) for k in ("mean", "median", "lower", "upper", "sd")} for t in targets}
    average = _average_interval(model, targets, N, D, mix, u_row, level, key)
    optima = []
    for i in order[1:]:
        ln, w = ends_log_n[i], ends_mix[i]
        if np.isfinite(vals[i]) and all(abs(ln - np.log(o["N"])) > 0.05 or np.abs(w - o["_w"]).max() > 0.05 for o in optima + [{"N": N, "_w": mix}]):
            optima.append({"N": float(np.exp(ln)), "D": float(compute / 6.0 / np.exp(ln)), "value": float(vals[i]), "_w": w})
    local = [{"N": o["N"], "D": o["D"], "value": o["value"], "mix": _mix_dict(model, o["_w"])} for o in optima[:8]]
    return Plan(
        compute=float(compute), N=N, D=D, mix=_mix_dict(model, mix), objective=objective,
        quantile=quantile if objective == "quantile" else None, value=float(vals[order[0]]), average=average, loss=loss,
        extrapolation=float(model.extrapolation(np.array([N]), np.array([D]))[0]), level=level, units=model.units,
        n_starts=len(p0), N_range=(float(np.exp(lo)), float(np.exp(hi))), local_optima=local,
        min_share={s: float(f) for s, f in zip(languages, floor) if f > 0},
    )


def _mix_dict(model: Surrogate, w) -> dict[str, float]:
    return {s: float(round(v, 4)) for s, v in zip(model.srcs, np.asarray(w)) if v > 0}


def _starts(n_starts: int, K: int, key) -> np.ndarray:
    """Starting points ``(n, 1 + K)``: sizes across the box x (uniform, one-language, random) mixtures."""
    mixes = [np.zeros(K)] + ([4.0 * np.eye(K)[i] for i in range(K)] if K > 1 else [])
    n_rand = max(n_starts - len(mixes) * 3, 0)
    rand = _rng(key).standard_normal((n_rand, K)) * 1.5
    rows = [np.concatenate([[a], m]) for m in mixes for a in (-1.5, 0.0, 1.5)]
    a = np.linspace(-2.0, 2.0, max(n_rand, 1))
    rows += [np.concatenate([[a[i]], rand[i]]) for i in range(n_rand)]
    return np.asarray(rows[: max(n_starts, len(mixes) * 3)], dtype=np.float64)


def _average_interval(model, targets, N, D, mix, u_row, level, key) -> dict[str, float]:
    """Mean and central interval of the average target loss of a run (targets' log-losses independent)."""
    mean, var, noise = model.log_moments(np.array([N]), np.array([D]), mix[None], u_row[None], np.zeros(1))
    idx = [model.langs.index(t) for t in targets]
    mu, sd = mean[idx, 0], np.sqrt(var[idx, 0] + noise[idx, 0])
    draws = np.exp(mu + sd * _rng(jax.random.fold_in(key, 1)).standard_normal((20000, len(idx))))
    avg = draws.mean(axis=1)
    lo, hi = np.quantile(avg, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(np.mean(np.exp(mu + sd**2 / 2))), "lower": float(lo), "upper": float(hi)}
