"""Deterministic batches: exact mixture counts, epochs over a U budget, reproducibility."""

import numpy as np
import pytest

from trainer.sampler import Sampler, sequences_needed

T, B = 8, 10


def streams():
    rng = np.random.default_rng(0)
    return {"a": rng.integers(0, 256, 400).astype(np.uint16), "b": rng.integers(0, 256, 4001).astype(np.uint16)}


def test_counts_follow_the_weights_exactly():
    w = {"a": 0.3, "b": 0.7}
    need = sequences_needed(w, batch_size=B, total_steps=50)
    assert sum(need.values()) == 500 and abs(need["a"] - 150) <= 1
    s = Sampler(streams(), w, batch_size=B, seq_len=T, total_steps=50, seed=1)
    for steps in (1, 7, 50):  # within one sequence of w * G at every point, not just on average
        drawn = s.tokens_drawn(steps)
        assert abs(drawn["a"] / T - 0.3 * B * steps) <= 1


def test_batches_are_a_pure_function_of_the_step():
    a = Sampler(streams(), {"a": 0.5, "b": 0.5}, batch_size=B, seq_len=T, total_steps=30, seed=3)
    b = Sampler(streams(), {"a": 0.5, "b": 0.5}, batch_size=B, seq_len=T, total_steps=30, seed=3)
    np.testing.assert_array_equal(a.batch(17), b.batch(17))
    assert a.batch(3).shape == (B, T + 1) and a.batch(3).dtype == np.int32
    c = Sampler(streams(), {"a": 0.5, "b": 0.5}, batch_size=B, seq_len=T, total_steps=30, seed=4)
    assert not np.array_equal(a.batch(17), c.batch(17))


def test_repeated_data_visits_every_window_once_per_epoch():
    st = streams()
    s = Sampler(st, {"a": 1.0}, batch_size=B, seq_len=T, total_steps=20, seed=0, shuffle=["a"])
    n = s.windows("a")  # (400 - 1) // 8 = 49 windows
    assert n == 49
    rows = np.concatenate([s.batch(i) for i in range(20)])  # 200 sequences = 4 epochs + 4
    starts = [int(np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(st["a"], T + 1) == r, axis=1))[0])
              for r in rows[:n]]
    assert sorted(starts) == list(range(0, n * T, T))  # first epoch: each window exactly once
    assert s.tokens_drawn(20)["a"] / st["a"].size == pytest.approx(200 * T / 400)  # epochs = D / U


def test_unconstrained_streams_are_read_in_order_and_must_not_run_out():
    st = streams()
    s = Sampler(st, {"b": 1.0}, batch_size=B, seq_len=T, total_steps=5, seed=0, shuffle=[])
    np.testing.assert_array_equal(s.batch(0)[0], st["b"][: T + 1])
    np.testing.assert_array_equal(s.batch(1)[0], st["b"][B * T: B * T + T + 1])
    short = Sampler(st, {"a": 1.0}, batch_size=B, seq_len=T, total_steps=10, seed=0, shuffle=[])
    with pytest.raises(ValueError, match=r"language 'a' ran out of text: its stream of 49 windows is read in order"):
        short.batch(9)


def test_too_little_text():
    with pytest.raises(ValueError, match=r"language 'a' has 5 training tokens, fewer than one sequence \(seq_len \+ 1 = 9\)"):
        Sampler({"a": np.zeros(5, np.uint16)}, {"a": 1.0}, batch_size=B, seq_len=T, total_steps=1, seed=0)
