"""Checkpoints: parameters, optimiser state and data position of a run, saved atomically.

One ``.npz`` file per checkpoint: every leaf of the :class:`~trainer.train.TrainState` pytree under its
path name (``params['transformer/~/embed']['embeddings']``...), PRNG keys as their raw key data, and a
JSON metadata record (``__meta__``) with whatever the caller adds (the job's configuration hash, the
learning curve so far). The data position is the state's ``step``: batches are a pure function of it
(:mod:`trainer.sampler`), so a restored run continues bit for bit.

Files are written to a temporary name in the same folder and renamed into place, so a crash while
saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["save", "restore", "read_meta", "load_params"]

_META = "__meta__"


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _flatten(tree: Any) -> dict[str, np.ndarray]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = jax.tree_util.keystr(path)
        out[name] = np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
    return out


def save(path: str | os.PathLike, state: Any, *, meta: dict | None = None) -> Path:
    """Write ``state`` (any pytree of arrays, e.g. a ``TrainState``) and ``meta`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = _flatten(state)
    arrays[_META] = np.frombuffer(json.dumps(meta or {}).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_meta(path: str | os.PathLike) -> dict:
    """The metadata record of a checkpoint."""
    with np.load(_existing(path)) as f:
        return json.loads(f[_META].tobytes().decode())


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    return path


def restore(path: str | os.PathLike, template: Any, *, sharding: Any = None) -> tuple[Any, dict]:
    """Load a checkpoint into the structure of ``template`` (e.g. a freshly initialised state).

    Leaves must match ``template``'s names, shapes and dtypes; a mismatch (another model shape) raises
    ``ValueError`` naming the first differing leaf. ``sharding`` places the arrays; by default each goes
    where the template's leaf is (so a state restored into a trainer's fresh state is placed, and hence
    traced, exactly like it: no recompilation).
    """
    path = _existing(path)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    with np.load(path) as f:
        meta = json.loads(f[_META].tobytes().decode())
        names = set(f.files) - {_META}
        out = []
        for p, ref in leaves:
            name = jax.tree_util.keystr(p)
            if name not in f.files:
                extra = sorted(names - {jax.tree_util.keystr(q) for q, _ in leaves})[:3]
                raise ValueError(f"checkpoint {str(path)!r} does not match this model: it has no {name}"
                                 + (f" (it has {', '.join(extra)})" if extra else ""))
            value = f[name]
            want = np.asarray(jax.random.key_data(ref)) if _is_key(ref) else np.asarray(ref)
            if value.shape != want.shape or value.dtype != want.dtype:
                raise ValueError(f"checkpoint {str(path)!r} does not match this model at {name}: "
                                 f"{value.dtype}{list(value.shape)} saved, {want.dtype}{list(want.shape)} expected")
            if _is_key(ref):
                leaf = jax.random.wrap_key_data(value, impl=jax.random.key_impl(ref))
            else:
                leaf = jnp.asarray(value)
            where = sharding if sharding is not None else getattr(ref, "sharding", None)
            out.append(jax.device_put(leaf, where) if where is not None else leaf)
    return jax.tree_util.tree_unflatten(treedef, out), meta


def load_params(path: str | os.PathLike, template_params: Any) -> tuple[Any, dict]:
    """Only the parameters of a checkpoint saved from a ``TrainState`` (for finetuning)."""
    path = _existing(path)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template_params)
    with np.load(path) as f:
        meta = json.loads(f[_META].tobytes().decode())
        out = []
        for p, ref in leaves:
            name = ".params" + jax.tree_util.keystr(p)
            if name not in f.files or f[name].shape != np.shape(ref):
                raise ValueError(f"checkpoint {str(path)!r} does not match this model at params{jax.tree_util.keystr(p)}: "
                                 f"{'missing' if name not in f.files else list(f[name].shape)} saved, "
                                 f"{list(np.shape(ref))} expected (finetune with the base run's scale)")
            out.append(jnp.asarray(f[name]))
    return jax.tree_util.tree_unflatten(treedef, out), meta
