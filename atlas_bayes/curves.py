"""Learning curves: a Bayesian fit of every run's loss-vs-tokens curve at once.

Each curve (one run evaluated on one language along its checkpoints) gets the power law of
:func:`atlas_bayes.laws.learning_curve`,

.. math:: \\log L_{obs}(D) = \\log\\big(E + B ((D + D_0)/D_{ref})^{-\\beta}\\big) + \\varepsilon, \\quad
          \\varepsilon \\sim \\mathcal{N}(0, \\sigma)

with weakly informative priors on a scale set by the curve itself (``D_ref`` is the geometric
middle of its tokens, ``L_ref`` its observed loss there; see :func:`learning_curve_model`). The
curves are independent, so each gets its own NUTS sampler with its own step size and dense mass
matrix: the sampler is ``vmap``-ed over curves and chains and compiled once per (curves, steps)
shape bucket. This is what turns a transfer score or a crossover, which read a loss off one curve
and invert another, into a posterior rather than a point.

:func:`simulate_curves` draws learning curves from ATLAS (with a transfer weight per target and
source, and optional seed-to-seed scatter) for tests and what-ifs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp
import numpy as np

from atlas_bayes import laws
from atlas_bayes.nuts import summarise_diagnostics

__all__ = [
    "CurveFit",
    "learning_curve_model",
    "curve_params",
    "fit_curves",
    "simulate_curves",
    "SITES",
    "Points",
    "POINTS",
    "group_units",
    "choose_points",
    "unit_curve",
    "stack_curves",
    "fresh_data",
]

SITES = ("z_L", "z_E", "z_beta", "z_D0", "z_sigma")
# Curves are padded to a power of two (at least 32) and points to a multiple of 16: one compilation
# of the sampler serves most cube shapes.
_MIN_CURVES, _POINTS = 32, 16

SIGMA_MIN = 0.002  # smallest log-loss scatter of checkpoints about their curve

Points = Literal["auto", "finals", "stable", "checkpoints"]
POINTS: tuple[str, ...] = get_args(Points)


def curve_params(z: Mapping[str, jax.Array], *, L_ref, D_ref, offset) -> dict[str, jax.Array]:
    """Natural parameters ``E, B, beta, D0, sigma`` of a curve from its standard-normal sites ``z_*``.

    The sites are what the data pin down nearly independently (non-centred priors):
    the loss at ``D_ref``, ``L(D_ref) = L_ref exp(0.2 z_L)``; the asymptote as a fraction of it,
    ``E = L(D_ref) sigmoid(1 + 1.5 z_E)`` (prior median 73 %); the log-log slope at ``D_ref``,
    ``g = -dlog L / dlog D = 0.1 exp(z_beta)``, from which ``beta = g L(D_ref) / (L(D_ref) - E)``
    (so ``E`` and ``beta`` do not form the usual banana; :func:`learning_curve_model` adds a
    ``LogNormal(log 0.4, 0.75)`` factor on ``beta`` itself); the finetune offset
    ``D0 = offset * D_ref exp(2 z_D0)``; the noise ``sigma = 0.002 + 0.01 exp(z_sigma)`` (a 0.2 %
    floor: checkpoints never follow a power law more closely, and without it sparse curves funnel). ``offset`` is 1
    for curves that start from a trained base (finetunes), else 0.
    """
    level = L_ref * jnp.exp(0.2 * z["z_L"])
    frac = jax.nn.sigmoid(1.0 + 1.5 * z["z_E"])
    E = level * frac
    D0 = offset * D_ref * jnp.exp(2.0 * z["z_D0"])
    shift = (D_ref + D0) / D_ref
    # slope of log L at D_ref: beta * (1 - frac) * D_ref / (D_ref + D0)
    beta = 0.1 * jnp.exp(z["z_beta"]) * shift / (1.0 - frac)
    # B is the reducible loss at D = D_ref - D0, so that L(D_ref) = level.
    B = (level - E) * jnp.power(shift, beta)
    # the floor SIGMA_MIN keeps a curve that a power law fits almost exactly (few points) out of a funnel
    return {"E": E, "B": B, "beta": beta, "D0": D0, "sigma": SIGMA_MIN + 0.01 * jnp.exp(z["z_sigma"])}


def learning_curve_model(D, mask, L_ref, D_ref, offset, log_loss=None):
    """NumPyro model of one learning curve (arrays over its checkpoints; observation last).

    ``D`` tokens at each checkpoint, ``mask`` which checkpoints are observed, ``L_ref``/``D_ref``
    the curve's scales, ``offset`` 0/1 (see :func:`curve_params`). Serves prior predictive
    (``log_loss=None``) and fit alike.
    """
    import numpyro
    import numpyro.distributions as dist

    z = {name: numpyro.sample(name, dist.Normal(0.0, 1.0)) for name in SITES}
    p = curve_params(z, L_ref=L_ref, D_ref=D_ref, offset=offset)
    # A weakly informative prior on the exponent itself (on top of the one the sites induce): keeps the
    # ridge E -> 0 / beta -> inf / D0 -> inf of flat finetune curves from trapping the sampler.
    numpyro.factor("beta_prior", dist.LogNormal(jnp.log(0.4), 0.75).log_prob(p["beta"]))
    mean = jnp.log(laws.learning_curve(D, E=p["E"], B=p["B"], beta=p["beta"], D0=p["D0"], D_ref=D_ref))
    with numpyro.handlers.mask(mask=mask):
        numpyro.sample("log_loss", dist.Normal(mean, p["sigma"]), obs=log_loss)


class CurveFit(NamedTuple):
    """Posterior of many learning curves: ``params[name]`` is ``(chain, draw, curve)``."""

    params: dict[str, np.ndarray]  # E, B, beta, D0, sigma
    D_ref: np.ndarray  # (curve,)
    D_range: np.ndarray  # (curve, 2): first and last observed tokens
    diagnostics: dict  # max_r_hat, min_ess_bulk, min_ess_tail, divergences, chains, draws

    def loss(self, D) -> np.ndarray:
        """Curve losses at tokens ``D`` (broadcast against ``(chain, draw, curve)``)."""
        p = self.params
        return np.asarray(laws.learning_curve(D, E=p["E"], B=p["B"], beta=p["beta"], D0=p["D0"], D_ref=self.D_ref))

    def tokens(self, L) -> np.ndarray:
        """Tokens at which each curve reaches loss ``L`` (``inf`` if never)."""
        p = self.params
        return np.asarray(laws.learning_curve_tokens(L, E=p["E"], B=p["B"], beta=p["beta"], D0=p["D0"], D_ref=self.D_ref))

    def flat(self, name: str) -> np.ndarray:
        """``(chain * draw, curve)`` draws of one parameter."""
        v = self.params[name]
        return v.reshape(-1, v.shape[-1])


@partial(jax.jit, static_argnames=("warmup", "draws", "chains", "target_accept", "max_tree_depth"))
def _sample(key, data, *, warmup, draws, chains, target_accept, max_tree_depth):
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import potential_energy

    def one_chain(key, d):
        k_init, k_run = jax.random.split(key)
        inits = jax.random.uniform(k_init, (len(SITES),), minval=-0.5, maxval=0.5)
        z0 = {name: inits[i] for i, name in enumerate(SITES)}
        init_kernel, sample_kernel = hmc(
            potential_fn=lambda z: potential_energy(learning_curve_model, (), d, z), algo="NUTS"
        )
        state = init_kernel(
            z0, warmup, dense_mass=True, target_accept_prob=target_accept, max_tree_depth=max_tree_depth, rng_key=k_run
        )

        def body(state, _):
            state = sample_kernel(state)
            return state, (state.z, state.diverging)

        _, (z, diverging) = jax.lax.scan(body, state, None, length=warmup + draws)
        return jax.tree.map(lambda a: a[warmup:], z), diverging[warmup:]

    # One vmap over (curve, chain) lanes: each lane is one chain of one curve.
    n = data["D"].shape[0]
    keys = jax.random.split(key, n * chains)
    lanes = jax.tree.map(lambda v: jnp.repeat(v, chains, axis=0), data)
    z, diverging = jax.vmap(one_chain)(keys, lanes)
    return jax.tree.map(lambda v: v.reshape((n, chains) + v.shape[1:]), (z, diverging))


def _pad(a: np.ndarray, n: int, axis: int, fill) -> np.ndarray:
    extra = -a.shape[axis] % n
    if extra == 0:
        return a
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, extra)
    return np.pad(a, widths, constant_values=fill)


def fit_curves(
    D: np.ndarray,
    loss: np.ndarray,
    *,
    offset: np.ndarray | None = None,
    draws: int = 500,
    warmup: int = 500,
    chains: int = 2,
    seed: int = 0,
    target_accept: float = 0.9,
    max_tree_depth: int = 8,
    min_points: int = 3,
    labels: Sequence[str] | None = None,
) -> CurveFit:
    """Fit :func:`learning_curve_model` to each row of ``D``, ``loss`` (``(curve, step)``, NaN-padded).

    Every curve needs ``min_points`` finite checkpoints; ``offset`` (``(curve,)``, 0/1) turns on
    the finetune offset ``D0``. ``labels`` name the curves in error messages. Returns draws of
    ``E, B, beta, D0, sigma`` per curve and the samplers' diagnostics (R-hat and ESS over each
    curve's sites, divergences summed over curves).
    """
    D = np.atleast_2d(np.asarray(D, dtype=float))
    loss = np.atleast_2d(np.asarray(loss, dtype=float))
    if D.shape != loss.shape:
        raise ValueError(f"D and loss must have the same (curve, step) shape; got {D.shape} and {loss.shape}")
    n = D.shape[0]
    labels = [f"curve {i}" for i in range(n)] if labels is None else list(labels)
    mask = np.isfinite(D) & np.isfinite(loss) & (D > 0) & (loss > 0)
    short = [labels[i] for i in range(n) if mask[i].sum() < min_points]
    if short:
        raise ValueError(
            f"a learning curve needs at least {min_points} checkpoints with finite loss and D > 0; too few for "
            f"{', '.join(short[:6])}{' and more' if len(short) > 6 else ''}: record more checkpoints along these runs"
        )
    if draws < 4 or warmup < 1 or chains < 1:
        raise ValueError(f"need draws >= 4, warmup >= 1 and chains >= 1; got draws={draws}, warmup={warmup}, chains={chains}")
    logD = np.where(mask, np.log(np.where(mask, D, 1.0)), np.nan)
    lo, hi = np.nanmin(logD, axis=1), np.nanmax(logD, axis=1)
    D_ref = np.exp(0.5 * (lo + hi))
    # L_ref: the observed loss at D_ref, by linear interpolation of log L against log D.
    L_ref = np.empty(n)
    for i in range(n):
        order = np.argsort(logD[i][mask[i]])
        L_ref[i] = np.exp(np.interp(np.log(D_ref[i]), logD[i][mask[i]][order], np.log(loss[i][mask[i]])[order]))
    offset = np.zeros(n) if offset is None else np.asarray(offset, dtype=float).reshape(n)
    data = {
        "D": np.where(mask, D, D_ref[:, None]),
        "mask": mask,
        "L_ref": L_ref,
        "D_ref": D_ref,
        "offset": offset,
        "log_loss": np.where(mask, np.log(np.where(mask, loss, 1.0)), 0.0),
    }
    # Pad checkpoints (masked out) and curves (copies of the first) to buckets: one compilation serves
    # many cube shapes.
    data = {k: (_pad(v, _POINTS, 1, v[0, 0] if k != "mask" else False) if v.ndim == 2 else v) for k, v in data.items()}
    pad_n = max(_MIN_CURVES, 1 << (n - 1).bit_length()) - n
    data = {k: np.concatenate([v, np.repeat(v[:1], pad_n, axis=0)]) if pad_n else v for k, v in data.items()}
    data = {k: jnp.asarray(v, dtype=bool if k == "mask" else jnp.float32) for k, v in data.items()}
    z, diverging = _sample(
        jax.random.key(seed), data, warmup=int(warmup), draws=int(draws), chains=int(chains),
        target_accept=float(target_accept), max_tree_depth=int(max_tree_depth),
    )
    # (curve, chain, draw) -> (chain, draw, curve), padding dropped
    z = {k: np.moveaxis(np.asarray(v)[:n], 0, -1) for k, v in z.items()}
    diverging = np.asarray(diverging)[:n]
    params = curve_params(
        {k: jnp.asarray(v) for k, v in z.items()}, L_ref=jnp.asarray(L_ref), D_ref=jnp.asarray(D_ref),
        offset=jnp.asarray(offset),
    )
    params = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    # Diagnostics over every curve's sites; D0 only where the curve has an offset (else it is a prior draw).
    sites = {k: z[k] for k in SITES if k != "z_D0"}
    if offset.any():
        sites["z_D0"] = z["z_D0"][..., offset > 0]
    diag = summarise_diagnostics(sites, diverging)
    D_range = np.stack([np.exp(lo), np.exp(hi)], axis=1)
    return CurveFit(params=params, D_ref=D_ref, D_range=D_range, diagnostics=diag)


def simulate_curves(
    runs,
    *,
    params: Mapping[str, float],
    tau: Mapping[tuple[str, str], float] | None = None,
    steps: int = 12,
    first: float = 0.05,
    key: jax.Array,
    sigma: float = 0.005,
    seed_sigma: float = 0.0,
    targets: Sequence[str] | None = None,
    units: str = "nats/token",
    attrs: Mapping | None = None,
):
    """Run cube with learning curves drawn from ATLAS: ``loss = chinchilla(N, D_eff) exp(eps)``.

    ``runs`` come from :func:`atlas_bayes.simulate.grid` (``D`` is each run's final token count);
    checkpoints are ``steps`` log-spaced fractions ``first .. 1`` of it. The target ``t`` of a
    mixture gets :math:`D_{eff} = D_t + \\sum_s \\tau_{t,s} D_s` (:func:`atlas_bayes.laws.effective_tokens`,
    no repetition), ``tau[(t, s)]`` defaulting to 0; ``params`` holds ``E, A, B, alpha, beta``.
    Noise: ``sigma`` per checkpoint on log-loss, plus ``seed_sigma`` per run and language (the scatter
    between seeds).
    """
    from atlas_bayes import cube as cube_lib

    srcs = list(runs.srcs)
    targets = list(srcs if targets is None else targets)
    tau = dict(tau or {})
    frac = np.geomspace(first, 1.0, steps)
    D = runs.D[:, None] * frac[None, :]  # (run, step)
    tokens = runs.mix[:, :, None] * D[:, None, :]  # (run, src, step)
    k_obs, k_seed = jax.random.split(key)
    eps = sigma * np.asarray(jax.random.normal(k_obs, (len(runs.N), len(targets), steps)))
    eps += seed_sigma * np.asarray(jax.random.normal(k_seed, (len(runs.N), len(targets), 1)))
    loss = np.full((len(runs.N), len(targets), steps), np.nan)
    base = {k: params[k] for k in ("E", "A", "B", "alpha", "beta")}
    for j, t in enumerate(targets):
        if t not in srcs:
            continue
        w = np.array([1.0 if s == t else tau.get((t, s), 0.0) for s in srcs])
        d_eff = np.einsum("s,rsk->rk", w, tokens)
        d_eff = np.asarray(laws.effective_tokens(d_eff, np.inf, lam=1.0))  # floor at one token (interference)
        clean = np.asarray(laws.chinchilla(runs.N[:, None], d_eff, **base))
        value = clean * np.exp(eps[:, j])
        loss[:, j] = np.where(runs.mix[:, [srcs.index(t)]] > 0, value, np.nan)
    return cube_lib.make_cube(
        loss=loss, N=runs.N, D=D, mix=runs.mix, U=runs.U, lang=targets, src=srcs, seed=runs.seed, units=units,
        attrs={"simulated_from": "atlas learning curves", "sigma": sigma, "seed_sigma": seed_sigma, **(attrs or {})},
    )


# ----------------------------------------------------------------------------- curves from a run cube


def fresh_data(cube) -> np.ndarray:
    """Runs (by position) that never repeat data: ``mix * D <= U`` for every training language.

    Transfer scores, crossovers and the curse law all assume fresh data; repeated-data runs
    (the saturation ``S(D; U)`` regime) are left out of them.
    """
    from atlas_bayes import cube as cube_lib

    fin = cube_lib.final(cube)
    return np.asarray((cube_lib.tokens_per_source(fin) <= fin["U"] * (1 + 1e-9)).all("src").values)


def group_units(cube, runs: Sequence[int]) -> list[tuple[int, ...]]:
    """Group ``runs`` (positions in ``cube``) into *units*: runs that differ only in their token budget.

    Same ``N``, mixture, unique-token budgets ``U``, ``kind``, ``base``/``D_base`` and ``seed`` (when
    the cube has them) = one unit; a unit's runs in order of budget. Seeds are separate units.
    """
    from atlas_bayes import cube as cube_lib

    fin = cube_lib.final(cube)
    cols = [fin["N"].values, *fin["mix"].values.T, *fin["U"].values.T]
    for name in ("kind", "base", "D_base", "seed"):
        if name in fin and fin[name].dims == ("run",):
            cols.append(fin[name].values)
    D = fin["D"].values
    groups: dict[tuple, list[int]] = {}
    for r in runs:
        key = tuple(round(float(c[r]), 9) if isinstance(c[r], (float, np.floating)) else str(c[r]) for c in cols)
        groups.setdefault(key, []).append(int(r))
    return [tuple(sorted(v, key=lambda r: D[r])) for v in groups.values()]


def _budgets(cube, unit: Sequence[int]) -> int:
    from atlas_bayes import cube as cube_lib

    return len(np.unique(cube_lib.final(cube)["D"].values[list(unit)]))


def choose_points(cube, units: Sequence[Sequence[int]], points: Points = "auto") -> str:
    """Which points make a unit's learning curve.

    ``"finals"``: the final (fully decayed) loss of each budget of the unit -- the natural curve of a
    branched D-sweep (:mod:`trainer.runner`); needs 3 budgets per unit. ``"stable"``: the checkpoints of
    the unit's longest run at its peak learning rate (warmup and decay left out: under a
    warmup-stable-decay schedule the decay's drop is not part of the trend); needs the cube's ``lr``.
    ``"checkpoints"``: every finite checkpoint of the longest run. ``"auto"``: ``finals`` if every unit
    has 3 budgets, else ``stable`` if the cube records ``lr``, else ``checkpoints``.
    """
    if points not in POINTS:
        raise ValueError(f"unknown points {points!r}; valid: {', '.join(POINTS)}")
    if points != "auto":
        if points == "stable" and "lr" not in cube:
            raise ValueError("points='stable' needs the learning rate at each checkpoint (cube variable lr(run, step))")
        return points
    if units and all(_budgets(cube, u) >= 3 for u in units):
        return "finals"
    if "step" not in cube["loss"].dims:
        ids = [str(r) for r in cube["run"].values]
        short = [ids[u[-1]] for u in units if _budgets(cube, u) < 3]
        raise ValueError(
            "learning curves needed: the cube has no checkpoints (step dim) and these configurations have fewer than 3 "
            f"token budgets: {', '.join(short[:6])}{' and more' if len(short) > 6 else ''}; record checkpoints along "
            "each run or add runs at more budgets D"
        )
    return "stable" if "lr" in cube and "step" in cube["lr"].dims else "checkpoints"


def unit_curve(cube, unit: Sequence[int], lang: str, points: str) -> tuple[np.ndarray, np.ndarray]:
    """``(D, loss)`` of one unit's learning curve on ``lang`` (see :func:`choose_points`)."""
    from atlas_bayes import cube as cube_lib

    unit = list(unit)
    if points == "finals":
        fin = cube_lib.final(cube)
        return fin["D"].values[unit].astype(float), fin["loss"].sel(lang=lang).values[unit].astype(float)
    last = unit[-1]
    if "step" not in cube["loss"].dims:
        raise ValueError(f"points={points!r} needs learning curves (a step dim); use points='finals' with several budgets")
    D = cube["D"].values
    D = D[last] if D.ndim == 2 else np.full(cube.sizes["step"], D[last])
    loss = cube["loss"].isel(run=last).sel(lang=lang).values.astype(float)
    keep = np.isfinite(D) & np.isfinite(loss)
    if points == "stable":
        lr = cube["lr"].isel(run=last).values.astype(float)
        peak = np.nanmax(np.where(keep, lr, np.nan)) if keep.any() else np.nan
        keep &= lr >= peak * (1 - 1e-6)
    return D[keep].astype(float), loss[keep]


def stack_curves(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """NaN-padded ``(curve, point)`` arrays of ``D`` and loss."""
    width = max((len(d) for d, _ in curves), default=0)
    D = np.full((len(curves), max(width, 1)), np.nan)
    L = np.full_like(D, np.nan)
    for i, (d, l) in enumerate(curves):
        D[i, : len(d)], L[i, : len(l)] = d, l
    return D, L
