"""Grouping stages: ``GroupingBlock`` (token mixer, pre-assignment cross-attention, assignment,
channel MLP) and ``GroupingLayer`` (group tokens appended after the image tokens, ViT blocks, then
grouping). Spec sections 1.4 and 1.5.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from groupvit_jax import sharding as shd
from groupvit_jax.models.assign import AssignAttention
from groupvit_jax.models.layers import AttnBlock, CrossAttnBlock, Dtype, LayerNorm, MixerMlp, Mlp
from groupvit_jax.sharding import EMBED, GROUPS


class GroupingBlock(nnx.Module):
  """Merges L image tokens into S_out segments guided by S_in group tokens (key ``downsample``)."""

  def __init__(self, dim: int, num_heads: int, num_group_token: int, num_output_group: int, *,
               hard: bool = True, gumbel: bool = True, assign_eps: float = 1.0,
               assign_qk_init_std: float = 0.02, group_token_residual: bool = True,
               assign_mlp_ratio: tuple[float, float] = (0.5, 4.0), block_mlp_ratio: float = 4.0,
               eps: float = 1e-5, act: str = "gelu", dtype: Dtype, param_dtype: Dtype,
               rngs: nnx.Rngs):
    norm = dict(eps=eps, dtype=dtype, param_dtype=param_dtype)
    dense = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    tokens_dim, channels_dim = int(assign_mlp_ratio[0] * dim), int(assign_mlp_ratio[1] * dim)
    self.norm_tokens = LayerNorm(dim, **norm)
    self.mlp_inter = MixerMlp(num_group_token, tokens_dim, num_output_group, init_std=0.02,
                              act=act, **dense)
    self.norm_post_tokens = LayerNorm(dim, **norm)
    self.norm_x = LayerNorm(dim, **norm)
    # The reference hard-codes 4.0 here, transformers uses intermediate_size: equal in every
    # released config, and block_mlp_ratio covers both.
    self.pre_assign_attn = CrossAttnBlock(dim, num_heads, mlp_ratio=block_mlp_ratio, eps=eps,
                                          act=act, **dense)
    self.assign = AssignAttention(dim, hard=hard, gumbel=gumbel, assign_eps=assign_eps,
                                  qk_init_std=assign_qk_init_std, **dense)
    self.group_token_residual = group_token_residual
    self.norm_new_x = LayerNorm(dim, **norm)
    self.mlp_channels = Mlp(dim, channels_dim, dim, act=act, init_std=(0.02, 0.02), **dense)

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
    if self.group_token_residual:  # the reference (see VisionConfig.group_token_residual)
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

  def __init__(self, dim: int, *, depth: int, num_heads: int, num_group_token: int,
               num_output_group: int | None, num_prev_group_token: int, drop_path: list[float],
               mlp_ratio: float = 4.0, qkv_bias: bool = True, hard: bool = True,
               gumbel: bool = True, assign_eps: float = 1.0, assign_qk_init_std: float = 0.02,
               group_token_residual: bool = True, assign_mlp_ratio=(0.5, 4.0), eps: float = 1e-5,
               act: str = "gelu", remat: bool = False, dtype: Dtype, param_dtype: Dtype,
               rngs: nnx.Rngs):
    dense = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_group_token = num_group_token
    if num_group_token > 0:
      # Stages fed by a group projector start from zeros (spec 1.9), others from N(0, 0.02).
      init = jnp.zeros if num_prev_group_token > 0 else (
          lambda shape, dtype: 0.02 * jax.random.normal(rngs.params(), shape, dtype))
      self.group_token = shd.param(init((1, num_group_token, dim), param_dtype), None, GROUPS, EMBED)
    else:
      self.group_token = None
    self.blocks = nnx.List([
        AttnBlock(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=drop_path[j],
                  eps=eps, act=act, **dense) for j in range(depth)
    ])
    if num_group_token > 0 and num_output_group:
      self.downsample = GroupingBlock(dim, num_heads, num_group_token, num_output_group, hard=hard,
                                      gumbel=hard and gumbel, assign_eps=assign_eps,
                                      assign_qk_init_std=assign_qk_init_std,
                                      group_token_residual=group_token_residual,
                                      assign_mlp_ratio=assign_mlp_ratio, block_mlp_ratio=mlp_ratio,
                                      eps=eps, act=act, **dense)
    else:
      self.downsample = None
    if num_prev_group_token > 0 and num_group_token > 0:
      self.group_projector = group_projector(dim, num_prev_group_token, num_group_token, eps=eps,
                                             act=act, **dense)
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
