"""The training core: one compilation per model shape, and data parallelism that changes nothing."""

import math

import jax
import numpy as np
import pytest

from trainer import train
from trainer.config import ModelConfig, OptimConfig

CFG = ModelConfig(width=16, depth=1, heads=2, seq_len=16)


def batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (8, 17)).astype(np.int32) for _ in range(n)]


def run(trainer, hyper, lrs, data):
    state = trainer.init(jax.random.key(0), hyper)
    for lr, b in zip(lrs, data):
        state, metrics = trainer.step(state, b, np.float32(lr))
    return state, metrics


def test_one_compilation_across_steps_budgets_and_settings():
    trainer = train.make_trainer(CFG, jax.devices())
    assert train.make_trainer(CFG, jax.devices()) is trainer  # cached per shape and devices
    before = dict(trainer.traces)
    data = batches(6)
    with train.count_compilations() as compiled:
        # two "budgets" with different schedules, and a run with other optimiser settings
        run(trainer, train.hyperparams(OptimConfig()), np.linspace(0, 3e-3, 6), data)
        run(trainer, train.hyperparams(OptimConfig()), np.linspace(3e-3, 0, 3), data[:3])
        state, _ = run(trainer, train.hyperparams(OptimConfig(weight_decay=0.0, b2=0.99, clip_norm=0.0)), [1e-3] * 2, data[:2])
        trainer.copy(state)
    traced = {k: trainer.traces[k] - before[k] for k in ("init", "step")}
    # other tests in this process may have compiled them already: then nothing new may happen
    assert traced == {k: int(before[k] == 0) for k in ("init", "step")}
    assert trainer.traces["step"] == 1 and compiled["step"] == int(before["step"] == 0)
    # evaluation compiles once per shape of the held-out set (fixed within a sweep), not per call
    windows = np.zeros((3, 8, 17), np.int32)
    trainer.evaluate(state.params, windows)
    with train.count_compilations() as compiled:
        n = trainer.traces["evaluate"]
        trainer.evaluate(state.params, windows + 1)
        trainer.evaluate(run(trainer, train.hyperparams(OptimConfig()), [1e-3], data[:1])[0].params, windows)
    assert trainer.traces["evaluate"] == n and compiled["evaluate"] == 0


def test_data_parallel_equals_single_device():
    assert jax.device_count() == 2
    data, lrs = batches(5, seed=1), [1e-3, 2e-3, 3e-3, 3e-3, 1e-3]
    hyper = train.hyperparams(OptimConfig())
    one, m1 = run(train.make_trainer(CFG, jax.devices()[:1]), hyper, lrs, data)
    two, m2 = run(train.make_trainer(CFG, jax.devices()), hyper, lrs, data)
    # Same maths; only the order of the float32 sums behind the mean loss and the gradient all-reduce
    # differs. The loss agrees to float32 round-off (~1e-7 relative); parameters to 1e-5 absolute:
    # Adam divides by sqrt(v) + eps, so a weight whose gradient is at round-off level can take an
    # eps-damped step of either sign (observed up to ~1e-6), tiny next to the weights (~1e-2).
    np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(two.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    assert two.params["transformer/embed"]["embeddings"].sharding.is_fully_replicated


def test_bits_per_byte():
    assert train.bits_per_byte(np.array([math.log(2) * 10]), np.array([5]))[0] == pytest.approx(2.0)
