"""The table of model scales, and the one function that counts their parameters.

Twenty sizes, ``s01`` (about 9k parameters) to ``s20`` (about 21M), each about 1.4x the previous, like
the paper's 20 scales from 9M to 8B but scaled down by about 1000x so a laptop can train them. All are
decoder-only, pre-LayerNorm transformers with a 4x feed-forward, byte-level vocabulary and tied input
and output embeddings (:mod:`trainer.model`).

Counting (:func:`count_params`), with ``V`` vocabulary, ``T`` sequence length, ``W`` width, ``L``
layers, ``F = 4W`` feed-forward width::

    per layer   2 LayerNorms 4W  + attention (W x 3W + 3W) + (W x W + W)  + MLP (W x F + F) + (F x W + W)
    N           = V W  +  T W  +  L * per layer  +  2W (final LayerNorm)
    N_nonembed  = N - V W - T W      (Kaplan et al. 2020: token and position embeddings left out;
                                      the output layer is the tied token embedding, so it is out too)

Both are recorded in the run cube (``N`` and ``N_nonembed``); the laws are fitted on ``N`` by default,
as the paper does.

Training FLOPs per token (:func:`flops_per_token`, used for MFU) count every matmul, attention
included, with the full ``T x T`` score matrix as most kernels compute it (Chowdhery et al. 2022,
appendix B: ``6 N_matmul + 12 L T W``)::

    forward     2 * (L (4 W^2 + 2 W F) + W V)  +  4 L T W      (QK^T and AV)
    training    3 * forward                                      (backward = 2x forward)
"""

from __future__ import annotations

from trainer.config import ModelConfig

__all__ = ["SCALES", "scale_names", "get_scale", "count_params", "flops_per_token", "describe"]

# name: (width, depth, heads)
SCALES: dict[str, tuple[int, int, int]] = {
    "s01": (16, 1, 2),
    "s02": (24, 1, 2),
    "s03": (32, 1, 2),
    "s04": (32, 2, 2),
    "s05": (48, 2, 4),
    "s06": (64, 2, 4),
    "s07": (64, 3, 4),
    "s08": (80, 3, 4),
    "s09": (96, 3, 4),
    "s10": (96, 4, 4),
    "s11": (128, 4, 4),
    "s12": (128, 6, 4),
    "s13": (160, 6, 5),
    "s14": (192, 6, 6),
    "s15": (192, 8, 6),
    "s16": (256, 8, 8),
    "s17": (256, 10, 8),
    "s18": (320, 10, 10),
    "s19": (384, 10, 12),
    "s20": (384, 12, 12),
}


def scale_names() -> list[str]:
    """Names of the built-in scales, smallest first."""
    return list(SCALES)


def get_scale(name: str, *, seq_len: int, dropout: float = 0.0) -> ModelConfig:
    """The :class:`~trainer.config.ModelConfig` of a built-in scale at sequence length ``seq_len``."""
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; built-in scales are {', '.join(SCALES)} "
                         "(or define one under [scales.<name>] with width, depth, heads)")
    width, depth, heads = SCALES[name]
    return ModelConfig(width=width, depth=depth, heads=heads, seq_len=seq_len, dropout=dropout)


def count_params(cfg: ModelConfig) -> tuple[int, int]:
    """Parameters ``(N, N_nonembed)`` of a model; the formula is in the module docstring.

    Examples
    --------
    >>> count_params(get_scale("s01", seq_len=64))
    (8464, 3312)
    """
    W, L, F, V, T = cfg.width, cfg.depth, cfg.ff_width, cfg.vocab_size, cfg.seq_len
    per_layer = 4 * W + (3 * W * W + 3 * W) + (W * W + W) + (W * F + F) + (F * W + W)
    embed = V * W + T * W
    total = embed + L * per_layer + 2 * W
    return total, total - embed


def flops_per_token(cfg: ModelConfig) -> float:
    """Training FLOPs per token (forward + backward, attention included); see the module docstring."""
    W, L, F, V, T = cfg.width, cfg.depth, cfg.ff_width, cfg.vocab_size, cfg.seq_len
    forward = 2.0 * (L * (4 * W * W + 2 * W * F) + W * V) + 4.0 * L * T * W
    return 3.0 * forward


def describe(*, seq_len: int = 64) -> list[dict]:
    """One row per built-in scale: name, width, depth, heads, N, N_nonembed, FLOPs per token."""
    rows = []
    for name in SCALES:
        cfg = get_scale(name, seq_len=seq_len)
        n, n_ne = count_params(cfg)
        rows.append(dict(name=name, width=cfg.width, depth=cfg.depth, heads=cfg.heads, N=n, N_nonembed=n_ne,
                         flops_per_token=flops_per_token(cfg)))
    return rows
