"""The emulator's optional mean function: a fitted law's posterior, evaluated by the registry.

A fit (:class:`atlas_bayes.results.FitResult`, point-with-bootstrap or Bayesian) gives draws
``theta_s`` of a law's parameters for each of its target languages. For a configuration ``x`` the
mean function is the posterior mean of the law's log-loss and its variance is the posterior
variance,

.. math:: m(x) = \\frac1S \\sum_s \\log L(x; \\theta_s), \\qquad
          v(x) = \\frac1{S-1} \\sum_s \\big(\\log L(x; \\theta_s) - m(x)\\big)^2

so the GP models what the law gets wrong, and the law's own parameter uncertainty (which grows as
``x`` leaves the fitted range) is added to the emulator's variance. The law's formula is the one in
:mod:`atlas_bayes.laws`, called through :meth:`atlas_bayes.registry.Law.evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from atlas_bayes import registry
from atlas_bayes.results import FitResult
from surrogate.features import law_inputs

__all__ = ["LawPrior", "priors_from_fits", "law_moments"]


class LawPrior(NamedTuple):
    """One target language's law posterior: parameter draws ``(S, P)`` in ``names`` order."""

    law: str
    target: str
    sources: tuple[str, ...]  # the target's co-sampled languages with their own tau
    names: tuple[str, ...]
    draws: np.ndarray  # (S, P)
    sigma: np.ndarray  # (S,) observation-noise draws on log-loss


def priors_from_fits(fits: Sequence[FitResult], langs: Sequence[str], *, max_draws: int = 100) -> dict[str, LawPrior]:
    """Per-language law posteriors from fits; ``max_draws`` evenly thinned draws are kept for each."""
    out: dict[str, LawPrior] = {}
    for fit in fits:
        law = registry.get_law(fit.law)
        for target in fit.targets:
            if target not in langs:
                raise ValueError(
                    f"the prior fit is for target {target!r}, which is not an evaluation language of the cube; "
                    f"the cube's languages are {list(langs)}"
                )
            if target in out:
                raise ValueError(f"two prior fits are for target {target!r}; give one fit per target language")
            sources = fit.sources_for(target)
            params = fit.params_for(target)
            names = law.param_names(sources)
            missing = [n for n in names if n not in params]
            if missing:
                raise ValueError(f"the prior fit for {target!r} lacks draws of {missing}")
            draws = np.stack([params[n] for n in names], axis=1)
            sigma = params.get("sigma", np.zeros(len(draws)))
            keep = np.unique(np.linspace(0, len(draws) - 1, min(max_draws, len(draws))).round().astype(int))
            out[target] = LawPrior(law.name, target, tuple(sources), tuple(names), draws[keep], np.asarray(sigma)[keep])
    return out


def law_moments(prior: LawPrior, N, D, mix, U, *, srcs: Sequence[str]):
    """Posterior mean and variance of ``log L`` at configurations ``(n,)``; traceable."""
    law = registry.get_law(prior.law)
    x = law_inputs(law, N, D, mix, U, srcs=srcs, target=prior.target, sources=prior.sources)
    draws = jnp.asarray(prior.draws, dtype=jnp.asarray(D).dtype)
    params = {name: draws[:, j][:, None] for j, name in enumerate(prior.names)}
    log_l = jnp.log(law.evaluate(x, params, prior.sources))  # (S, n)
    mean = jnp.mean(log_l, axis=0)
    var = jnp.var(log_l, axis=0, ddof=1) if log_l.shape[0] > 1 else jnp.zeros_like(mean)
    return mean, var
