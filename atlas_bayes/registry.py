"""The law registry and the bridge from run cubes to the arrays a law takes.

``LAWS`` maps each law's name to a :class:`Law`: its formula (from :mod:`atlas_bayes.laws`), its
parameters with bounds and point-fit starting grids, and the cube variables it needs.
:func:`design` turns a cube into per-observation arrays for one law and target; :func:`inputs`
does the same for configurations nobody ran (the queries), so both go through the same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import xarray as xr

from atlas_bayes import cube as cube_lib
from atlas_bayes import laws

__all__ = ["Param", "Law", "LAWS", "get_law", "Design", "design", "inputs", "resolve_target"]

_GRID_AB = tuple(math.exp(v) for v in (0.0, 5.0, 10.0, 15.0, 20.0, 25.0))
_GRID_E = tuple(math.exp(v) for v in (-1.0, -0.5, 0.0, 0.5, 1.0))
_GRID_EXP = (0.0, 0.5, 1.0, 1.5, 2.0)


class Param(NamedTuple):
    """One law parameter.

    ``transform`` is the space the point fitter works in (``"log"`` for positive amplitudes, as in
    Chinchilla's logsumexp parametrisation ``a = log A``); ``starts`` are its starting values, the
    Cartesian product of which is the point fitter's grid; ``lower``/``upper`` bound the physically
    meaningful range (priors live inside it, point estimates outside it are flagged).
    """

    name: str
    lower: float
    upper: float
    transform: Literal["log", "identity"]
    starts: tuple[float, ...]
    doc: str


_E = Param("E", 0.0, math.inf, "log", _GRID_E, "irreducible loss")
_A = Param("A", 0.0, math.inf, "log", _GRID_AB, "model-size amplitude")
_B = Param("B", 0.0, math.inf, "log", _GRID_AB, "data amplitude")
_ALPHA = Param("alpha", 0.0, 3.0, "identity", _GRID_EXP, "model-size exponent")
_BETA = Param("beta", 0.0, 3.0, "identity", _GRID_EXP, "data exponent")
_LAM = Param("lam", 0.0, math.inf, "log", (1.0 / 15.0,), "decay rate of repeated data's worth (1/R_D*)")
_TAU_OTHER = Param("tau_other", -1.0, 2.0, "identity", (0.0,), "transfer weight of all other languages")
_TAU = Param("tau_{lang}", -1.0, 2.0, "identity", (0.0,), "transfer weight of a co-sampled language")


@dataclass(frozen=True)
class Law:
    """A scaling law: formula, parameters and the cube variables it needs.

    ``transfer`` says which ATLAS transfer terms the law has (``"sources"`` adds one
    ``tau_<lang>`` per co-sampled language of the target, so its parameter names depend on data:
    use :meth:`param_names`). ``target_tokens`` laws use the target's own tokens, so runs that never
    train on the target are left out of its fit.
    """

    name: str
    formula: Callable
    params: tuple[Param, ...]
    needs: tuple[str, ...]
    evaluate_fn: Callable
    citation: str
    transfer: Literal["none", "other", "sources"] = "none"
    target_tokens: bool = True
    needs_several_k: bool = False

    def param_names(self, sources: Sequence[str] = ()) -> tuple[str, ...]:
        """Parameter names, with ``tau_<lang>`` expanded for the co-sampled ``sources``."""
        names = [p.name for p in self.params]
        if self.transfer == "sources":
            names += [f"tau_{s}" for s in sources]
        return tuple(names)

    def param_specs(self, sources: Sequence[str] = ()) -> tuple[Param, ...]:
        """Parameters with ``tau_<lang>`` expanded, in :meth:`param_names` order."""
        specs = list(self.params)
        if self.transfer == "sources":
            specs += [_TAU._replace(name=f"tau_{s}") for s in sources]
        return tuple(specs)

    def evaluate(self, x: Mapping, params: Mapping, sources: Sequence[str] = ()):
        """Loss predicted for inputs ``x`` (from :func:`design` or :func:`inputs`) at ``params``.

        ``params`` values broadcast against the inputs, so a posterior of shape ``(draw, 1)``
        against ``x`` of shape ``(obs,)`` gives ``(draw, obs)``.
        """
        return self.evaluate_fn(x, params, tuple(sources))


def _base(p: Mapping) -> dict:
    return {k: p[k] for k in ("E", "A", "B", "alpha", "beta")}


def _eval_atlas(x, p, sources, *, variant):
    kw = {}
    if variant in ("other", "sources"):
        kw.update(D_other=x["D_other"], U_other=x["U_other"], tau_other=p["tau_other"])
    if variant == "sources" and sources:
        import jax.numpy as jnp

        tau = jnp.stack([jnp.asarray(p[f"tau_{s}"]) for s in sources], axis=-1)
        kw.update(D_src=x["D_src"], U_src=x["U_src"], tau=tau)
    return laws.atlas(x["N"], x["D_t"], x["U_t"], lam=p["lam"], **_base(p), **kw)


LAWS: dict[str, Law] = {
    law.name: law
    for law in (
        Law(
            "chinchilla",
            laws.chinchilla,
            (_E, _A, _B, _ALPHA, _BETA),
            ("N", "D"),
            lambda x, p, s: laws.chinchilla(x["N"], x["D"], **_base(p)),
            "Hoffmann et al. 2022",
            target_tokens=False,
        ),
        Law(
            "dcsl",
            laws.dcsl,
            (
                _E, _A, _B, _ALPHA, _BETA,
                Param("R_D_star", 0.0, math.inf, "log", (15.0,), "repeated-data decay constant (epochs)"),
                Param("R_N_star", 0.0, math.inf, "log", (5.0,), "excess-parameter decay constant"),
            ),
            ("N", "D", "U"),
            lambda x, p, s: laws.dcsl(x["N"], x["D_t"], x["U_t"], R_D_star=p["R_D_star"], R_N_star=p["R_N_star"], **_base(p)),
            "Muennighoff et al. 2023",
        ),
        Law(
            "msl",
            laws.msl,
            (_E, _A, _B, _ALPHA, _BETA, Param("gamma", -1.0, 1.0, "identity", (0.0,), "mixture-share exponent")),
            ("N", "D", "mix"),
            lambda x, p, s: laws.msl(x["N"], x["D"], x["p"], gamma=p["gamma"], **_base(p)),
            "He et al. 2024",
        ),
        Law(
            "atlas_mono",
            laws.atlas,
            (_E, _A, _B, _ALPHA, _BETA, _LAM),
            ("N", "D", "mix", "U"),
            lambda x, p, s: _eval_atlas(x, p, s, variant="mono"),
            "Longpre et al. 2025 (ATLAS, D_t only)",
        ),
        Law(
            "atlas_other",
            laws.atlas,
            (_E, _A, _B, _ALPHA, _BETA, _LAM, _TAU_OTHER),
            ("N", "D", "mix", "U"),
            lambda x, p, s: _eval_atlas(x, p, s, variant="other"),
            "Longpre et al. 2025 (ATLAS, + D_other)",
            transfer="other",
        ),
        Law(
            "atlas",
            laws.atlas,
            (_E, _A, _B, _ALPHA, _BETA, _LAM, _TAU_OTHER),
            ("N", "D", "mix", "U"),
            lambda x, p, s: _eval_atlas(x, p, s, variant="sources"),
            "Longpre et al. 2025 (ATLAS, full: + K_t transfer terms)",
            transfer="sources",
        ),
        Law(
            "curse",
            laws.curse,
            (
                Param("L_inf", 0.0, math.inf, "log", _GRID_E, "irreducible loss"),
                _A, _B, _ALPHA, _BETA,
                Param("phi", -1.0, 1.0, "identity", (0.0,), "capacity cost of each added language"),
                Param("psi", -1.0, 1.0, "identity", (0.0,), "data benefit of each added language"),
            ),
            ("N", "D", "mix"),
            lambda x, p, s: laws.curse(x["K"], x["N"], x["D_t"], L_inf=p["L_inf"], A=p["A"], B=p["B"],
                                       alpha=p["alpha"], beta=p["beta"], phi=p["phi"], psi=p["psi"]),
            "Longpre et al. 2025 (curse of multilinguality)",
            needs_several_k=True,
        ),
    )
}


def get_law(name: str) -> Law:
    """The registered law called ``name``; the error lists the valid names."""
    try:
        return LAWS[name]
    except KeyError:
        raise ValueError(f"unknown law {name!r}; valid laws: {', '.join(LAWS)}") from None


# ----------------------------------------------------------------------------- cube -> arrays


class Design(NamedTuple):
    """Per-observation arrays of one law and target, taken from a cube."""

    law: str
    target: str
    sources: tuple[str, ...]  # K_t, the co-sampled languages with their own tau
    x: dict[str, np.ndarray]  # law inputs, each (obs,) or (obs, K_t)
    loss: np.ndarray  # (obs,)
    run: np.ndarray  # (obs,) run id of each observation
    seed: np.ndarray | None  # (obs,) or None
    excluded: int  # finite loss cells of the target left out: runs that never train on it


def resolve_target(cube: xr.Dataset, target: str | None) -> str:
    """The evaluation language to fit: ``target``, or the cube's only language."""
    langs = cube_lib.languages(cube)
    if target is None:
        if len(langs) == 1:
            return langs[0]
        raise ValueError(f"the cube has {len(langs)} evaluation languages; choose one with --target from {langs}")
    if target not in langs:
        raise ValueError(f"unknown target {target!r}; the cube's evaluation languages are {langs}")
    return target


def inputs(
    law: Law | str,
    *,
    N: np.ndarray,
    D: np.ndarray,
    mix: np.ndarray,
    U: np.ndarray,
    srcs: Sequence[str],
    target: str,
    sources: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Law inputs for configurations given as arrays.

    ``N``, ``D`` are ``(obs,)``; ``mix``, ``U`` are ``(obs, len(srcs))`` over the training
    languages ``srcs``. ``sources`` are the target's co-sampled languages (``K_t``).
    """
    law = get_law(law) if isinstance(law, str) else law
    srcs = list(srcs)
    N, D = np.asarray(N, float), np.asarray(D, float)
    mix, U = np.asarray(mix, float), np.asarray(U, float)
    tokens = mix * D[:, None]
    if target in srcs:
        t = srcs.index(target)
        p, D_t, U_t = mix[:, t], tokens[:, t], U[:, t]
    else:
        p, D_t, U_t = np.zeros_like(D), np.zeros_like(D), np.full_like(D, np.inf)
    x = {"N": N, "D": D, "p": p, "D_t": D_t, "U_t": U_t, "K": (mix > 0).sum(axis=1).astype(float)}
    if law.transfer in ("other", "sources"):
        own = [srcs.index(s) for s in sources]
        x["D_src"] = tokens[:, own] if law.transfer == "sources" else np.zeros((len(D), 0))
        x["U_src"] = U[:, own] if law.transfer == "sources" else np.zeros((len(D), 0))
        rest = [j for j, s in enumerate(srcs) if s != target and (law.transfer == "other" or s not in sources)]
        x["D_other"] = tokens[:, rest].sum(axis=1)
        used = mix[:, rest] > 0
        # Unique pool of "everything else": the sum over the other languages actually sampled.
        x["U_other"] = np.where(used, U[:, rest], 0.0).sum(axis=1) if rest else np.full_like(D, np.inf)
        x["U_other"] = np.where(x["U_other"] > 0, x["U_other"], np.inf)
    return x


def _check_needs(cube: xr.Dataset, law: Law, target: str, rows: xr.Dataset) -> None:
    for var in law.needs:
        if var not in cube:
            raise ValueError(f"law {law.name!r} needs the cube variable {var!r}, which this cube lacks")
    if "U" in law.needs and law.name == "dcsl" and not np.isfinite(rows["U"].sel(src=target).values).any():
        raise ValueError(
            f"law {law.name!r} needs the unique-token budget U of {target!r}, but every run has U = inf "
            "(unconstrained); add a U or U:<lang> column to the run table"
        )
    if law.transfer != "none":
        others = rows["mix"].drop_sel(src=target).sum("src")
        if not (others > 0).any():
            raise ValueError(
                f"law {law.name!r} fits transfer weights, which needs multilingual mixtures (mix): every run of "
                f"target {target!r} trains on {target!r} alone; use --law atlas_mono or add multilingual runs"
            )
    if law.needs_several_k:
        ks = np.unique(cube_lib.num_languages(rows).values)
        if len(ks) < 2:
            raise ValueError(
                f"law {law.name!r} needs runs with different numbers of training languages K; "
                f"every run of target {target!r} has K = {ks.tolist()}; add runs with other K"
            )


def design(
    cube: xr.Dataset,
    law: Law | str,
    *,
    target: str | None = None,
    use_steps: bool = False,
    k_sources: int = 3,
) -> Design:
    """Observations of ``target``'s loss with the inputs ``law`` needs.

    Uses each run's final checkpoint unless ``use_steps`` (then every finite checkpoint is an
    observation). Runs whose mixture never includes the target are left out of laws that use the
    target's own tokens; ``Design.excluded`` counts them.
    """
    law = get_law(law) if isinstance(law, str) else law
    target = resolve_target(cube, target)
    cube_lib.validate(cube)
    data = cube if use_steps else cube_lib.final(cube)
    srcs = [str(s) for s in data["src"].values]
    if law.target_tokens and target not in srcs:
        raise ValueError(
            f"law {law.name!r} uses the tokens of target {target!r}, but {target!r} is not a training language "
            f"of this cube (src = {srcs})"
        )
    loss = data["loss"].sel(lang=target)
    trains = data["mix"].sel(src=target) > 0 if target in srcs else xr.ones_like(data["N"], dtype=bool)
    finite = np.isfinite(loss)
    keep = finite & trains if law.target_tokens else finite
    excluded = int((finite & ~keep).sum())
    if int(keep.sum()) == 0:
        raise ValueError(f"no finite loss for target {target!r} in runs that train on it; nothing to fit")
    _check_needs(cube, law, target, data.isel(run=np.flatnonzero(np.asarray(trains))))
    sources = cube_lib.cosampled(data, target, k=k_sources) if law.transfer == "sources" else ()

    mask = np.asarray(keep)
    mask_b = np.broadcast_to(mask, loss.shape)
    run_idx = np.broadcast_to(np.arange(data.sizes["run"]).reshape((-1,) + (1,) * (loss.ndim - 1)), loss.shape)[mask_b]
    D = data["D"].values
    D_obs = np.broadcast_to(D, loss.shape)[mask_b] if D.ndim == 2 else D[run_idx]
    x = inputs(
        law,
        N=data["N"].values[run_idx],
        D=D_obs,
        mix=data["mix"].values[run_idx],
        U=data["U"].values[run_idx],
        srcs=srcs,
        target=target,
        sources=sources,
    )
    return Design(
        law=law.name,
        target=target,
        sources=tuple(sources),
        x=x,
        loss=loss.values[mask_b],
        run=np.asarray([str(r) for r in data["run"].values])[run_idx],
        seed=data["seed"].values[run_idx] if "seed" in data else None,
        excluded=excluded,
    )
