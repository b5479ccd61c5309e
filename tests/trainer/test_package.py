"""The trainer package's public API is its ``__all__``: pinned here so changes are deliberate."""

import trainer

PUBLIC = {
    "DataConfig", "ModelConfig", "OptimConfig", "TrainConfig", "SCALES", "count_params", "flops_per_token",
    "get_scale", "World", "WorldConfig", "load_world", "load_corpus", "Sweep", "SweepResult", "load_sweep",
    "run_sweep",
}


def test_all_is_pinned():
    assert set(trainer.__all__) == PUBLIC
    for name in trainer.__all__:
        assert hasattr(trainer, name), name
