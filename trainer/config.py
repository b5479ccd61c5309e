"""Configuration of the trainer: frozen dataclasses, and their parsing from TOML tables.

Everything a run depends on is in one of these dataclasses, passed in explicitly; nothing swept lives
in a module global. Each ``from_table`` constructor validates its table at the boundary (unknown keys,
wrong types, impossible values) and raises :class:`ValueError` naming the table, the key, what it got
and what is allowed, before any training starts.

- :class:`ModelConfig`  the shape of a transformer (one compiled train step per distinct value).
- :class:`OptimConfig`  AdamW and its warmup-stable-decay schedule (SPEC section 5).
- :class:`TrainConfig`  batch size, optimiser, evaluation and checkpoint cadence.
- :class:`DataConfig`   where text comes from (synthetic world or real corpus), sequence length,
  held-out test text and evaluation languages.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = [
    "VOCAB_SIZE",
    "SEP",
    "PAD",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "DataConfig",
    "check_keys",
    "get_number",
    "get_int",
    "get_str",
    "get_str_list",
]

# Byte-level vocabulary: the 256 byte values, a document separator and padding.
SEP = 256  # separates documents in a token stream (a token, not a byte: not counted in bits per byte)
PAD = 257  # fills short evaluation windows (never a target)
VOCAB_SIZE = 258


# ----------------------------------------------------------------------------- table helpers


def check_keys(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    """Raise ``ValueError`` if ``table`` has keys not in ``allowed`` (typos are caught here)."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{where} must be a table, got {type(table).__name__} {table!r}")
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise ValueError(
            f"unknown key{'s' * (len(unknown) > 1)} {', '.join(repr(k) for k in unknown)} in {where}; "
            f"allowed: {', '.join(allowed)}"
        )


def get_number(table: Mapping[str, Any], key: str, default: float, where: str, *,
               lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> float:
    """``table[key]`` as a float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``), or ``default``."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}.{key} must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or (lo is not None and (value <= lo if lo_open else value < lo)) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ValueError(f"{where}.{key} must be in {'(' if lo_open else '['}{lo_s}, {hi_s}]; got {value!r}")
    return value


def get_int(table: Mapping[str, Any], key: str, default: int, where: str, *, lo: int | None = None) -> int:
    """``table[key]`` as an int ``>= lo``, or ``default``."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise ValueError(f"{where}.{key} must be an integer, got {value!r}")
    value = int(value)
    if lo is not None and value < lo:
        raise ValueError(f"{where}.{key} must be >= {lo}; got {value}")
    return value


def get_str(table: Mapping[str, Any], key: str, default: str | None, where: str, *,
            choices: Sequence[str] | None = None) -> str | None:
    """``table[key]`` as a string (one of ``choices`` if given), or ``default``."""
    value = table.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key} must be a string, got {value!r}")
    if choices is not None and value not in choices:
        raise ValueError(f"{where}.{key} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def get_str_list(table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    """``table[key]`` as a tuple of strings (a single string is one item), or ``None`` if absent."""
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}.{key} must be a string or a list of strings, got {value!r}")
    return tuple(value)


# ----------------------------------------------------------------------------- model


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape of a decoder-only byte-level transformer (see :mod:`trainer.model`).

    Two runs with equal ``ModelConfig`` share one compiled train step.
    """

    width: int
    depth: int
    heads: int
    seq_len: int
    ff_mult: int = 4
    vocab_size: int = VOCAB_SIZE
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("width", "depth", "heads", "seq_len", "ff_mult", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model {name} must be a positive integer, got {value!r}")
        if self.width % self.heads:
            raise ValueError(
                f"heads={self.heads} does not divide width={self.width}: the width must be a multiple of "
                f"the number of heads (e.g. heads={_divisor_near(self.width, self.heads)})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model dropout must be in [0, 1); got {self.dropout!r}")

    @property
    def head_size(self) -> int:
        return self.width // self.heads

    @property
    def ff_width(self) -> int:
        return self.ff_mult * self.width


def _divisor_near(width: int, heads: int) -> int:
    divisors = [d for d in range(1, width + 1) if width % d == 0]
    return min(divisors, key=lambda d: (abs(d - heads), d))


# ----------------------------------------------------------------------------- optimisation


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with a warmup-stable-decay learning rate (SPEC section 5: 10% decay).

    ``lr`` is the peak rate reached after ``warmup_steps`` linear warmup; the last ``decay_fraction``
    of each run's steps decays linearly to ``final_lr_fraction * lr``. ``clip_norm`` clips the global
    gradient norm (0 disables it).
    """

    lr: float = 3e-3
    warmup_steps: int = 20
    decay_fraction: float = 0.1
    final_lr_fraction: float = 0.0
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    clip_norm: float = 1.0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a run is trained and observed.

    ``eval_points`` evaluations on the stable trunk (geometrically spaced, plus every branch point),
    and two more on each branch's decay (half-way and at the end), make each run's learning curve.
    ``checkpoint_every`` trunk steps, the job is checkpointed so an interrupted sweep resumes there.
    ``data_parallel``: ``"auto"`` splits each batch over all local JAX devices; ``"off"`` uses one.
    ``dropout`` is applied to the model's residual branches (the paper uses 0.1; tiny runs use 0).
    """

    batch_size: int = 32
    optim: OptimConfig = OptimConfig()
    eval_points: int = 6
    checkpoint_every: int = 500
    data_parallel: Literal["auto", "off"] = "auto"
    dropout: float = 0.0

    KEYS = ("batch_size", "lr", "warmup_steps", "decay_fraction", "final_lr_fraction", "weight_decay", "b1", "b2",
            "eps", "clip_norm", "eval_points", "checkpoint_every", "data_parallel", "dropout")

    @classmethod
    def from_table(cls, table: Mapping[str, Any], where: str = "[train]", base: TrainConfig | None = None) -> TrainConfig:
        """Parse a ``[train]`` table (keys in :attr:`KEYS`); missing keys keep ``base``'s values."""
        check_keys(table, cls.KEYS, where)
        base = base or cls()
        o = base.optim
        optim = OptimConfig(
            lr=get_number(table, "lr", o.lr, where, lo=0.0, lo_open=True),
            warmup_steps=get_int(table, "warmup_steps", o.warmup_steps, where, lo=0),
            decay_fraction=get_number(table, "decay_fraction", o.decay_fraction, where, lo=0.0, hi=1.0),
            final_lr_fraction=get_number(table, "final_lr_fraction", o.final_lr_fraction, where, lo=0.0, hi=1.0),
            weight_decay=get_number(table, "weight_decay", o.weight_decay, where, lo=0.0),
            b1=get_number(table, "b1", o.b1, where, lo=0.0, hi=1.0),
            b2=get_number(table, "b2", o.b2, where, lo=0.0, hi=1.0),
            eps=get_number(table, "eps", o.eps, where, lo=0.0, lo_open=True),
            clip_norm=get_number(table, "clip_norm", o.clip_norm, where, lo=0.0),
        )
        return cls(
            batch_size=get_int(table, "batch_size", base.batch_size, where, lo=1),
            optim=optim,
            eval_points=get_int(table, "eval_points", base.eval_points, where, lo=1),
            checkpoint_every=get_int(table, "checkpoint_every", base.checkpoint_every, where, lo=1),
            data_parallel=get_str(table, "data_parallel", base.data_parallel, where, choices=("auto", "off")),
            dropout=get_number(table, "dropout", base.dropout, where, lo=0.0, hi=0.9),
        )


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the text comes from, and how it is cut and held out.

    Exactly one of ``world`` (a built-in world name such as ``"default"``, or a path to a world TOML,
    see :mod:`trainer.world`) and ``corpus`` (a folder of real text, see :mod:`trainer.corpus`).
    ``langs`` restricts the languages used (default: all). ``test_tokens`` per language are held out
    and never trained on; ``eval_langs`` are scored (default: all used languages).
    ``families`` optionally names each real-corpus language's family for the cube's metadata.
    """

    world: str | None = "default"
    corpus: str | None = None
    world_seed: int | None = None
    langs: tuple[str, ...] | None = None
    seq_len: int = 64
    test_tokens: int = 4096
    eval_langs: tuple[str, ...] | None = None
    glob: str = "*"
    families: tuple[tuple[str, str], ...] = ()

    KEYS = ("world", "world_seed", "corpus", "langs", "seq_len", "test_tokens", "eval_langs", "glob", "families")

    @classmethod
    def from_table(cls, table: Mapping[str, Any], where: str = "[data]", base_dir: str | None = None) -> DataConfig:
        """Parse a ``[data]`` table; relative paths are resolved against ``base_dir``."""
        import os

        check_keys(table, cls.KEYS, where)
        world = get_str(table, "world", None, where)
        corpus = get_str(table, "corpus", None, where)
        if world is not None and corpus is not None:
            raise ValueError(f"{where}: give either world = ... or corpus = ..., not both")
        if world is None and corpus is None:
            world = "default"

        def resolve(p: str | None, *, is_world: bool) -> str | None:
            if p is None or base_dir is None or os.path.isabs(p):
                return p
            if is_world and not p.endswith(".toml"):
                return p  # a built-in world name
            return os.path.normpath(os.path.join(base_dir, p))

        langs = get_str_list(table, "langs", where)
        eval_langs = get_str_list(table, "eval_langs", where)
        if eval_langs == ("all",):
            eval_langs = None
        families = table.get("families", {})
        check_keys(families, list(families), f"{where}.families")
        if not all(isinstance(v, str) for v in families.values()):
            raise ValueError(f"{where}.families must map language -> family name (strings); got {families!r}")
        seq_len = get_int(table, "seq_len", cls.seq_len, where, lo=2)
        test_tokens = get_int(table, "test_tokens", cls.test_tokens, where, lo=1)
        if test_tokens < seq_len + 1:
            raise ValueError(f"{where}.test_tokens={test_tokens} is shorter than one evaluation window "
                             f"(seq_len + 1 = {seq_len + 1} tokens)")
        world_seed = table.get("world_seed")
        if world_seed is not None:
            world_seed = get_int(table, "world_seed", 0, where, lo=0)
        return cls(
            world=resolve(world, is_world=True),
            corpus=resolve(corpus, is_world=False),
            world_seed=world_seed,
            langs=langs,
            seq_len=seq_len,
            test_tokens=test_tokens,
            eval_langs=eval_langs,
            glob=get_str(table, "glob", "*", where),
            families=tuple(sorted(families.items())),
        )
