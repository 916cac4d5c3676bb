"""GroupViT image encoder (official ``GroupViT``, key prefix ``img_encoder``). Spec section 1."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from groupvit_jax import sharding as shd
from groupvit_jax.interpolate import resize_hw
from groupvit_jax.model_config import VisionConfig
from groupvit_jax.models.grouping import GroupingLayer
from groupvit_jax.models.layers import Dtype, LayerNorm, torch_default_bias, torch_default_kernel
from groupvit_jax.sharding import EMBED, PATCH, SEQ


class PatchConv(nnx.Module):
  """Conv2d(kernel = stride = patch, no padding) as a reshape + matmul. ``kernel`` [p, p, in, C]
  is the Flax conv layout (torch ``[C, in, p, p]`` transposed); trailing pixels are dropped."""

  def __init__(self, in_chans: int, dim: int, patch: int, *, dtype: Dtype, param_dtype: Dtype,
               rngs: nnx.Rngs):
    fan_in = in_chans * patch * patch
    kinit = shd.partitioned(torch_default_kernel(), PATCH, PATCH, PATCH, EMBED)
    binit = shd.partitioned(torch_default_bias(fan_in), EMBED)
    self.kernel = nnx.Param(kinit(rngs.params(), (patch, patch, in_chans, dim), param_dtype))
    self.bias = nnx.Param(binit(rngs.params(), (dim,), param_dtype))
    self.patch = patch
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, H, W, in] -> [B, H//p, W//p, C]."""
    b, h, w, c = x.shape
    p = self.patch
    hp, wp = h // p, w // p
    x = x[:, :hp * p, :wp * p].astype(self.dtype)
    x = x.reshape(b, hp, p, wp, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, p * p * c)
    kernel = self.kernel.get_value().astype(self.dtype).reshape(p * p * c, -1)
    y = jnp.matmul(x, kernel, preferred_element_type=jnp.float32).astype(self.dtype)
    return y + self.bias.get_value().astype(self.dtype)


class PatchEmbed(nnx.Module):
  """``proj`` (patch conv) then ``norm`` (LayerNorm)."""

  def __init__(self, in_chans: int, dim: int, patch: int, *, eps: float, dtype: Dtype,
               param_dtype: Dtype, rngs: nnx.Rngs):
    self.proj = PatchConv(in_chans, dim, patch, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm = LayerNorm(dim, eps=eps, dtype=dtype, param_dtype=param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, H, W, in] -> [B, Hp, Wp, C]."""
    return self.norm(self.proj(x))


def sincos_2d(grid: int, dim: int) -> np.ndarray:
  """[1, grid*grid, dim] 2-D sine-cosine position table (MAE / big_vision ``posemb_sincos_2d``):
  the first half of the channels encodes the row, the second the column; dim % 4 == 0."""
  if dim % 4:
    raise ValueError(f"sincos2d position embedding needs embed_dim % 4 == 0, got {dim}")
  omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))
  y, x = np.mgrid[:grid, :grid]
  out = [np.einsum("n,d->nd", c.reshape(-1).astype(np.float64), omega) for c in (y, x)]
  table = np.concatenate([np.sin(out[0]), np.cos(out[0]), np.sin(out[1]), np.cos(out[1])], axis=1)
  return table[None].astype(np.float32)


def interpolate_pos_embed(pos_embed: jax.Array, grid: tuple[int, int]) -> jax.Array:
  """[1, g*g, C] -> [1, Hp*Wp, C] with PyTorch bicubic (A=-0.75, clamped taps); as-is if equal."""
  n, c = pos_embed.shape[1:]
  g = int(round(np.sqrt(n)))
  if (g, g) == tuple(grid):
    return pos_embed
  pe = resize_hw(pos_embed.reshape(1, g, g, c), grid, "bicubic")
  return pe.reshape(1, grid[0] * grid[1], c).astype(pos_embed.dtype)


class VisionEncoder(nnx.Module):
  """Patch embedding, learned position embedding, grouping stages, final norm and mean pooling."""

  def __init__(self, cfg: VisionConfig, *, remat: bool = False, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    c = cfg.embed_dim
    eps = cfg.layer_norm_eps
    self.cfg = cfg
    self.dtype = dtype
    self.patch_embed = PatchEmbed(cfg.in_chans, c, cfg.patch_size, eps=eps, dtype=dtype,
                                  param_dtype=param_dtype, rngs=rngs)
    n = cfg.grid_size**2
    init = 0.02 * jax.random.normal(rngs.params(), (1, n, c), param_dtype)
    if cfg.pos_embed_init == "sincos2d":
      init = jnp.asarray(sincos_2d(cfg.grid_size, c), param_dtype)
    self.pos_embed = shd.param(init, None, SEQ, EMBED)
    self.layers = nnx.List([
        GroupingLayer(stage, remat=remat, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        for stage in cfg.stages()])
    self.norm = LayerNorm(c, eps=eps, dtype=jnp.float32, param_dtype=param_dtype)

  def __call__(self, x: jax.Array, *, train: bool = False,
               rngs: nnx.Rngs | None = None) -> dict[str, jax.Array | tuple]:
    """Encodes images.

    Args:
      x: [B, H, W, in_chans] normalised pixels (NHWC).
    Returns:
      ``tokens`` [B, S, C] final segment tokens after ``norm`` (float32),
      ``pooled`` [B, C] their mean,
      ``soft`` / ``hard``: tuples with one [B, S_out, L_in] assignment map per grouping stage
      (stage 0: L_in = Hp*Wp patches in row-major order).
    """
    x = self.patch_embed(x)
    b, hp, wp, c = x.shape
    x = x.reshape(b, hp * wp, c)
    pos = interpolate_pos_embed(self.pos_embed.get_value(), (hp, wp))
    x = shd.constrain(x + pos.astype(x.dtype), (shd.BATCH, shd.LENGTH, EMBED))
    group_token = None
    soft, hard = [], []
    for layer in self.layers:
      x, group_token, maps = layer(x, group_token, train=train, rngs=rngs)
      if maps is not None:
        soft.append(maps["soft"])
        hard.append(maps["hard"])
    tokens = self.norm(x)
    return {"tokens": tokens, "pooled": tokens.mean(axis=1), "soft": tuple(soft),
            "hard": tuple(hard)}
