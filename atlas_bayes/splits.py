"""Train/held-out splits of a run cube, as the paper scores a law (SPEC section 4).

:func:`points` takes the comparison points of some targets -- one final loss per (target, run),
the same for every law: pretraining runs that train on the target (every run, when the target is
not a training language); finetunes are left out. :func:`split_mask` says which of them a split
holds out:

``random``  a random ``holdout`` share (default 20%) of the run configurations (seeds of one
            configuration stay together);
``N``       the largest model sizes;
``D``       the largest token counts;
``C``       the largest training compute ``C = 6 N D``;
``M``       every mixture that is not monolingual, bilingual or Unimax (runs on 3 or more
            languages; a Unimax run is recognised by its name in the cube's ``mixture`` variable,
            which the trainer writes).

For ``N``, ``D`` and ``C`` the largest distinct values are held out, as many as bring the held-out
share closest to ``holdout`` while leaving at least two distinct values to fit on. A split that
would leave an empty training or held-out part raises ``ValueError`` naming the split and what
the cube lacks. :mod:`atlas_bayes.compare` fits and scores the laws on them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple, get_args

import numpy as np
import xarray as xr

from atlas_bayes import cube as cube_lib
from atlas_bayes import registry

__all__ = ["SplitName", "SPLITS", "SPLIT_LABELS", "ALL", "Points", "comparison_targets", "points", "split_mask"]

SplitName = Literal["random", "N", "D", "C", "M"]
SPLITS: tuple[str, ...] = get_args(SplitName)
SPLIT_LABELS = {"random": "R2", "N": "R2(N)", "D": "R2(D)", "C": "R2(C)", "M": "R2(M)"}
ALL = "all"  # the ``lang`` label of scores over every target
_HELD_OUT = {
    "random": "a random share of the run configurations",
    "N": "the largest model sizes N",
    "D": "the largest token counts D",
    "C": "the largest compute C = 6ND",
    "M": "the mixtures that are not monolingual, bilingual or Unimax",
}


class Points(NamedTuple):
    """The comparison points: one final loss per (target, run), the same for every law."""

    target: np.ndarray  # (n,) target language of each point
    run: np.ndarray  # (n,) run id
    loss: np.ndarray
    N: np.ndarray
    D: np.ndarray
    C: np.ndarray  # 6 N D
    K: np.ndarray  # training languages of the run
    unimax: np.ndarray  # (n,) bool: a Unimax mixture (by name)
    config: np.ndarray  # (n,) configuration id: runs that differ only by seed share it
    named_mixtures: bool  # the cube names its mixtures (Unimax runs recognisable)
    left_out: dict[str, int]  # finite losses left out of the comparison, by reason


def comparison_targets(cube: xr.Dataset, target: str | Sequence[str] | None) -> tuple[str, ...]:
    """Targets to compare on: given (``"fr,de"`` or a list), else every evaluation language that is
    also a training language (every evaluation language when none is)."""
    langs = cube_lib.languages(cube)
    srcs = [str(s) for s in cube["src"].values]
    if target is None or (isinstance(target, str) and target.strip() == ALL):
        trained = [t for t in langs if t in srcs]
        return tuple(trained or langs)
    items = [t.strip() for t in target.split(",") if t.strip()] if isinstance(target, str) else [str(t) for t in target]
    if not items:
        raise ValueError(f"no target given; choose from the cube's evaluation languages {langs} (or 'all')")
    dups = sorted({t for t in items if items.count(t) > 1})
    if dups:
        raise ValueError(f"target(s) {dups} given twice")
    for t in items:
        registry.resolve_target(cube, t)
    return tuple(items)


def points(cube: xr.Dataset, targets: Sequence[str]) -> Points:
    """The comparison points of ``targets`` (final checkpoints; see the module docstring)."""
    cube_lib.validate(cube)
    fin = cube_lib.final(cube)
    srcs = [str(s) for s in fin["src"].values]
    N, D = fin["N"].values.astype(float), fin["D"].values.astype(float)
    mix, U = fin["mix"].values.astype(float), fin["U"].values.astype(float)
    rows = np.concatenate([N[:, None], D[:, None], np.round(mix, 9), U], axis=1)
    _, config = np.unique(np.where(np.isinf(rows), -1.0, rows), axis=0, return_inverse=True)
    config = config.reshape(-1)
    kind = np.asarray([str(k) for k in fin["kind"].values]) if "kind" in fin else np.full(len(N), "pretrain")
    named = "mixture" in fin
    names = np.asarray([str(m).lower() for m in fin["mixture"].values]) if named else np.full(len(N), "")
    unimax = np.char.startswith(names.astype(str), "unimax")
    K = (mix > 0).sum(axis=1)
    run_ids = np.asarray([str(r) for r in fin["run"].values], dtype=object)
    parts: dict[str, list] = {k: [] for k in ("target", "idx", "loss")}
    left_out = {"finetune runs": 0, "runs that do not train on the target": 0}
    for t in targets:
        loss = fin["loss"].sel(lang=t).values.astype(float)
        finite = np.isfinite(loss)
        trains = mix[:, srcs.index(t)] > 0 if t in srcs else np.ones(len(N), bool)
        pre = kind == "pretrain"
        left_out["finetune runs"] += int((finite & ~pre).sum())
        left_out["runs that do not train on the target"] += int((finite & pre & ~trains).sum())
        idx = np.flatnonzero(finite & pre & trains)
        if idx.size == 0:
            raise ValueError(f"target {t!r} has no finite final loss of a pretraining run that trains on it; nothing to compare")
        parts["target"].append(np.full(idx.size, t, dtype=object))
        parts["idx"].append(idx)
        parts["loss"].append(loss[idx])
    idx = np.concatenate(parts["idx"])
    return Points(
        target=np.concatenate(parts["target"]),
        run=run_ids[idx],
        loss=np.concatenate(parts["loss"]),
        N=N[idx],
        D=D[idx],
        C=6.0 * N[idx] * D[idx],
        K=K[idx],
        unimax=unimax[idx],
        config=config[idx],
        named_mixtures=named,
        left_out={k: v for k, v in left_out.items() if v},
    )


def _largest(values: np.ndarray, share: float, split: str, target: str, what: str) -> np.ndarray:
    key = np.round(np.log(values), 8)  # equal up to float round-off (C = 6ND of equal products)
    distinct = np.unique(key)[::-1]
    if distinct.size < 3:
        shown = ", ".join(f"{math.exp(v):.3g}" for v in distinct[::-1])
        raise ValueError(f"split {split!r} holds out {_HELD_OUT[split]}, but target {target!r} has {distinct.size} distinct "
                         f"{what} ({shown}); it needs at least 3 (two to fit on, one to hold out): add runs at other "
                         f"{what}, or leave {split} out of --splits")
    fracs = np.array([np.mean(key >= distinct[k]) for k in range(distinct.size - 2)])
    k = int(np.argmin(np.abs(fracs - share)))  # the first (fewest held out) on ties
    return key >= distinct[k]


def split_mask(pts: Points, split: str, *, holdout: float = 0.2, seed: int = 0) -> np.ndarray:
    """``(n,)`` bool: the points ``split`` holds out. Errors name the split and what the cube lacks."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be a share between 0 and 1 (e.g. 0.2); got {holdout}")
    held = np.zeros(len(pts.loss), dtype=bool)
    if split == "random":
        rank = np.random.default_rng(seed).permutation(int(pts.config.max()) + 1)  # one order of every configuration
    for t in dict.fromkeys(pts.target):
        rows = np.flatnonzero(pts.target == t)
        if split == "random":
            configs = np.unique(pts.config[rows])
            if configs.size < 2:
                raise ValueError(f"split 'random' holds out {_HELD_OUT['random']}, but target {t!r} has a single "
                                 "configuration (N, D, mixture); add runs, or leave random out of --splits")
            n_hold = min(max(int(round(holdout * configs.size)), 1), configs.size - 1)
            chosen = configs[np.argsort(rank[configs], kind="stable")[:n_hold]]
            held[rows] = np.isin(pts.config[rows], chosen)
        elif split in ("N", "D", "C"):
            what = {"N": "model sizes N", "D": "token counts D", "C": "compute values C = 6ND"}[split]
            held[rows] = _largest(getattr(pts, split)[rows], holdout, split, t, what)
        else:
            m = (pts.K[rows] >= 3) & ~pts.unimax[rows]
            if not m.any():
                note = "" if pts.named_mixtures else " (runs on 3+ languages count as such; the cube names no mixtures)"
                lacks = ("every run on 3 or more languages is Unimax" if (pts.K[rows] >= 3).any()
                         else "no run of it trains on 3 or more languages")
                raise ValueError(f"split 'M' holds out {_HELD_OUT['M']}{note}, but for target {t!r} {lacks}; "
                                 "add runs on other multilingual mixtures, or leave M out of --splits")
            if m.all():
                raise ValueError(f"split 'M' holds out {_HELD_OUT['M']}, and for target {t!r} that is every run: nothing "
                                 "is left to fit on; add monolingual, bilingual or Unimax runs, or leave M out of --splits")
            held[rows] = m
    return held
