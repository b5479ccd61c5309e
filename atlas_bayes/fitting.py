"""One entry point for every fitting method: :func:`fit`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

import xarray as xr

from atlas_bayes import registry
from atlas_bayes.results import FitResult, Method

__all__ = ["fit", "METHODS"]

METHODS: tuple[str, ...] = get_args(Method)


def fit(
    cube: xr.Dataset,
    law: str,
    *,
    method: Method = "point",
    target: str | None = None,
    fix: Mapping[str, float] | str | None = None,
    **options: Any,
) -> FitResult:
    """Fit ``law`` to ``target``'s losses in ``cube`` by ``method``.

    ``"point"``: Huber/L-BFGS point fit with a bootstrap interval (:func:`atlas_bayes.point.fit_point`).
    ``"nuts"``, ``"svi"``, ``"laplace"``: Bayesian fits (:func:`atlas_bayes.inference.fit_bayes`).
    ``options`` go to the method's function.
    """
    registry.get_law(law)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    if method == "point":
        from atlas_bayes.point import fit_point

        return fit_point(cube, law, target=target, fix=fix, **options)
    from atlas_bayes.inference import fit_bayes

    return fit_bayes(cube, law, method=method, target=target, fix=fix, **options)
