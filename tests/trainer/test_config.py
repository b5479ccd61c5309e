"""Configuration parsing: every bad input is refused with a message naming the problem."""

import pytest

from trainer.config import DataConfig, ModelConfig, TrainConfig


def test_train_defaults_and_overrides():
    base = TrainConfig.from_table({"lr": 1e-3, "batch_size": 16})
    assert base.optim.lr == 1e-3 and base.batch_size == 16
    child = TrainConfig.from_table({"warmup_steps": 5}, base=base)
    assert child.optim.lr == 1e-3 and child.optim.warmup_steps == 5 and child.batch_size == 16


@pytest.mark.parametrize(
    "table, match",
    [
        ({"lerning_rate": 1e-3}, r"unknown key 'lerning_rate' in \[train\]; allowed: batch_size"),
        ({"lr": -1.0}, r"\[train\]\.lr must be in \(0, inf\]; got -1.0"),
        ({"batch_size": 2.5}, r"\[train\]\.batch_size must be an integer, got 2.5"),
        ({"data_parallel": "yes"}, r"\[train\]\.data_parallel must be one of 'auto', 'off'; got 'yes'"),
        ({"decay_fraction": 1.5}, r"\[train\]\.decay_fraction must be in \[0, 1\]"),
    ],
)
def test_train_bad_input(table, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_table(table)


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match=r"heads=5 does not divide width=96.*\(e\.g\. heads=4\)"):
        ModelConfig(width=96, depth=2, heads=5, seq_len=16)


@pytest.mark.parametrize(
    "table, match",
    [
        ({"world": "default", "corpus": "x"}, r"give either world = \.\.\. or corpus = \.\.\., not both"),
        ({"seq_len": 64, "test_tokens": 10}, r"test_tokens=10 is shorter than one evaluation window \(seq_len \+ 1 = 65"),
        ({"wrold": "default"}, r"unknown key 'wrold' in \[data\]"),
    ],
)
def test_data_bad_input(table, match):
    with pytest.raises(ValueError, match=match):
        DataConfig.from_table(table)


def test_data_paths_resolve_against_the_sweep_file(tmp_path):
    cfg = DataConfig.from_table({"corpus": "texts", "eval_langs": "all"}, base_dir=str(tmp_path))
    assert cfg.corpus == str(tmp_path / "texts") and cfg.world is None and cfg.eval_langs is None
