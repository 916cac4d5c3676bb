"""Grouping stages: ``GroupingBlock`` (token mixer, pre-assignment cross-attention, assignment,
channel MLP) and ``GroupingLayer`` (group tokens appended after the image tokens, ViT blocks, then
grouping). Spec sections 1.4 and 1.5.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from groupvit_jax import sharding as shd
from groupvit_jax.model_config import StageConfig
from groupvit_jax.models.assign import AssignAttention
from groupvit_jax.models.layers import AttnBlock, CrossAttnBlock, Dtype, LayerNorm, MixerMlp, Mlp
from groupvit_jax.sharding import EMBED, GROUPS


class GroupingBlock(nnx.Module):
  """Merges L image tokens into S_out segments guided by S_in group tokens (key ``downsample``)."""

  def __init__(self, cfg: StageConfig, *, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs):
    dim = cfg.dim
    norm = dict(eps=cfg.eps, dtype=dtype, param_dtype=param_dtype)
    dense = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    tokens_dim = int(cfg.assign_mlp_ratio[0] * dim)
    channels_dim = int(cfg.assign_mlp_ratio[1] * dim)
    self.cfg = cfg
    self.norm_tokens = LayerNorm(dim, **norm)
    self.mlp_inter = MixerMlp(cfg.num_group_token, tokens_dim, cfg.num_output_group, init_std=0.02,
                              act=cfg.act, **dense)
    self.norm_post_tokens = LayerNorm(dim, **norm)
    self.norm_x = LayerNorm(dim, **norm)
    # The reference hard-codes 4.0 here, transformers uses intermediate_size: equal in every
    # released config, and the blocks' mlp_ratio covers both.
    self.pre_assign_attn = CrossAttnBlock(dim, cfg.num_heads, mlp_ratio=cfg.mlp_ratio, eps=cfg.eps,
                                          act=cfg.act, **dense)
    self.assign = AssignAttention(dim, rule=cfg.assign_rule, assign_eps=cfg.assign_eps,
                                  qk_init_std=cfg.assign_qk_init_std, **dense)
    self.norm_new_x = LayerNorm(dim, **norm)
    self.mlp_channels = Mlp(dim, channels_dim, dim, act=cfg.act, init_std=(0.02, 0.02), **dense)

  def __call__(self, x: jax.Array, group_tokens: jax.Array, *, train: bool = False,
               rngs: nnx.Rngs | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """x: [B, L, C] image tokens; group_tokens: [B, S_in, C].

    Returns:
      [B, S_out, C] segment tokens and the assignment maps ``soft``/``hard`` [B, S_out, L].
    """
    group_tokens = self.norm_tokens(group_tokens)
    x = self.norm_x(x)
    projected = self.norm_post_tokens(self.mlp_inter(group_tokens))
    projected = self.pre_assign_attn(projected, x)
    new_x, maps = self.assign(projected, x, train=train, rngs=rngs)
    if self.cfg.group_token_residual:  # the reference (see VisionConfig.group_token_residual)
      new_x = new_x + projected
    new_x = new_x + self.mlp_channels(self.norm_new_x(new_x))
    return new_x, maps


def group_projector(dim: int, in_tokens: int, out_tokens: int, *, eps: float, act: str,
                    dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs) -> nnx.List:
  """Official ``nn.Sequential(LayerNorm, MixerMlp)`` (children ``0`` and ``1``):
  [B, S_prev, C] -> [B, S, C]."""
  return nnx.List([
      LayerNorm(dim, eps=eps, dtype=dtype, param_dtype=param_dtype),
      MixerMlp(in_tokens, dim // 2, out_tokens, init_std=0.02, act=act, dtype=dtype,
               param_dtype=param_dtype, rngs=rngs),
  ])


class GroupingLayer(nnx.Module):
  """One stage (key ``layers.{s}``): group tokens + ViT blocks + optional ``GroupingBlock``."""

  def __init__(self, cfg: StageConfig, *, remat: bool = False, dtype: Dtype, param_dtype: Dtype,
               rngs: nnx.Rngs):
    dim = cfg.dim
    dense = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_group_token = cfg.num_group_token
    if cfg.num_group_token > 0:
      # Stages fed by a group projector start from zeros (spec 1.9), others from N(0, 0.02).
      init = jnp.zeros if cfg.num_prev_group_token > 0 else (
          lambda shape, dtype: 0.02 * jax.random.normal(rngs.params(), shape, dtype))
      self.group_token = shd.param(init((1, cfg.num_group_token, dim), param_dtype), None, GROUPS,
                                   EMBED)
    else:
      self.group_token = None
    self.blocks = nnx.List([
        AttnBlock(dim, cfg.num_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias,
                  drop_path=cfg.drop_path[j], eps=cfg.eps, act=cfg.act, **dense)
        for j in range(cfg.depth)
    ])
    self.downsample = GroupingBlock(cfg, **dense) if cfg.groups else None
    if cfg.num_prev_group_token > 0 and cfg.num_group_token > 0:
      self.group_projector = group_projector(dim, cfg.num_prev_group_token, cfg.num_group_token,
                                             eps=cfg.eps, act=cfg.act, **dense)
    else:
      self.group_projector = None
    self.remat = remat

  def __call__(self, x: jax.Array, prev_group_token: jax.Array | None = None, *, train: bool = False,
               rngs: nnx.Rngs | None = None):
    """Runs the stage.

    Args:
      x: [B, L, C] image (or segment) tokens.
      prev_group_token: [B, S_prev, C] the previous stage's group tokens after its blocks.
    Returns:
      x: [B, S_out, C] segments (or [B, L, C] when the stage does not group),
      group_token: [B, S_in, C] this stage's group tokens after its blocks (or None),
      maps: assignment maps dict (or None).
    """
    b = x.shape[0]
    group_token = None
    if self.group_token is not None:
      group_token = jnp.broadcast_to(self.group_token.get_value().astype(x.dtype),
                                     (b,) + self.group_token.get_value().shape[1:])
      if self.group_projector is not None:
        norm, mixer = self.group_projector
        group_token = group_token + mixer(norm(prev_group_token)).astype(x.dtype)
      x = jnp.concatenate([x, group_token], axis=1)  # group tokens after the image tokens
    for block in self.blocks:
      x = block(x, train=train, rngs=rngs, remat=self.remat)
    if self.group_token is not None:
      x, group_token = x[:, :-self.num_group_token], x[:, -self.num_group_token:]
    maps = None
    if self.downsample is not None:
      x, maps = self.downsample(x, group_token, train=train, rngs=rngs)
    return x, group_token, maps
