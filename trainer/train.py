"""The training core: a pure ``(init, step)`` pair over a :class:`TrainState`, and evaluation.

:func:`make_trainer` builds, once per model shape, a :class:`Trainer` whose ``step`` is
jit-compiled once and then reused for every step, token budget, mixture and branch of every run of
that shape in the process (the learning rate is a traced argument and the other optimiser settings live
in the optimiser state, so neither is a compiled-in constant; the data position
is the ``step`` counter inside the state). ``Trainer.traces`` counts how often each function was
traced, which the tests and ``bench/train_throughput.py`` check stays at one.

Data parallelism: the trainer works on a 1-D device mesh (axis ``"data"``) over the devices it is
given; parameters and optimiser state are replicated, each batch is split along its first axis, and
XLA inserts the gradient all-reduce. One device is the same code with a mesh of one.

Loss is the mean next-token cross-entropy in nats per token; :func:`bits_per_byte` converts the
evaluation sums (over byte targets only, separators and padding left out) to bits per byte.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from trainer import model as model_lib
from trainer.config import ModelConfig, OptimConfig

__all__ = ["TrainState", "Trainer", "hyperparams", "make_optimizer", "make_trainer", "local_devices", "bits_per_byte",
           "count_compilations"]


class TrainState(NamedTuple):
    """Everything that changes during training. ``step`` is also the data position."""

    params: Any
    opt_state: Any
    step: jax.Array  # int32 scalar: optimiser steps taken
    key: jax.Array  # PRNG key (dropout); per-step keys are fold_in(key, step)


class Trainer(NamedTuple):
    """Compiled functions of one model shape on one device mesh.

    - ``init(key, hyper) -> TrainState``: fresh parameters from ``key``; ``hyper`` from :func:`hyperparams`.
    - ``step(state, batch, lr) -> (state, metrics)``: ``batch`` int32 ``[B, T + 1]``, ``lr`` float32 scalar;
      ``metrics`` holds device scalars ``loss`` (nats/token) and ``grad_norm``. The input state is donated.
    - ``evaluate(params, windows) -> (nats, count)``: ``windows`` int32 ``[C, b, T + 1]`` chunks of held-out
      text; per chunk the summed nats and the number of byte targets (compiled once per shape of the held-out
      set, which is fixed within a sweep).
    - ``copy(state)``: a fresh copy (to branch off a trunk whose buffers the next step donates).
    """

    init: Any
    step: Any
    evaluate: Any
    copy: Any
    model_cfg: ModelConfig
    mesh: Mesh
    traces: dict

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    @property
    def bounded_dispatch(self) -> bool:
        """Whether the training loop must keep at most two steps in flight.

        XLA's in-process CPU collectives (jax 0.10) deadlock when many data-parallel steps are queued
        on several host CPU devices (the all-reduce rendezvous never completes). Waiting for step
        ``k - 1`` to finish before queuing step ``k + 1`` avoids it and still keeps a step queued, so
        the devices never idle. Accelerators and single devices queue freely.
        """
        return self.num_devices > 1 and self.mesh.devices.flat[0].platform == "cpu"


def _decay_mask(params):
    """Weight decay on matrices (and embeddings), not on biases or LayerNorm parameters."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def hyperparams(cfg: OptimConfig) -> dict[str, np.ndarray]:
    """The optimiser hyperparameters of ``cfg`` as float32 scalars, to give :attr:`Trainer.init`."""
    values = dict(learning_rate=cfg.lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                  clip_norm=cfg.clip_norm if cfg.clip_norm > 0 else np.inf)
    return {k: np.float32(v) for k, v in values.items()}


def make_optimizer() -> optax.GradientTransformation:
    """Global-norm clipping then AdamW, with every hyperparameter injected into the optimiser state
    (``opt_state.hyperparams``): runs with different settings share one compiled step, and the
    learning rate is set per step from a traced value. ``clip_norm = inf`` disables clipping."""

    def factory(learning_rate, b1, b2, eps, weight_decay, clip_norm):
        adamw = optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=_decay_mask)
        return optax.chain(optax.clip_by_global_norm(clip_norm), adamw)

    # Python floats: optax injects numbers (a NumPy scalar would be taken for a static argument).
    return optax.inject_hyperparams(factory)(**{k: float(v) for k, v in hyperparams(OptimConfig()).items()})


def local_devices(data_parallel: str = "auto") -> tuple[jax.Device, ...]:
    """The devices a run trains on: all local devices (``"auto"``) or the first one (``"off"``)."""
    devices = tuple(jax.local_devices())
    return devices if data_parallel == "auto" else devices[:1]


def bits_per_byte(nats: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Summed nats over ``count`` byte targets -> bits per byte."""
    return np.asarray(nats, dtype=float) / np.maximum(np.asarray(count, dtype=float), 1.0) / math.log(2.0)


def make_trainer(model_cfg: ModelConfig, devices: Sequence[jax.Device] | None = None) -> Trainer:
    """The :class:`Trainer` for a model shape on ``devices`` (default: all local devices).

    Cached: every call with the same shape and devices in a process returns the same compiled functions.
    """
    return _make_trainer(model_cfg, tuple(devices) if devices is not None else local_devices("auto"))


_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compilations():
    """Count XLA compilations (or persistent-cache loads) per jitted function inside the block.

    Yields a ``collections.Counter`` keyed by function name (``"step"``, ``"evaluate"``...), filled from
    JAX's monitoring events, so it counts what XLA compiled, not what Python traced.
    """
    counts: collections.Counter = collections.Counter()

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == _BACKEND_COMPILE:
            name = str(kwargs.get("fun_name", "?"))
            counts[name.removeprefix("jit(").removesuffix(")")] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@functools.lru_cache(maxsize=32)
def _make_trainer(model_cfg: ModelConfig, devices: tuple[jax.Device, ...]) -> Trainer:
    mesh = Mesh(np.array(devices), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec("data"))
    chunks = NamedSharding(mesh, PartitionSpec(None, "data"))
    net = model_lib.build(model_cfg)
    tx = make_optimizer()
    traces = {"init": 0, "step": 0, "evaluate": 0}
    seq_len = model_cfg.seq_len

    def init(key, hyper):
        traces["init"] += 1
        init_key, state_key = jax.random.split(key)
        params = net.init(init_key, jnp.zeros((1, seq_len), jnp.int32))
        opt_state = tx.init(params)
        opt_state = opt_state._replace(hyperparams={k: jnp.asarray(hyper[k], jnp.float32) for k in opt_state.hyperparams})
        return TrainState(params=params, opt_state=opt_state, step=jnp.zeros((), jnp.int32), key=state_key)

    def loss_fn(params, key, batch):
        inputs, targets = batch[:, :-1], batch[:, 1:]  # [B, T], [B, T]
        logits = net.apply(params, key, inputs, True)  # [B, T, V]
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    def step(state: TrainState, batch: jax.Array, lr: jax.Array):
        traces["step"] += 1  # runs only when JAX traces (compiles) this function
        key = jax.random.fold_in(state.key, state.step)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, key, batch)
        opt_state = state.opt_state._replace(hyperparams={**state.opt_state.hyperparams, "learning_rate": lr})
        updates, opt_state = tx.update(grads, opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = TrainState(params=params, opt_state=opt_state, step=state.step + 1, key=state.key)
        return new, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    def evaluate(params, windows):
        traces["evaluate"] += 1

        def one(chunk):  # [b, T + 1]
            inputs, targets = chunk[:, :-1], chunk[:, 1:]
            logits = net.apply(params, None, inputs, False)
            nats = optax.softmax_cross_entropy_with_integer_labels(logits, targets)  # [b, T]
            is_byte = targets < 256
            return jnp.where(is_byte, nats, 0.0).sum(), is_byte.sum()

        return jax.lax.map(one, windows)

    return Trainer(
        init=jax.jit(init, out_shardings=replicated),
        step=jax.jit(step, in_shardings=(replicated, split, replicated), out_shardings=replicated, donate_argnums=0),
        evaluate=jax.jit(evaluate, in_shardings=(replicated, chunks), out_shardings=replicated),
        copy=jax.jit(lambda s: jax.tree.map(jnp.copy, s), out_shardings=replicated),
        model_cfg=model_cfg,
        mesh=mesh,
        traces=traces,
    )
