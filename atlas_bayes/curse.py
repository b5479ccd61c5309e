"""The curse of multilinguality with credible intervals: phi, psi, and what adding languages costs.

The law (Longpre et al. 2025, eq. 5; :func:`atlas_bayes.laws.curse`), for ``K`` languages sampled
uniformly and ``D_t`` tokens per language,

.. math:: L(K, N, D_t) = L_\\infty + \\frac{A K^\\phi}{N^\\alpha} + \\frac{B K^\\psi}{D_t^\\beta}

is fitted here pooled over target languages (one ``L_inf`` per target, the rest shared, as the paper
pools), by NUTS (:func:`fit_curse`). Any fit of the registry law ``curse`` works for the queries
(:func:`curse_scaling_summary`, :func:`iso_loss_curve`): this one, or ``atlas fit --law curse``.

The extension (``related=True``) lets the exponents depend on how related the other languages of
the mixture are to the target, ``phi + phi_rel * rho`` and ``psi + psi_rel * rho`` with ``rho`` the
mean :func:`atlas_bayes.languages.similarity` of the target to the other ``K - 1`` languages (the
paper's law ignores which languages are added). :func:`compare_related` fits both on the same
observations and compares them by PSIS-LOO (``arviz.compare``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from atlas_bayes import cube as cube_lib
from atlas_bayes import laws
from atlas_bayes.nuts import interval, run_nuts, warn_diagnostics

__all__ = [
    "CurseData",
    "curse_data",
    "curse_model",
    "fit_curse",
    "compare_related",
    "curse_scaling_summary",
    "iso_loss_curve",
]

_TOL = 1e-6
_SHARED = ("A", "B", "alpha", "beta", "phi", "psi", "sigma")
_EXTRA = ("phi_rel", "psi_rel")


class CurseData(NamedTuple):
    """Observations of the curse law: one per (uniform run, target it trains on)."""

    K: np.ndarray
    N: np.ndarray
    D_t: np.ndarray  # tokens of the target seen
    lang: np.ndarray  # index into targets
    rho: np.ndarray  # mean similarity of the target to the run's other languages (0 when K = 1)
    loss: np.ndarray
    run: np.ndarray
    targets: tuple[str, ...]
    excluded: int  # runs left out: not uniform mixtures, finetunes, or repeated data


def _summary(v: np.ndarray, level: float) -> dict[str, float]:
    v = np.asarray(v, dtype=float).ravel()
    lo, hi = interval(v, level)
    return {"mean": float(np.mean(v)), "median": float(np.median(v)), "lower": float(lo), "upper": float(hi)}


def curse_data(cube: xr.Dataset, *, targets: Sequence[str] | None = None, related: bool = False) -> CurseData:
    """The uniform ``K``-language mixtures of ``cube`` as curse-law observations (final checkpoints).

    Raises ``ValueError`` naming what to add when there are no uniform mixtures or a single ``K``.
    """
    from atlas_bayes import languages, registry

    fin = cube_lib.final(cube)
    srcs = [str(s) for s in fin["src"].values]
    mix = fin["mix"].values
    used = mix > _TOL
    K = used.sum(1)
    top = np.where(used, mix, 0).max(1)
    uniform = np.all(np.where(used, np.abs(mix - 1.0 / np.maximum(K, 1)[:, None]) < _TOL, True), axis=1) & (top > 0)
    if "kind" in fin:
        uniform &= np.asarray(fin["kind"].values == "pretrain")
    from atlas_bayes.curves import fresh_data

    uniform &= fresh_data(cube)  # the law has no repetition term
    if not uniform.any():
        raise ValueError("no uniform K-language pretraining mixtures in the cube (every language at weight 1/K): add runs "
                         "with mix a=0.5,b=0.5 (K=2), a=0.25,...,d=0.25 (K=4) and monolingual ones (K=1)")
    ks = sorted({int(k) for k in K[uniform]})
    if len(ks) < 2:
        raise ValueError(f"the curse law needs uniform mixtures with different numbers of languages K; every uniform run "
                         f"has K = {ks}: add uniform runs with other K (e.g. K = 1, 2, 4, 8)")
    langs = cube_lib.languages(fin)
    trained = {srcs[j] for j in np.flatnonzero(used[uniform].any(0))}
    targets = tuple(t for t in langs if t in trained) if targets is None else tuple(targets)
    bad = [t for t in targets if t not in trained or t not in langs]
    if bad:
        raise ValueError(f"target(s) {bad} are not evaluated languages trained by any uniform mixture; choose from "
                         f"{sorted(trained & set(langs))}")
    sim = languages.similarity(srcs, cube=cube) if related else np.zeros((len(srcs), len(srcs)))
    rows = {k: [] for k in ("K", "N", "D_t", "lang", "rho", "loss", "run")}
    run_ids = np.asarray([str(r) for r in fin["run"].values])
    idx = np.flatnonzero(uniform)
    for li, t in enumerate(targets):
        j = srcs.index(t)
        sel = idx[used[idx, j]]
        loss = fin["loss"].sel(lang=t).values[sel]
        keep = np.isfinite(loss)
        sel, loss = sel[keep], loss[keep]
        x = registry.inputs("curse", N=fin["N"].values[sel], D=fin["D"].values[sel], mix=mix[sel], U=fin["U"].values[sel],
                            srcs=srcs, target=t)
        others = used[sel] & (np.arange(len(srcs)) != j)
        rho = np.where(others.any(1), (others * sim[j]).sum(1) / np.maximum(others.sum(1), 1), 0.0)
        for k, v in (("K", x["K"]), ("N", x["N"]), ("D_t", x["D_t"]), ("lang", np.full(len(sel), li)), ("rho", rho),
                     ("loss", loss), ("run", run_ids[sel])):
            rows[k].append(np.asarray(v))
    out = {k: np.concatenate(v) for k, v in rows.items()}
    return CurseData(K=out["K"].astype(float), N=out["N"], D_t=out["D_t"], lang=out["lang"].astype(int), rho=out["rho"],
                     loss=out["loss"], run=out["run"], targets=targets, excluded=int((~uniform).sum()))


def curse_model(K, n, d, lang, rho, L_scale, related, loss=None):
    """NumPyro model of the pooled curse law (observation last).

    ``n = N / N_ref`` and ``d = D_t / D_ref`` are normalised (so ``A``, ``B`` are sampled as the loss
    terms at the reference size and data, ``a``, ``b``); ``L_scale`` is each target's smallest observed
    loss (``L_inf = L_scale sigmoid(1 + 1.5 z)`` lies below it); ``related`` (0 or 1, data) switches the
    relatedness terms ``phi_rel``, ``psi_rel`` on. Noise is normal on log-loss.
    """
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    with numpyro.plate("lang", L_scale.shape[0]):
        z = numpyro.sample("z_L_inf", dist.Normal(0.0, 1.0))
    L_inf = numpyro.deterministic("L_inf", L_scale * jax.nn.sigmoid(1.0 + 1.5 * z))
    level = jnp.mean(L_scale)
    a = numpyro.sample("a", dist.LogNormal(jnp.log(0.2 * level), 1.5))
    b = numpyro.sample("b", dist.LogNormal(jnp.log(0.2 * level), 1.5))
    alpha = numpyro.sample("alpha", dist.LogNormal(jnp.log(0.4), 0.6))
    beta = numpyro.sample("beta", dist.LogNormal(jnp.log(0.3), 0.6))
    phi = numpyro.sample("phi", dist.Normal(0.0, 0.5))
    psi = numpyro.sample("psi", dist.Normal(0.0, 0.5))
    phi_rel = numpyro.sample("phi_rel", dist.Normal(0.0, 0.5))
    psi_rel = numpyro.sample("psi_rel", dist.Normal(0.0, 0.5))
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.05))
    mean = laws.curse(K, n, d, L_inf=L_inf[lang], A=a, B=b, alpha=alpha, beta=beta,
                      phi=phi + related * phi_rel * rho, psi=psi + related * psi_rel * rho)
    with numpyro.plate("obs", K.shape[0]):
        numpyro.sample("loss", dist.Normal(jnp.log(mean), sigma), obs=None if loss is None else jnp.log(loss))


def _fit(data: CurseData, cube, *, related: bool, draws, warmup, chains, seed, target_accept, sampler=None):
    import jax.numpy as jnp

    from atlas_bayes.results import FitConfig, make_result

    N_ref, D_ref = float(np.exp(np.mean(np.log(data.N)))), float(np.exp(np.mean(np.log(data.D_t))))
    L_scale = np.array([data.loss[data.lang == i].min() for i in range(len(data.targets))])
    f32 = lambda v: jnp.asarray(v, dtype=jnp.float32)  # noqa: E731
    run = run_nuts(
        curse_model, seed=seed, warmup=warmup, draws=draws, chains=chains, target_accept=target_accept, dense_mass=True,
        observed=("loss",), skip=("z_L_inf",) + (() if related else _EXTRA), sampler=sampler,
        K=f32(data.K), n=f32(data.N / N_ref), d=f32(data.D_t / D_ref), lang=jnp.asarray(data.lang), rho=f32(data.rho),
        L_scale=f32(L_scale), related=f32(1.0 if related else 0.0), loss=f32(data.loss),
    )
    s = {k: v.astype(float) for k, v in run.samples.items()}
    post: dict[str, np.ndarray] = {"L_inf": s["L_inf"] if len(data.targets) > 1 else s["L_inf"][..., 0]}
    post |= {"A": s["a"] * N_ref ** s["alpha"], "B": s["b"] * D_ref ** s["beta"]}
    post |= {k: s[k] for k in ("alpha", "beta", "phi", "psi", "sigma")}
    if related:
        post |= {k: s[k] for k in _EXTRA}
    name = "curse+related" if related else "curse"
    what = f"{name} fit of {', '.join(data.targets)}"
    warn_diagnostics(run.diagnostics, what=what, stacklevel=3)
    config = FitConfig(
        law="curse", target=",".join(data.targets), method="nuts", units=str(cube["loss"].attrs.get("units", "")),
        options={"targets": list(data.targets), "pooling": "full (L_inf per target)", "related": related,
                 "rho_mean": float(data.rho[data.K > 1].mean()) if (data.K > 1).any() else 0.0,
                 "N_ref": N_ref, "D_ref": D_ref, "excluded_runs": data.excluded, "diagnostics": run.diagnostics,
                 "model": "atlas_bayes.curse.curse_model"},
    )
    x = {"K": data.K, "N": data.N, "D_t": data.D_t, "lang_index": data.lang.astype(float), "rho": data.rho}
    fit = make_result(config=config, posterior=post, estimate={k: float(np.mean(v)) for k, v in post.items() if v.ndim == 2},
                      x=x, loss=data.loss, run=data.run, cube=cube,
                      sample_stats={"diverging": run.diverging}, log_likelihood=run.log_likelihood["loss"])
    if len(data.targets) > 1:
        fit.idata.posterior = fit.idata.posterior.rename({"L_inf_dim_0": "lang"}).assign_coords(lang=list(data.targets))
    return fit


def fit_curse(cube: xr.Dataset, *, targets: Sequence[str] | None = None, related: bool = False, draws: int = 1000,
              warmup: int = 1000, chains: int = 2, seed: int = 0, target_accept: float = 0.9):
    """Posterior of the curse law pooled over ``targets`` (default: every trained evaluation language).

    Returns a :class:`atlas_bayes.results.FitResult` (law ``curse``; ``L_inf`` along ``lang`` when
    there are several targets; ``phi_rel``/``psi_rel`` too when ``related``) with the pointwise
    log-likelihood for PSIS-LOO. Diagnostics are checked (``DiagnosticsWarning``).
    """
    data = curse_data(cube, targets=targets, related=related)
    return _fit(data, cube, related=related, draws=draws, warmup=warmup, chains=chains, seed=seed,
                target_accept=target_accept)


def compare_related(cube: xr.Dataset, *, targets: Sequence[str] | None = None, **options) -> tuple[Any, Any, pd.DataFrame]:
    """Fit the plain law and the relatedness extension on the same observations; compare by PSIS-LOO.

    Returns ``(plain, related, table)`` with ``table`` from ``arviz.compare`` (rows ``curse`` and
    ``curse+related``, best first: ``elpd_loo``, ``p_loo``, ``elpd_diff``, ``dse``, ``weight``...).
    """
    import arviz as az

    from atlas_bayes.nuts import make_sampler

    data = curse_data(cube, targets=targets, related=True)
    opts = _opts(options)
    # One compiled sampler for both fits: the switch `related` is data, so the shapes agree.
    sampler = make_sampler(curse_model, warmup=opts["warmup"], draws=opts["draws"], chains=opts["chains"],
                           target_accept=opts["target_accept"], dense_mass=True, jit_model_args=True)
    plain = _fit(data, cube, related=False, sampler=sampler, **opts)
    rel = _fit(data, cube, related=True, sampler=sampler, **opts)
    with warnings.catch_warnings():
        # arviz 0.23's compare calls DataFrame.sort_values(inplace=True), deprecated in pandas 3.1: upstream, harmless.
        warnings.filterwarnings("ignore", message="The inplace keyword", category=Warning)
        table = az.compare({"curse": plain.idata, "curse+related": rel.idata}, ic="loo")
    return plain, rel, table


def _opts(options: dict) -> dict:
    base = dict(draws=1000, warmup=1000, chains=2, seed=0, target_accept=0.9)
    unknown = set(options) - set(base)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; valid: {sorted(base)}")
    return base | options


# ----------------------------------------------------------------------------- queries on a fit


def _curse_params(fit, target: str | None) -> tuple[str, dict[str, np.ndarray]]:
    if fit.law != "curse":
        raise ValueError(f"this is a fit of {fit.law!r}; the curse analysis needs a fit of the curse law "
                         "(atlas fit --law curse, or atlas curse on a run cube)")
    if target is None and len(fit.targets) > 1:
        post = fit.idata.posterior
        per_lang = [k for k in ("alpha", "beta", "phi", "psi", "A", "B") if k in post and "lang" in post[k].dims]
        if per_lang:
            raise ValueError(f"this fit has per-target {per_lang} for {list(fit.targets)}; choose one with --target")
        target = fit.targets[0]
    target = fit._check_target(target)
    return target, fit.params_for(target)


def _exponents(p: dict, fit, relatedness: float | None) -> tuple[np.ndarray, np.ndarray, float | None]:
    phi, psi = p["phi"], p["psi"]
    if "phi_rel" in p:
        rho = float(fit.config.options.get("rho_mean", 0.0)) if relatedness is None else float(relatedness)
        return phi + p["phi_rel"] * rho, psi + p["psi_rel"] * rho, rho
    if relatedness is not None:
        raise ValueError("--relatedness needs a fit of the relatedness extension (atlas curse CUBE --related)")
    return phi, psi, None


def curse_scaling_summary(fit, *, from_k: float, to_k: float, target: str | None = None, N: float | None = None,
                          D: float | None = None, relatedness: float | None = None, level: float = 0.9) -> dict:
    """What going from ``from_k`` to ``to_k`` uniformly sampled languages costs at equal loss, with intervals.

    ``min_compute``: the multipliers of :func:`atlas_bayes.laws.curse_scaling` (from a compute-optimal
    start): ``N'/N``, ``D_t'/D_t``, ``D_tot'/D_tot``, ``C'/C``. With ``N`` and ``D`` (total tokens at
    ``from_k``) the start is that run instead (:func:`atlas_bayes.laws.curse_min_compute`) and the
    new ``N'``, ``D'`` and the capacity share ``w_N`` are reported too. Each entry has ``mean, median,
    lower, upper`` over the posterior draws; ``phi``, ``psi`` (at ``relatedness`` for the extension)
    and ``alpha``, ``beta`` are summarised as well.
    """
    if not (from_k >= 1 and to_k >= 1):
        raise ValueError(f"--from-k and --to-k must be numbers of languages >= 1; got {from_k} and {to_k}")
    target, p = _curse_params(fit, target)
    r = to_k / from_k
    phi, psi, rho = _exponents(p, fit, relatedness)
    a, b = p["alpha"], p["beta"]
    out: dict[str, Any] = {"target": target, "from_k": from_k, "to_k": to_k, "r": r, "level": level,
                           "relatedness": rho, "draws": int(len(a))}
    out["params"] = {k: _summary(v, level) for k, v in (("phi", phi), ("psi", psi), ("alpha", a), ("beta", b))}
    s = laws.curse_scaling(r, alpha=a, beta=b, phi=phi, psi=psi)
    out["min_compute"] = {k: _summary(np.asarray(getattr(s, k)), level) for k in ("N", "D_t", "D_tot", "C")}
    if (N is None) != (D is None):
        raise ValueError("give both --N and --D (the run at --from-k languages), or neither")
    if N is not None:
        if not (N > 0 and D > 0):
            raise ValueError(f"--N and --D must be positive; got N={N}, D={D}")
        w = np.asarray(laws.curse_shares(from_k, N, D / from_k, A=p["A"], B=p["B"], alpha=a, beta=b, phi=phi, psi=psi))
        m = laws.curse_min_compute(r, w_N=w, alpha=a, beta=b, phi=phi, psi=psi)
        out["from_run"] = {k: _summary(np.asarray(getattr(m, k)), level) for k in ("N", "D_t", "D_tot", "C")}
        out["from_run"] |= {"w_N": _summary(w, level), "N_new": _summary(N * np.asarray(m.N), level),
                            "D_new": _summary(D * np.asarray(m.D_tot), level), "run_N": N, "run_D": D}
    return out


def iso_loss_curve(fit, *, from_k: float, to_k: float, target: str | None = None, N: float | None = None,
                   D: float | None = None, relatedness: float | None = None, level: float = 0.9,
                   points: int = 25) -> pd.DataFrame:
    """The general iso-loss curve (SPEC section 1; :func:`atlas_bayes.laws.curse_iso_loss`) as a table.

    One row per model-size multiplier ``N_mult = N'/N``: the tokens-per-language multiplier
    ``D_t_mult`` (posterior median) with ``D_t_lower``/``D_t_upper``, ``D_tot_mult`` and ``C_mult``
    (with intervals), and ``p_feasible`` (share of draws where that model size can reach the loss
    at all). The capacity share is the run's (``N``, ``D``) or, by default, the compute-optimal
    ``w_N = beta / (alpha + beta)``; the minimum-compute point is in ``attrs["min_compute"]``.
    """
    target, p = _curse_params(fit, target)
    r = to_k / from_k
    phi, psi, _ = _exponents(p, fit, relatedness)
    a, b = p["alpha"], p["beta"]
    w = (np.asarray(laws.curse_shares(from_k, N, D / from_k, A=p["A"], B=p["B"], alpha=a, beta=b, phi=phi, psi=psi))
         if N is not None and D is not None else b / (a + b))
    best = laws.curse_min_compute(r, w_N=w, alpha=a, beta=b, phi=phi, psi=psi)
    s_min = np.median((r**phi * w) ** (1.0 / a))  # below it no amount of data reaches the loss
    s_best = float(np.median(np.asarray(best.N)))
    grid = np.unique(np.r_[np.geomspace(max(s_min * 1.02, 1e-6), max(s_best * 8.0, s_min * 4.0), points), s_best])
    rows = []
    for s in grid:
        t = np.asarray(laws.curse_iso_loss(r, s, w_N=w, alpha=a, beta=b, phi=phi, psi=psi), dtype=float)
        # inverted_cdf: no interpolation, so draws of inf (infeasible) give inf, not inf - inf = NaN
        qs = [(1 - level) / 2, (1 + level) / 2]
        lo, hi = np.quantile(t, qs, method="inverted_cdf")
        c = r * s * t
        clo, chi = np.quantile(c, qs, method="inverted_cdf")
        rows.append({"N_mult": s, "D_t_mult": float(np.median(t)), "D_t_lower": float(lo), "D_t_upper": float(hi),
                     "D_tot_mult": float(r * np.median(t)), "C_mult": float(np.median(c)), "C_lower": float(clo),
                     "C_upper": float(chi), "p_feasible": float(np.isfinite(t).mean())})
    table = pd.DataFrame(rows)
    table.attrs.update(r=r, level=level, target=target, w_N=_summary(np.broadcast_to(w, a.shape), level),
                       min_compute={k: _summary(np.asarray(getattr(best, k)), level) for k in ("N", "D_t", "D_tot", "C")})
    return table
