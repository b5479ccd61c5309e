"""The scale table and the one parameter-counting function, checked against the Haiku model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trainer import model, scales
from trainer.config import ModelConfig


def haiku_count(cfg: ModelConfig) -> int:
    net = model.build(cfg)
    # eval_shape: parameter shapes without running (or compiling) the initialiser.
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, cfg.seq_len), jnp.int32))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


@pytest.mark.parametrize("name", ["s01", "s07", "s13", "s20"])
def test_count_matches_the_model(name):
    cfg = scales.get_scale(name, seq_len=64)
    n, n_nonembed = scales.count_params(cfg)
    assert n == haiku_count(cfg)
    assert n - n_nonembed == (cfg.vocab_size + cfg.seq_len) * cfg.width  # token + position embeddings


def test_custom_shape_counts_too():
    cfg = ModelConfig(width=24, depth=3, heads=3, seq_len=16, ff_mult=2)
    assert scales.count_params(cfg)[0] == haiku_count(cfg)


def test_table_spans_10k_to_20M_about_geometrically():
    ns = [scales.count_params(scales.get_scale(s, seq_len=64))[0] for s in scales.SCALES]
    assert len(ns) == 20
    assert 5e3 < ns[0] < 2e4 and 1.5e7 < ns[-1] < 3e7
    ratios = np.diff(np.log(ns))
    assert np.all(ratios > 0)  # strictly increasing
    assert np.all(np.exp(ratios) < 2.2)  # no big gaps


def test_flops_per_token_counts_attention():
    short, long = (scales.get_scale("s10", seq_len=t) for t in (64, 1024))
    n_ne = scales.count_params(short)[1]
    # at least 6 N_nonembed; attention adds 12 L T W, which grows with T
    assert scales.flops_per_token(short) > 6 * n_ne
    diff = scales.flops_per_token(long) - scales.flops_per_token(short)
    assert diff == pytest.approx(12 * short.depth * (1024 - 64) * short.width)


def test_unknown_scale():
    with pytest.raises(ValueError, match=r"unknown scale 's99'; built-in scales are s01, s02"):
        scales.get_scale("s99", seq_len=64)
