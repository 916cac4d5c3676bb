"""Building blocks shared by the image and text encoders.

Attribute names follow the official GroupViT / CLIP modules (``norm1``, ``attn.qkv``, ``mlp.fc1``,
...), so a checkpoint converts with a name table. Norms and softmaxes compute in float32 whatever
the compute ``dtype``.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from groupvit_jax import sharding as shd
from groupvit_jax.sharding import EMBED, GROUPS, HEADS, MLP, TOKEN_MLP

Dtype = jnp.dtype | type

# ---- initialisers (spec 1.9 / 2.1) -----------------------------------------------------------------


def normal(std: float):
  return nnx.initializers.normal(stddev=std)


def torch_default_kernel():
  """torch ``nn.Linear``/``Conv`` default: kaiming_uniform(a=sqrt(5)) = U(±1/sqrt(fan_in))."""
  return nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    # torch nn.GELU, x/2 (1 + erf(x/sqrt 2)), in jax.nn.gelu's erfc form: lax.erf would be
    # cheaper on XLA:CPU but serialises as a composite op the pinned TensorFlow cannot load.
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}

def mlp_hidden(dim: int, ratio: float) -> int:
  """Hidden width of a channel MLP (round, so a ratio read from a config's sizes is exact)."""
  return int(round(dim * ratio))


# ---- layers ----------------------------------------------------------------------------------------


def f32_accumulating_dot_general(lhs, rhs, dimension_numbers, precision=None,
                                 preferred_element_type=None, **kwargs):
  """``lax.dot_general`` for ``nnx.Linear``: float32 accumulation, result in the inputs' dtype,
  and [..., in] activations flattened to one 2-D matmul.

  - For bfloat16 inputs, float32 accumulation runs about twice as fast on XLA:CPU as a
    bfloat16-output dot (10 ms vs 21 ms for a [3392,384]x[384,1536] matmul on AVX512-BF16).
  - A [B, N, in] @ [in, out] dot whose weight gradient contracts over two axes (B, N) is slower
    in the backward pass than the same dot on [B*N, in] (XLA:CPU, measured 28 vs 21 ms).
  """
  del kwargs
  (lc, rc), (lb, rb) = dimension_numbers
  out_dtype = preferred_element_type or jnp.result_type(lhs, rhs)
  if (lhs.ndim > 2 and rhs.ndim == 2 and not lb and not rb and tuple(lc) == (lhs.ndim - 1,)
      and tuple(rc) == (0,)):
    lead = lhs.shape[:-1]
    out = jax.lax.dot_general(lhs.reshape(-1, lhs.shape[-1]), rhs, (((1,), (0,)), ((), ())),
                              precision=precision, preferred_element_type=jnp.float32)
    return out.reshape(lead + (rhs.shape[1],)).astype(out_dtype)
  out = jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                            preferred_element_type=jnp.float32)
  return out.astype(out_dtype)


def linear(in_dim: int, out_dim: int, names: tuple[str | None, str | None], *, bias: bool = True,
           kernel_init=None, bias_init=None, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs) -> nnx.Linear:
  """``nnx.Linear`` with logical axis annotations ``names`` = (in, out); torch-default init."""
  kernel_init = kernel_init or torch_default_kernel()
  bias_init = bias_init or torch_default_bias(in_dim)
  return nnx.Linear(
      in_dim, out_dim, use_bias=bias, dtype=dtype, param_dtype=param_dtype,
      dot_general=f32_accumulating_dot_general,
      kernel_init=shd.partitioned(kernel_init, *names),
      bias_init=shd.partitioned(bias_init, names[1]), rngs=rngs)


class LayerNorm(nnx.Module):
  """torch ``nn.LayerNorm`` (affine, biased variance); statistics in float32, output in ``dtype``."""

  def __init__(self, dim: int, *, eps: float = 1e-5, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32, axis_name: str = EMBED):
    self.scale = shd.param(jnp.ones((dim,), param_dtype), axis_name)
    self.bias = shd.param(jnp.zeros((dim,), param_dtype), axis_name)
    self.eps = eps
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [..., D] -> [..., D]."""
    xf = x.astype(jnp.float32)
    mean = xf.mean(-1, keepdims=True)
    var = jnp.square(xf - mean).mean(-1, keepdims=True)
    y = (xf - mean) * jax.lax.rsqrt(var + self.eps)
    y = y * self.scale.get_value().astype(jnp.float32) + self.bias.get_value().astype(jnp.float32)
    return y.astype(self.dtype)


class BatchNorm(nnx.Module):
  """torch ``nn.BatchNorm1d`` over the last axis: normalises with the biased batch variance and
  tracks the *unbiased* one in ``var`` (torch semantics). ``momentum`` uses the Flax convention
  (0.9 == torch 0.1). Under ``jit`` with a sharded batch the statistics are global (SyncBN)."""

  def __init__(self, dim: int, *, momentum: float = 0.9, eps: float = 1e-5,
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32):
    self.scale = shd.param(jnp.ones((dim,), param_dtype), MLP)
    self.bias = shd.param(jnp.zeros((dim,), param_dtype), MLP)
    self.mean = nnx.BatchStat(jnp.zeros((dim,), jnp.float32), sharding=(MLP,), eager_sharding=False)
    self.var = nnx.BatchStat(jnp.ones((dim,), jnp.float32), sharding=(MLP,), eager_sharding=False)
    self.momentum = momentum
    self.eps = eps
    self.dtype = dtype

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """x: [..., D]; statistics over every axis but the last."""
    xf = x.astype(jnp.float32)
    if train:
      axes = tuple(range(x.ndim - 1))
      mean = xf.mean(axes)
      var = jnp.square(xf - mean).mean(axes)
      n = math.prod(x.shape[:-1])
      unbiased = var * (n / max(n - 1, 1))
      m = self.momentum
      self.mean.set_value(m * self.mean.get_value() + (1 - m) * jax.lax.stop_gradient(mean))
      self.var.set_value(m * self.var.get_value() + (1 - m) * jax.lax.stop_gradient(unbiased))
    else:
      mean, var = self.mean.get_value(), self.var.get_value()
    y = (xf - mean) * jax.lax.rsqrt(var + self.eps)
    y = y * self.scale.get_value().astype(jnp.float32) + self.bias.get_value().astype(jnp.float32)
    return y.astype(self.dtype)


class Mlp(nnx.Module):
  """``fc1 -> act -> fc2`` over the channel axis (timm ``Mlp`` / CLIP ``c_fc``,``c_proj``)."""

  def __init__(self, in_dim: int, hidden: int, out_dim: int, *, act: str = "gelu",
               names=(EMBED, MLP, EMBED), init_std: tuple[float | None, float | None] = (None, None),
               dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs):
    k1 = normal(init_std[0]) if init_std[0] else None
    k2 = normal(init_std[1]) if init_std[1] else None
    z = nnx.initializers.zeros if init_std[0] else None
    self.fc1 = linear(in_dim, hidden, names[:2], kernel_init=k1, bias_init=z, dtype=dtype,
                      param_dtype=param_dtype, rngs=rngs)
    self.fc2 = linear(hidden, out_dim, names[1:], kernel_init=k2, bias_init=z, dtype=dtype,
                      param_dtype=param_dtype, rngs=rngs)
    self.act = act

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [..., in] -> [..., out]."""
    return self.fc2(ACTIVATIONS[self.act](self.fc1(x)))


class MixerMlp(Mlp):
  """``Mlp`` over the token axis: [B, S_in, C] -> [B, S_out, C] (official ``MixerMlp``)."""

  def __init__(self, in_tokens: int, hidden: int, out_tokens: int, *, init_std: float | None,
               act: str = "gelu", dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs):
    super().__init__(in_tokens, hidden, out_tokens, act=act, names=(GROUPS, TOKEN_MLP, GROUPS),
                     init_std=(init_std, init_std), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.swapaxes(super().__call__(jnp.swapaxes(x, 1, 2)), 1, 2)


def multi_head_attention(q: jax.Array, k: jax.Array, v: jax.Array, num_heads: int,
                         mask: jax.Array | None = None) -> jax.Array:
  """Scaled dot-product attention, softmax over keys in float32.

  Args:
    q: [B, Nq, D]; k, v: [B, Nk, D], heads contiguous inside D (head-major).
    mask: optional boolean [Nq, Nk], True where attention is allowed.
  Returns:
    [B, Nq, D] with heads merged head-major.
  """
  b, nq, d = q.shape
  nk = k.shape[1]
  hd = d // num_heads
  # Head-major [B, heads, N, hd] operands and the scale on q (as transformers does), not on the
  # [B, heads, Nq, Nk] logits: XLA:CPU then runs both attention matmuls and the softmax in one
  # library fusion without a logits-sized broadcast of the scale (forward 0.45 -> 0.34 s for the
  # released model at batch 8, experiments/benchmarks/results/profile_cpu.md).
  split = lambda t, n: t.reshape(b, n, num_heads, hd).transpose(0, 2, 1, 3)  # noqa: E731
  q = split(q * jnp.asarray(hd**-0.5, q.dtype), nq)
  k, v = split(k, nk), split(v, nk)
  logits = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  out = jnp.einsum("bhqk,bhkd->bhqd", probs, v, preferred_element_type=jnp.float32).astype(v.dtype)
  return out.transpose(0, 2, 1, 3).reshape(b, nq, d)


class Attention(nnx.Module):
  """Official ``Attention``: fused ``qkv`` for self-attention (``qkv_fuse=True``) or separate
  ``q_proj``/``k_proj``/``v_proj`` for cross-attention; output ``proj``."""

  def __init__(self, dim: int, num_heads: int, *, qkv_fuse: bool, qkv_bias: bool = True,
               init_std: float | None = 0.02, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs):
    kw = dict(kernel_init=normal(init_std) if init_std else None,
              bias_init=nnx.initializers.zeros if init_std else None,
              dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if qkv_fuse:
      self.qkv = linear(dim, 3 * dim, (EMBED, HEADS), bias=qkv_bias, **kw)
    else:
      self.q_proj = linear(dim, dim, (EMBED, HEADS), bias=qkv_bias, **kw)
      self.k_proj = linear(dim, dim, (EMBED, HEADS), bias=qkv_bias, **kw)
      self.v_proj = linear(dim, dim, (EMBED, HEADS), bias=qkv_bias, **kw)
    self.proj = linear(dim, dim, (HEADS, EMBED), **kw)
    self.num_heads = num_heads
    self.qkv_fuse = qkv_fuse

  def __call__(self, query: jax.Array, key: jax.Array | None = None,
               mask: jax.Array | None = None) -> jax.Array:
    """query: [B, Nq, C]; key: [B, Nk, C] (None = self-attention) -> [B, Nq, C]."""
    if self.qkv_fuse:
      q, k, v = jnp.split(self.qkv(query), 3, axis=-1)
    else:
      key = query if key is None else key
      q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(key)
    return self.proj(multi_head_attention(q, k, v, self.num_heads, mask))


def drop_path(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
  """Stochastic depth: drops whole samples of a residual branch, survivors scaled by 1/keep.
  ``key=None`` (eval) is the identity."""
  if key is None or rate == 0.0:
    return x
  keep = 1.0 - rate
  mask = jax.random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(mask, x / keep, jnp.zeros_like(x))


def remat_call(module: nnx.Module, method: str, *args):
  """``getattr(module, method)(*args)`` under ``jax.checkpoint`` (activations recomputed in the
  backward pass). The method must not mutate the module's variables."""
  graphdef, state = nnx.split(module)

  def run(state, *args):
    return getattr(nnx.merge(graphdef, state), method)(*args)

  return jax.checkpoint(run)(state, *args)


class AttnBlock(nnx.Module):
  """Pre-norm ViT block: ``x + DP(attn(norm1 x))``, ``x + DP(mlp(norm2 x))`` (official ``AttnBlock``)."""

  def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, qkv_bias: bool = True,
               drop_path: float = 0.0, eps: float = 1e-5, act: str = "gelu", dtype: Dtype,
               param_dtype: Dtype, rngs: nnx.Rngs):
    norm = dict(eps=eps, dtype=dtype, param_dtype=param_dtype)
    self.norm1 = LayerNorm(dim, **norm)
    self.attn = Attention(dim, num_heads, qkv_fuse=True, qkv_bias=qkv_bias, dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)
    self.norm2 = LayerNorm(dim, **norm)
    self.mlp = Mlp(dim, mlp_hidden(dim, mlp_ratio), dim, act=act, init_std=(0.02, 0.02),
                   dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.drop_path_rate = drop_path

  def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None,
               remat: bool = False) -> jax.Array:
    """x: [B, N, C] -> [B, N, C]. Training with stochastic depth needs ``rngs.drop_path``."""
    key = None
    if train and self.drop_path_rate > 0:
      if rngs is None:
        raise ValueError("drop_path in training needs rngs with a 'drop_path' stream")
      key = rngs.drop_path()
    if remat:
      return remat_call(self, "forward", x, key)
    return self.forward(x, key)

  def forward(self, x: jax.Array, key: jax.Array | None) -> jax.Array:
    k1, k2 = jax.random.split(key) if key is not None else (None, None)
    x = x + drop_path(self.attn(self.norm1(x)), self.drop_path_rate, k1)
    x = x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, k2)
    return shd.constrain(x, (shd.BATCH, shd.LENGTH, EMBED))


class CrossAttnBlock(nnx.Module):
  """Official ``CrossAttnBlock(post_norm=True)``: queries attend to keys, then MLP, then norm."""

  def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, eps: float = 1e-5,
               act: str = "gelu", dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs):
    norm = dict(eps=eps, dtype=dtype, param_dtype=param_dtype)
    self.attn = Attention(dim, num_heads, qkv_fuse=False, dtype=dtype, param_dtype=param_dtype,
                          rngs=rngs)
    self.norm2 = LayerNorm(dim, **norm)
    self.mlp = Mlp(dim, mlp_hidden(dim, mlp_ratio), dim, act=act, init_std=(0.02, 0.02),
                   dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm_post = LayerNorm(dim, **norm)

  def __call__(self, query: jax.Array, key: jax.Array) -> jax.Array:
    """query: [B, S, C], key: [B, L, C] -> [B, S, C]."""
    x = query + self.attn(query, key)
    x = x + self.mlp(self.norm2(x))
    return self.norm_post(x)
