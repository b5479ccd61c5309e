"""Warmup-stable-decay: the shape of SPEC section 5, and the trunk it shares with every budget."""

import numpy as np
import pytest

from trainer import schedule
from trainer.config import OptimConfig

CFG = OptimConfig(lr=1e-3, warmup_steps=10, decay_fraction=0.1, final_lr_fraction=0.0)


def test_wsd_shape():
    lr = schedule.values(schedule.wsd(CFG, 200), 0, 200)
    np.testing.assert_allclose(lr[:10], 1e-3 * np.arange(10) / 10, rtol=1e-6)  # linear warmup
    assert np.all(lr[10:180] == np.float32(1e-3))  # stable
    assert schedule.decay_start(200, 0.1) == 180
    assert np.all(np.diff(lr[180:]) < 0) and lr[-1] < 1e-4  # linear decay over the last 10%


@pytest.mark.parametrize("steps", [60, 200, 1000])
def test_budgets_share_the_trunk(steps):
    start = schedule.decay_start(steps, CFG.decay_fraction)
    trunk = schedule.values(schedule.trunk(CFG), 0, start)
    np.testing.assert_array_equal(schedule.values(schedule.wsd(CFG, steps), 0, start), trunk)
