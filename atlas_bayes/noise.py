"""The observation model: how an observed loss scatters around the law.

Every model in this package treats noise multiplicatively, on the log scale:

.. math:: \\log L_{obs} = \\log L_{law}(x; \\theta) + \\varepsilon, \\qquad
          \\varepsilon \\sim \\mathcal{N}(0, \\sigma) \\;\\text{or}\\; \\mathrm{StudentT}(\\nu, 0, \\sigma)

(the Chinchilla convention of fitting log-loss, with a learned scale). Posterior predictive draws
of a new run's loss are ``L_law * exp(eps)``; :func:`sample_log_noise` draws ``eps``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Likelihood", "LIKELIHOODS", "sample_log_noise"]

Likelihood = Literal["normal", "student_t"]
LIKELIHOODS: tuple[str, ...] = ("normal", "student_t")


def sample_log_noise(
    key: jax.Array,
    params: Mapping[str, np.ndarray],
    shape: tuple[int, ...],
    *,
    likelihood: Likelihood = "normal",
) -> jax.Array:
    """Draw log-scale observation noise, one row per posterior draw.

    Parameters
    ----------
    key
        PRNG key.
    params
        Posterior draws with ``sigma`` of shape ``(samples,)`` (and ``nu`` for Student-t).
    shape
        Shape of the noise per draw (e.g. ``(n_configs,)``).
    likelihood
        ``"normal"`` or ``"student_t"``.

    Returns
    -------
    ``(samples, *shape)`` noise ``eps`` on the log scale.
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; valid: {', '.join(LIKELIHOODS)}")
    sigma = jnp.asarray(params["sigma"])
    expand = (slice(None),) + (None,) * len(shape)
    full = (sigma.shape[0],) + tuple(shape)
    if likelihood == "normal":
        z = jax.random.normal(key, full)
    else:
        if "nu" not in params:
            raise ValueError("a Student-t likelihood needs posterior draws of 'nu' (degrees of freedom)")
        z = jax.random.t(key, jnp.asarray(params["nu"])[expand], full)
    return sigma[expand] * z
