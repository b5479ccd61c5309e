"""Warmup-stable-decay learning rates (SPEC section 5), built from optax schedules.

A run of ``S`` steps warms up linearly over ``warmup_steps`` to the peak rate, holds it, and decays
linearly over its last ``decay_fraction`` of steps (10% in the paper) to ``final_fraction * peak``::

    lr(s) = peak * s / warmup                         s <  warmup
          = peak                                      warmup <= s < S - round(decay_fraction * S)
          = linear from peak to final over the decay  otherwise

Because the warmup and the stable phase do not depend on ``S``, runs of different lengths share
their schedule up to their own decay: one stable *trunk* can be branched at each budget's decay
start (:func:`decay_start`) and decayed, giving every budget's run for about the cost of the longest
(:mod:`trainer.runner`). Rates reach the compiled train step as a traced argument
(:func:`values` evaluates a schedule on the host once per segment), so no budget recompiles it.
"""

from __future__ import annotations

import numpy as np
import optax

from trainer.config import OptimConfig

__all__ = ["wsd", "trunk", "decay_start", "values"]


def decay_start(total_steps: int, decay_fraction: float) -> int:
    """The step at which a run of ``total_steps`` starts decaying."""
    return int(total_steps - round(decay_fraction * total_steps))


def trunk(cfg: OptimConfig) -> optax.Schedule:
    """The stable trunk: linear warmup to ``cfg.lr``, then constant."""
    return optax.warmup_constant_schedule(0.0, cfg.lr, cfg.warmup_steps) if cfg.warmup_steps else optax.constant_schedule(cfg.lr)


def wsd(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """The full warmup-stable-decay schedule of a run of ``total_steps`` steps."""
    start = decay_start(total_steps, cfg.decay_fraction)
    decay = optax.linear_schedule(cfg.lr, cfg.final_lr_fraction * cfg.lr, max(total_steps - start, 1))
    return optax.join_schedules([trunk(cfg), decay], [start])


def values(schedule: optax.Schedule, start: int, stop: int) -> np.ndarray:
    """``schedule`` at steps ``start..stop-1`` as a float32 host array (one evaluation per segment).

    Evaluated on a power-of-two number of steps, so the few eager JAX operations behind an optax schedule
    compile for a handful of lengths per process rather than once for every run length.
    """
    n = max(stop - start, 1)
    padded = 1 << (n - 1).bit_length()
    return np.asarray(schedule(np.arange(start, start + padded)), dtype=np.float32)[: stop - start]
