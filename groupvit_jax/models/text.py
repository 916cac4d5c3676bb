"""CLIP-style causal text Transformer (official ``TextTransformer``, key prefix ``text_encoder``).
Spec section 2.1."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from groupvit_jax import sharding as shd
from groupvit_jax.model_config import TextConfig
from groupvit_jax.models.layers import (ACTIVATIONS, Dtype, LayerNorm, linear, mlp_hidden,
                                        multi_head_attention, normal, remat_call)
from groupvit_jax.sharding import EMBED, HEADS, MLP, SEQ, VOCAB


class TextAttention(nnx.Module):
  """torch ``nn.MultiheadAttention``: fused ``in_proj`` (rows q|k|v) and ``out_proj``."""

  def __init__(self, width: int, heads: int, *, in_std: float, out_std: float, dtype: Dtype,
               param_dtype: Dtype, rngs: nnx.Rngs):
    zeros = nnx.initializers.zeros
    self.in_proj = linear(width, 3 * width, (EMBED, HEADS), kernel_init=normal(in_std),
                          bias_init=zeros, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.out_proj = linear(width, width, (HEADS, EMBED), kernel_init=normal(out_std),
                           bias_init=zeros, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.heads = heads

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    """x: [B, N, W]; mask: [N, N] boolean (True = attend) -> [B, N, W]."""
    q, k, v = jnp.split(self.in_proj(x), 3, axis=-1)
    return self.out_proj(multi_head_attention(q, k, v, self.heads, mask))


class ClipMlp(nnx.Module):
  """``c_fc -> QuickGELU -> c_proj``."""

  def __init__(self, width: int, hidden: int, *, fc_std: float, proj_std: float,
               act: str = "quick_gelu", dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs):
    self.c_fc = linear(width, hidden, (EMBED, MLP), kernel_init=normal(fc_std), dtype=dtype,
                       param_dtype=param_dtype, rngs=rngs)
    self.c_proj = linear(hidden, width, (MLP, EMBED), kernel_init=normal(proj_std), dtype=dtype,
                         param_dtype=param_dtype, rngs=rngs)
    self.act = act

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.c_proj(ACTIVATIONS[self.act](self.c_fc(x)))


class ResidualAttentionBlock(nnx.Module):
  """Pre-norm block: ``x + attn(ln_1 x)``, ``x + mlp(ln_2 x)``."""

  def __init__(self, cfg: TextConfig, *, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs):
    w = cfg.width
    proj_std = (w**-0.5) * ((2 * cfg.layers)**-0.5)
    norm = dict(eps=cfg.layer_norm_eps, dtype=dtype, param_dtype=param_dtype)
    self.ln_1 = LayerNorm(w, **norm)
    self.attn = TextAttention(w, cfg.heads, in_std=w**-0.5, out_std=proj_std, dtype=dtype,
                              param_dtype=param_dtype, rngs=rngs)
    self.ln_2 = LayerNorm(w, **norm)
    self.mlp = ClipMlp(w, mlp_hidden(w, cfg.mlp_ratio), fc_std=(2 * w)**-0.5, proj_std=proj_std,
                       act=cfg.act, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    """x: [B, N, W] -> [B, N, W]."""
    x = x + self.attn(self.ln_1(x), mask)
    x = x + self.mlp(self.ln_2(x))
    return shd.constrain(x, (shd.BATCH, shd.LENGTH, EMBED))


class Transformer(nnx.Module):
  """Stack of ``resblocks``."""

  def __init__(self, cfg: TextConfig, *, remat: bool, dtype: Dtype, param_dtype: Dtype,
               rngs: nnx.Rngs):
    self.resblocks = nnx.List([
        ResidualAttentionBlock(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        for _ in range(cfg.layers)
    ])
    self.remat = remat

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    for block in self.resblocks:
      x = remat_call(block, "__call__", x, mask) if self.remat else block(x, mask)
    return x


class TextEncoder(nnx.Module):
  """Token + position embedding, causal Transformer, ``ln_final``, pooling at the first EOT."""

  def __init__(self, cfg: TextConfig, *, remat: bool = False, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    self.cfg = cfg
    self.dtype = dtype
    self.token_embedding = nnx.Embed(
        cfg.vocab_size, cfg.width, dtype=dtype, param_dtype=param_dtype,
        embedding_init=shd.partitioned(normal(0.02), VOCAB, EMBED), rngs=rngs)
    self.positional_embedding = shd.param(
        0.01 * jax.random.normal(rngs.params(), (cfg.context_length, cfg.width), param_dtype),
        SEQ, EMBED)
    self.transformer = Transformer(cfg, remat=remat, dtype=dtype, param_dtype=param_dtype,
                                   rngs=rngs)
    self.ln_final = LayerNorm(cfg.width, eps=cfg.layer_norm_eps, dtype=jnp.float32,
                              param_dtype=param_dtype)

  def __call__(self, input_ids: jax.Array) -> jax.Array:
    """input_ids: [N, T] int (T <= context_length, zero padded) -> pooled [N, W] float32.

    Pools at ``argmax(input_ids)``: the end-of-text id 49407 is the largest id, so this is the
    first EOT (official behaviour); with ``cfg.eos_token_id`` set, at its first occurrence.
    """
    n, t = input_ids.shape
    x = self.token_embedding(input_ids)
    x = x + self.positional_embedding.get_value()[:t].astype(x.dtype)
    mask = jnp.tril(jnp.ones((t, t), dtype=bool))
    x = self.transformer(x, mask)
    x = self.ln_final(x)
    if self.cfg.eos_token_id is None:
      eot = jnp.argmax(input_ids, axis=-1)
    else:
      eot = jnp.argmax(input_ids == self.cfg.eos_token_id, axis=-1)
    return x[jnp.arange(n), eot]
