"""Straight-through Gumbel assignment of image tokens to groups (official ``AssignAttention``).

Every image token distributes over the groups: softmax and argmax run over the **group axis**
(-2 of ``[B, S, L]``); the hard one-hot keeps the soft gradient (straight-through); each group then
averages its tokens with denominator ``count + assign_eps`` (spec 1.6).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from groupvit_jax.models.layers import Dtype, linear, normal
from groupvit_jax.sharding import EMBED, HEADS


def hard_softmax(logits: jax.Array, axis: int) -> jax.Array:
  """One-hot of ``argmax(softmax(logits))`` along ``axis`` with the softmax's gradient."""
  y_soft = jax.nn.softmax(logits, axis=axis)
  y_hard = jax.nn.one_hot(jnp.argmax(y_soft, axis=axis), logits.shape[axis], axis=axis,
                          dtype=y_soft.dtype)
  return y_hard - jax.lax.stop_gradient(y_soft) + y_soft


def gumbel_softmax(key: jax.Array, logits: jax.Array, axis: int, *, tau: float = 1.0,
                   hard: bool = True) -> jax.Array:
  """Gumbel-softmax along ``axis``; ``hard`` gives the straight-through one-hot."""
  gumbels = jax.random.gumbel(key, logits.shape, jnp.float32)
  y = (logits + gumbels) / tau
  return hard_softmax(y, axis) if hard else jax.nn.softmax(y, axis=axis)


class AssignAttention(nnx.Module):
  """Single-head assignment attention from group queries to image tokens.

  Attributes follow the official module: ``q_proj``, ``k_proj``, ``v_proj``, ``proj``.
  """

  def __init__(self, dim: int, *, hard: bool = True, gumbel: bool = True, gumbel_tau: float = 1.0,
               assign_eps: float = 1.0, qk_init_std: float = 0.02, dtype: Dtype,
               param_dtype: Dtype, rngs: nnx.Rngs):
    kw = dict(kernel_init=normal(0.02), bias_init=nnx.initializers.zeros, dtype=dtype,
              param_dtype=param_dtype, rngs=rngs)
    qk = dict(kw, kernel_init=normal(qk_init_std))
    self.q_proj = linear(dim, dim, (EMBED, HEADS), **qk)
    self.k_proj = linear(dim, dim, (EMBED, HEADS), **qk)
    self.v_proj = linear(dim, dim, (EMBED, HEADS), **kw)
    self.proj = linear(dim, dim, (HEADS, EMBED), **kw)
    self.scale = dim**-0.5
    self.hard = hard
    self.gumbel = gumbel
    self.gumbel_tau = gumbel_tau
    self.assign_eps = assign_eps

  def __call__(self, query: jax.Array, key: jax.Array, *, train: bool = False,
               rngs: nnx.Rngs | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Assigns image tokens to groups.

    Args:
      query: [B, S, C] projected group tokens.
      key: [B, L, C] normalised image tokens.
    Returns:
      out: [B, S, C] the assigned (averaged, projected) tokens per group.
      maps: ``soft`` [B, S, L] softmax over groups (no noise); ``hard`` [B, S, L] the assignment
        used in the forward before renormalisation (one-hot over S when ``hard``).
    """
    q = self.q_proj(query)
    k = self.k_proj(key)
    v = self.v_proj(key)
    raw = jnp.einsum("bsc,blc->bsl", q, k, preferred_element_type=jnp.float32) * self.scale
    soft = jax.nn.softmax(raw, axis=-2)
    if self.gumbel and train:
      if rngs is None:
        raise ValueError("gumbel assignment in training needs rngs with a 'gumbel' stream")
      attn = gumbel_softmax(rngs.gumbel(), raw, axis=-2, tau=self.gumbel_tau, hard=self.hard)
    elif self.hard:
      attn = hard_softmax(raw, axis=-2)
    else:
      attn = soft
    assign = attn
    attn = attn / (attn.sum(axis=-1, keepdims=True) + self.assign_eps)
    out = jnp.einsum("bsl,blc->bsc", attn.astype(v.dtype), v,
                     preferred_element_type=jnp.float32).astype(v.dtype)
    out = self.proj(out)
    return out, {"soft": soft, "hard": jax.lax.stop_gradient(assign)}
