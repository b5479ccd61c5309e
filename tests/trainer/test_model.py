"""The transformer: shapes and causality."""

import jax
import jax.numpy as jnp
import numpy as np

from trainer import model
from trainer.config import ModelConfig


def test_shapes_and_causality():
    cfg = ModelConfig(width=16, depth=1, heads=2, seq_len=16)
    net = model.build(cfg)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 16)), jnp.int32)
    params = jax.jit(net.init)(jax.random.key(0), tokens)
    apply = jax.jit(lambda p, t: net.apply(p, None, t, False))
    logits = apply(params, tokens)
    assert logits.shape == (2, 16, cfg.vocab_size)
    changed = tokens.at[:, 10:].set(7)  # change the future: logits before position 10 must not move
    np.testing.assert_array_equal(np.asarray(apply(params, changed))[:, :10], np.asarray(logits)[:, :10])
    assert not np.allclose(np.asarray(apply(params, changed))[:, 10:], np.asarray(logits)[:, 10:])
