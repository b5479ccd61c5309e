"""NUTS for the analysis models (transfer, curse, crossover): one runner, one set of diagnostics.

:func:`run_nuts` samples a NumPyro model with ``chains`` vectorised chains (no silent fallback to
sequential chains: vectorised chains run on any number of devices) and returns the draws as
``(chain, draw, ...)`` arrays with R-hat, bulk/tail ESS and divergences from ArviZ.
:func:`warn_diagnostics` warns with the thresholds of :func:`atlas_bayes.results.check_diagnostics`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["NutsRun", "run_nuts", "make_sampler", "summarise_diagnostics", "warn_diagnostics", "interval"]


class NutsRun(NamedTuple):
    """Draws ``samples[name]`` of shape ``(chain, draw, ...)``, the per-draw log-likelihood of each
    observed site (``(chain, draw, obs)``, for PSIS-LOO) and the diagnostics."""

    samples: dict[str, np.ndarray]
    log_likelihood: dict[str, np.ndarray]
    diverging: np.ndarray
    diagnostics: dict[str, Any]


def summarise_diagnostics(samples: Mapping[str, np.ndarray], diverging: np.ndarray | None, *, skip: Sequence[str] = ()) -> dict:
    """Worst R-hat, smallest bulk and tail ESS over every element of ``samples`` (``(chain, draw, ...)``),
    and the number of divergent transitions."""
    import arviz as az
    import xarray as xr

    first = next(iter(samples.values()))
    chains, draws = int(first.shape[0]), int(first.shape[1])
    out: dict[str, Any] = {"chains": chains, "draws": draws,
                           "divergences": None if diverging is None else int(np.asarray(diverging).sum())}
    keep = {k: np.asarray(v, dtype=float) for k, v in samples.items() if k not in skip}
    if chains < 2 or not keep:
        return out | {"max_r_hat": None, "min_ess_bulk": None, "min_ess_tail": None}
    ds = xr.Dataset({k: (("chain", "draw") + tuple(f"{k}_{i}" for i in range(v.ndim - 2)), v) for k, v in keep.items()})
    worst = lambda d, f: float(getattr(d.to_array(), f)().values)  # noqa: E731
    return out | {
        "max_r_hat": worst(az.rhat(ds), "max"),
        "min_ess_bulk": worst(az.ess(ds, method="bulk"), "min"),
        "min_ess_tail": worst(az.ess(ds, method="tail"), "min"),
    }


def warn_diagnostics(diag: Mapping, *, what: str, stacklevel: int = 2) -> list[str]:
    """Warn (:class:`atlas_bayes.results.DiagnosticsWarning`) for each bad diagnostic, with the fix.

    Thresholds: :data:`atlas_bayes.results.THRESHOLDS` (R-hat <= 1.01, ESS >= 400, no divergences).
    Returns the messages (empty when all is well).
    """
    from atlas_bayes.results import THRESHOLDS, DiagnosticsWarning

    problems = []
    r_hat = diag.get("max_r_hat")
    if r_hat is not None and not r_hat <= THRESHOLDS["r_hat"]:
        problems.append(f"max R-hat = {r_hat:.3f} > {THRESHOLDS['r_hat']}: chains disagree; run more warmup/draws "
                        "(--warmup, --draws)")
    for kind in ("bulk", "tail"):
        ess = diag.get(f"min_ess_{kind}")
        if ess is not None and not ess >= THRESHOLDS["ess"]:
            problems.append(f"min {kind} ESS = {ess:.0f} < {THRESHOLDS['ess']}: intervals are noisy; draw more samples (--draws)")
    if diag.get("divergences"):
        problems.append(f"{diag['divergences']} divergent transitions: the posterior has regions the sampler cannot "
                        "explore; raise --target-accept (e.g. 0.95)")
    for message in problems:
        warnings.warn(f"{what}: {message}", DiagnosticsWarning, stacklevel=stacklevel + 1)
    return problems


def run_nuts(
    model,
    *,
    seed: int = 0,
    warmup: int = 1000,
    draws: int = 1000,
    chains: int = 2,
    target_accept: float = 0.9,
    dense_mass: bool = False,
    max_tree_depth: int = 10,
    observed: Sequence[str] = (),
    skip: Sequence[str] = (),
    sampler=None,
    **model_kwargs: Any,
) -> NutsRun:
    """Sample ``model(**model_kwargs)`` by NUTS; ``observed`` names the sites whose pointwise
    log-likelihood is kept; ``skip`` names sites left out of R-hat and ESS (e.g. predictions).

    ``sampler`` (from :func:`make_sampler`) reuses one compiled sampler for several data sets of the
    same shapes (the model's arguments are then traced, not constants); it fixes the NUTS settings.
    """
    import jax
    from numpyro.infer import log_likelihood

    mcmc = sampler if sampler is not None else make_sampler(
        model, warmup=warmup, draws=draws, chains=chains, target_accept=target_accept, dense_mass=dense_mass,
        max_tree_depth=max_tree_depth)
    chains, draws = mcmc.num_chains, mcmc.num_samples
    mcmc.run(jax.random.key(seed), extra_fields=("diverging",), **model_kwargs)
    grouped = mcmc.get_samples(group_by_chain=True)
    samples = {k: np.asarray(v) for k, v in grouped.items()}
    diverging = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"])
    loglik = {}
    if observed:
        flat = mcmc.get_samples()
        ll = log_likelihood(model, flat, **model_kwargs)
        loglik = {k: np.asarray(v).reshape((chains, draws) + np.shape(v)[1:]) for k, v in ll.items() if k in observed}
    diag = summarise_diagnostics(samples, diverging, skip=skip)
    return NutsRun(samples=samples, log_likelihood=loglik, diverging=diverging, diagnostics=diag)


def make_sampler(model, *, warmup: int = 1000, draws: int = 1000, chains: int = 2, target_accept: float = 0.9,
                 dense_mass: bool = False, max_tree_depth: int = 10, jit_model_args: bool = False):
    """A NumPyro ``MCMC`` (NUTS, vectorised chains, no progress bar) for :func:`run_nuts`."""
    from numpyro.infer import MCMC, NUTS

    if draws < 4 or warmup < 1 or chains < 1:
        raise ValueError(f"need draws >= 4, warmup >= 1 and chains >= 1; got draws={draws}, warmup={warmup}, chains={chains}")
    kernel = NUTS(model, target_accept_prob=target_accept, dense_mass=dense_mass, max_tree_depth=max_tree_depth)
    return MCMC(kernel, num_warmup=warmup, num_samples=draws, num_chains=chains, chain_method="vectorized",
                progress_bar=False, jit_model_args=jit_model_args)


def interval(draws: np.ndarray, level: float, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Central ``level`` interval of ``draws`` along ``axis`` (NaN-aware)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.9); got {level}")
    lo, hi = np.nanquantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=axis)
    return lo, hi
