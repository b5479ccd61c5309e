"""From run configurations to the emulator's inputs: features and the prior law's inputs, in ``jax.numpy``.

Everything here is traceable (``jit``, ``grad``, ``vmap``), because planning differentiates the
emulator's prediction with respect to ``log N`` and the mixture weights.

Glossary of shapes
------------------
``n``  configurations;  ``S`` training languages (the cube's ``src``);  ``d`` features kept.

Features of one configuration ``(N, D, mix, U[, kind])``, before standardisation:

=========================  =====================================================================
``log N``, ``log D``       model size and tokens seen
``log(w_s + W_FLOOR)``     one per training language ``s``: the mixture weight on a log scale, so
                           that going from 0% to 1% of a language moves as far as 10% to 100%
                           (a language's loss depends on its share through ``(w_s D)^-beta``)
``log1p(w_s D / U_s)``     epochs over each language's unique data, only for the languages whose
                           ``U`` was finite in some training run (ATLAS's repetition regime)
``finetune``               1 for a finetune run, only when the training runs have both kinds
=========================  =====================================================================

Each column is centred and scaled by its training mean and standard deviation; columns that are
constant over the training runs (one model size, say) are dropped, as they carry no information.

:func:`law_inputs` is :func:`atlas_bayes.registry.inputs` written with ``jax.numpy`` (the registry's
version converts to NumPy and cannot be traced); ``tests/surrogate/test_features.py`` pins the two
to agree on every registered law.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from atlas_bayes.registry import Law

__all__ = ["W_FLOOR", "FeatureSpec", "raw_features", "make_spec", "features", "mixture_key", "law_inputs"]

W_FLOOR = 0.01  # mixture weights enter as log(w + W_FLOOR): finite at w = 0, ~log w above a few %


@dataclass(frozen=True)
class FeatureSpec:
    """How configurations become standardised features; stored with a saved surrogate."""

    srcs: tuple[str, ...]  # training languages, the order of mix/U columns
    u_srcs: tuple[str, ...]  # languages with an epochs feature (finite U in some training run)
    kind: bool  # whether the finetune indicator is a feature
    names: tuple[str, ...]  # names of the kept features
    keep: tuple[int, ...]  # indices of the kept raw columns
    center: tuple[float, ...]  # per kept feature
    scale: tuple[float, ...]

    @property
    def dim(self) -> int:
        return len(self.keep)


def _raw_names(srcs: Sequence[str], u_srcs: Sequence[str], kind: bool) -> list[str]:
    return ["log_N", "log_D"] + [f"log_w:{s}" for s in srcs] + [f"log1p_epochs:{s}" for s in u_srcs] + (["finetune"] if kind else [])


def raw_features(N, D, mix, U, finetune, *, srcs: Sequence[str], u_srcs: Sequence[str], kind: bool):
    """Unstandardised features ``(n, n_raw)``: ``N, D, finetune (n,)``, ``mix, U (n, S)``."""
    N, D = jnp.asarray(N), jnp.asarray(D)
    mix, U = jnp.asarray(mix), jnp.asarray(U)
    cols = [jnp.log(N)[:, None], jnp.log(D)[:, None], jnp.log(mix + W_FLOOR)]
    if u_srcs:
        idx = [list(srcs).index(s) for s in u_srcs]
        u = U[:, idx]
        finite = jnp.isfinite(u)
        # double where: U = inf never meets the arithmetic, so gradients stay finite
        epochs = jnp.where(finite, mix[:, idx] * D[:, None] / jnp.where(finite, u, 1.0), 0.0)
        cols.append(jnp.log1p(epochs))
    if kind:
        cols.append(jnp.asarray(finetune, dtype=N.dtype)[:, None])
    return jnp.concatenate(cols, axis=1)


_raw_jit = jax.jit(raw_features, static_argnames=("srcs", "u_srcs", "kind"))


def make_spec(N, D, mix, U, finetune, *, srcs: Sequence[str]) -> FeatureSpec:
    """The feature spec of a set of training runs (NumPy arrays, as in a run cube)."""
    U = np.asarray(U, float)
    u_srcs = tuple(s for j, s in enumerate(srcs) if np.isfinite(U[:, j]).any())
    finetune = np.asarray(finetune, float)
    kind = bool(finetune.min() != finetune.max())
    raw = np.asarray(_raw_jit(*(jnp.asarray(a) for a in (N, D, mix, U, finetune)), srcs=tuple(srcs), u_srcs=u_srcs, kind=kind))
    names = _raw_names(srcs, u_srcs, kind)
    center, scale = raw.mean(axis=0), raw.std(axis=0)
    keep = tuple(int(j) for j in np.flatnonzero(scale > 1e-9 * np.maximum(1.0, np.abs(center))))
    if not keep:
        raise ValueError("every training run has the same N, D, mixture and U: the emulator has no input that varies")
    return FeatureSpec(
        srcs=tuple(srcs), u_srcs=u_srcs, kind=kind, names=tuple(names[j] for j in keep), keep=keep,
        center=tuple(float(center[j]) for j in keep), scale=tuple(float(scale[j]) for j in keep),
    )


def features(spec: FeatureSpec, N, D, mix, U, finetune):
    """Standardised features ``(n, spec.dim)`` of configurations."""
    raw = raw_features(N, D, mix, U, finetune, srcs=spec.srcs, u_srcs=spec.u_srcs, kind=spec.kind)
    raw = raw[:, jnp.asarray(spec.keep)]
    return (raw - jnp.asarray(spec.center, raw.dtype)) / jnp.asarray(spec.scale, raw.dtype)


def _primes(n: int) -> np.ndarray:
    out, k = [], 2
    while len(out) < n:
        if all(k % q for q in out if q * q <= k):
            out.append(k)
        k += 1
    return np.asarray(out, float)


def mixture_key(mix) -> jax.Array:
    """One number per mixture ``(n, S) -> (n,)``: equal for equal weights, different for different ones.

    ``sum_s w_s log p_s`` over the first ``S`` primes ``p_s``: the logarithms of primes are linearly
    independent over the rationals, so two mixtures given to a few digits share a key only if they
    are the same mixture. The emulator's mixture random effect (:mod:`surrogate.gp`) pairs runs by it.
    """
    mix = jnp.asarray(mix)
    return mix @ jnp.asarray(np.log(_primes(mix.shape[-1])), mix.dtype)


def law_inputs(law: Law, N, D, mix, U, *, srcs: Sequence[str], target: str, sources: Sequence[str] = ()) -> dict:
    """:func:`atlas_bayes.registry.inputs` in ``jax.numpy`` (traceable); same keys, same values."""
    srcs = list(srcs)
    N, D, mix, U = jnp.asarray(N), jnp.asarray(D), jnp.asarray(mix), jnp.asarray(U)
    tokens = mix * D[:, None]
    if target in srcs:
        t = srcs.index(target)
        p, D_t, U_t = mix[:, t], tokens[:, t], U[:, t]
    else:
        p, D_t, U_t = jnp.zeros_like(D), jnp.zeros_like(D), jnp.full_like(D, jnp.inf)
    x = {"N": N, "D": D, "p": p, "D_t": D_t, "U_t": U_t, "K": jnp.sum(mix > 0, axis=1).astype(D.dtype)}
    if law.transfer in ("other", "sources"):
        own = [srcs.index(s) for s in sources] if law.transfer == "sources" else []
        x["D_src"] = tokens[:, own] if own else jnp.zeros((D.shape[0], 0), D.dtype)
        x["U_src"] = U[:, own] if own else jnp.zeros((D.shape[0], 0), D.dtype)
        rest = [j for j, s in enumerate(srcs) if s != target and (law.transfer == "other" or s not in sources)]
        if rest:
            x["D_other"] = tokens[:, rest].sum(axis=1)
            u_other = jnp.where(mix[:, rest] > 0, U[:, rest], 0.0).sum(axis=1)
            x["U_other"] = jnp.where(u_other > 0, u_other, jnp.inf)
        else:
            x["D_other"] = jnp.zeros_like(D)
            x["U_other"] = jnp.full_like(D, jnp.inf)
    return x
