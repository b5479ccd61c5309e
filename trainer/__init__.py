"""trainer: a Haiku/JAX language-model trainer that generates run cubes for the scaling laws.

Decoder-only byte-level transformers (:mod:`trainer.model`) at twenty scales (:mod:`trainer.scales`),
AdamW with warmup-stable-decay (:mod:`trainer.schedule`), one compiled step per model shape
(:mod:`trainer.train`), token-budget sweeps by branching the decay off a shared trunk
(:mod:`trainer.runner`), on a synthetic multilingual world with known relatedness (:mod:`trainer.world`)
or real text (:mod:`trainer.corpus`, :mod:`trainer.manpages`), driven by TOML sweep files
(:mod:`trainer.sweep`): ``atlas train sweep.toml --out cube.nc``.
"""

__version__ = "0.1.0"

from trainer.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from trainer.corpus import load_corpus
from trainer.scales import SCALES, count_params, flops_per_token, get_scale
from trainer.sweep import Sweep, SweepResult, load_sweep, run_sweep
from trainer.world import World, WorldConfig, load_world

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "SCALES",
    "count_params",
    "flops_per_token",
    "get_scale",
    "World",
    "WorldConfig",
    "load_world",
    "load_corpus",
    "Sweep",
    "SweepResult",
    "load_sweep",
    "run_sweep",
]
