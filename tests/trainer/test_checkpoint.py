"""Checkpoints round-trip the full training state: a restored run continues bit for bit."""

import jax
import numpy as np
import pytest

from trainer import checkpoint, train
from trainer.config import ModelConfig, OptimConfig

CFG = ModelConfig(width=16, depth=1, heads=2, seq_len=16)


def host(state):
    return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
            for x in jax.tree.leaves(state)]


def test_resume_is_bit_identical(tmp_path):
    trainer = train.make_trainer(CFG, jax.devices())
    hyper = train.hyperparams(OptimConfig())
    rng = np.random.default_rng(0)
    data = [rng.integers(0, 256, (8, 17)).astype(np.int32) for _ in range(6)]
    lrs = np.linspace(1e-3, 3e-3, 6).astype(np.float32)

    state = trainer.init(jax.random.key(1), hyper)
    for b, lr in zip(data, lrs):
        state, _ = trainer.step(state, b, lr)
    straight = host(state)

    state = trainer.init(jax.random.key(1), hyper)
    for b, lr in zip(data[:3], lrs[:3]):
        state, _ = trainer.step(state, b, lr)
    checkpoint.save(tmp_path / "c.npz", state, meta={"step": 3})
    del state
    template = trainer.init(jax.random.key(99), hyper)  # another init: everything must come from the file
    traced = trainer.traces["step"]
    state, meta = checkpoint.restore(tmp_path / "c.npz", template)
    assert meta == {"step": 3} and int(state.step) == 3
    for b, lr in zip(data[3:], lrs[3:]):
        state, _ = trainer.step(state, b, lr)
    resumed = host(state)
    assert trainer.traces["step"] == traced  # the restored state is placed like a fresh one: no retrace
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)  # exact: same program, same inputs


def test_mismatch_and_missing(tmp_path):
    state = {"w": np.zeros((2, 3), np.float32)}
    checkpoint.save(tmp_path / "c.npz", state)
    with pytest.raises(ValueError, match=r"does not match this model at \['w'\]: float32\[2, 3\] saved, float32\[4, 3\] expected"):
        checkpoint.restore(tmp_path / "c.npz", {"w": np.zeros((4, 3), np.float32)})
    with pytest.raises(ValueError, match=r"does not match this model: it has no \['v'\]"):
        checkpoint.restore(tmp_path / "c.npz", {"v": np.zeros((2, 3), np.float32)})
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at"):
        checkpoint.read_meta(tmp_path / "nope.npz")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = checkpoint.save(tmp_path / "c.npz", {"w": np.ones(3, np.float32)}, meta={"v": 1})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, {"w": np.zeros(3, np.float32)}, meta={"v": 2})
    assert checkpoint.read_meta(path) == {"v": 1}  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]  # no temporary left behind
