"""A decoder-only byte-level transformer in Haiku: the only module of the project that imports haiku.

Pre-LayerNorm blocks (Radford et al. 2019), learned absolute positions, GELU feed-forward of width
``F = 4W``, causal multi-head attention with a fused QKV projection, and the output layer tied to the
token embedding. Residual output projections start at ``0.02 / sqrt(2 L)`` (GPT-2). Parameters are
counted by :func:`trainer.scales.count_params`, which a test checks against this module.

Glossary of shapes
------------------
- B: batch size (sequences).
- T: sequence length (tokens); positions ``0..T-1``.
- V: vocabulary size (256 bytes + SEP + PAD = 258).
- W: model width (``ModelConfig.width``).
- H: attention heads; K = W // H, the size of one head.
- F: feed-forward width (``ModelConfig.ff_mult * W``).
- L: layers (``ModelConfig.depth``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp

from trainer.config import ModelConfig

__all__ = ["Model", "build"]


class CausalSelfAttention(hk.Module):
    """Multi-head causal self-attention: ``[B, T, W] -> [B, T, W]``."""

    def __init__(self, cfg: ModelConfig, *, name: str | None = None):
        super().__init__(name=name)
        self.cfg = cfg

    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.cfg
        B, T, W = x.shape
        H, K = cfg.heads, cfg.head_size
        init = hk.initializers.TruncatedNormal(0.02)
        qkv = hk.Linear(3 * W, w_init=init, name="qkv")(x)  # [B, T, 3W]
        q, k, v = jnp.split(qkv.reshape(B, T, 3, H, K), 3, axis=2)  # 3 x [B, T, 1, H, K]
        q, k, v = (a.squeeze(2) for a in (q, k, v))  # [B, T, H, K]
        out = jax.nn.dot_product_attention(q, k, v, is_causal=True)  # [B, T, H, K]
        out_init = hk.initializers.TruncatedNormal(0.02 / math.sqrt(2 * cfg.depth))
        return hk.Linear(W, w_init=out_init, name="out")(out.reshape(B, T, W))


class Block(hk.Module):
    """One pre-LayerNorm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, cfg: ModelConfig, *, name: str | None = None):
        super().__init__(name=name)
        self.cfg = cfg

    def __call__(self, x: jax.Array, *, is_training: bool) -> jax.Array:
        cfg = self.cfg
        rate = cfg.dropout if is_training else 0.0
        init = hk.initializers.TruncatedNormal(0.02)
        out_init = hk.initializers.TruncatedNormal(0.02 / math.sqrt(2 * cfg.depth))

        h = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True, name="ln_attn")(x)
        h = CausalSelfAttention(cfg, name="attn")(h)
        if rate:
            h = hk.dropout(hk.next_rng_key(), rate, h)
        x = x + h  # [B, T, W]

        h = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True, name="ln_mlp")(x)
        h = hk.Linear(cfg.ff_width, w_init=init, name="ff_in")(h)  # [B, T, F]
        h = jax.nn.gelu(h)
        h = hk.Linear(cfg.width, w_init=out_init, name="ff_out")(h)  # [B, T, W]
        if rate:
            h = hk.dropout(hk.next_rng_key(), rate, h)
        return x + h


class Transformer(hk.Module):
    """Tokens ``[B, T]`` (int) -> next-token logits ``[B, T, V]``."""

    def __init__(self, cfg: ModelConfig, *, name: str | None = None):
        super().__init__(name=name)
        self.cfg = cfg

    def __call__(self, tokens: jax.Array, *, is_training: bool) -> jax.Array:
        cfg = self.cfg
        T = tokens.shape[-1]
        embed = hk.Embed(cfg.vocab_size, cfg.width, w_init=hk.initializers.TruncatedNormal(0.02), name="embed")
        pos = hk.get_parameter("pos_embed", [cfg.seq_len, cfg.width], init=hk.initializers.TruncatedNormal(0.02))
        x = embed(tokens) + pos[:T]  # [B, T, W]
        for i in range(cfg.depth):
            x = Block(cfg, name=f"block_{i}")(x, is_training=is_training)
        x = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True, name="ln_final")(x)
        return x @ embed.embeddings.T  # [B, T, V], tied output layer


class Model(NamedTuple):
    """A pure pair: ``init(key, tokens) -> params``; ``apply(params, key, tokens, is_training) -> logits``.

    ``key`` may be ``None`` in ``apply`` when there is no dropout (or at evaluation).
    """

    init: object
    apply: object


def build(cfg: ModelConfig) -> Model:
    """The Haiku-transformed model of shape ``cfg``."""

    def forward(tokens: jax.Array, is_training: bool) -> jax.Array:
        return Transformer(cfg, name="transformer")(tokens, is_training=is_training)

    transformed = hk.transform(forward)

    def init(key: jax.Array, tokens: jax.Array) -> hk.Params:
        return transformed.init(key, tokens, True)

    def apply(params: hk.Params, key: jax.Array | None, tokens: jax.Array, is_training: bool) -> jax.Array:
        if not (is_training and cfg.dropout):
            key = None
        return transformed.apply(params, key, tokens, is_training)

    return Model(init=init, apply=apply)
