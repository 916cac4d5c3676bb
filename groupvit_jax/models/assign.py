"""Straight-through Gumbel assignment of image tokens to groups (official ``AssignAttention``).

Every image token distributes over the groups: softmax and argmax run over the **group axis**
(-2 of ``[B, S, L]``); the hard one-hot keeps the soft gradient (straight-through); each group then
averages its tokens with denominator ``count + assign_eps`` (spec 1.6).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

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


def _gumbel_straight_through(logits: jax.Array, key: jax.Array | None) -> jax.Array:
  return gumbel_softmax(key, logits, axis=-2, tau=1.0, hard=True)


def _hard_argmax(logits: jax.Array, key: jax.Array | None) -> jax.Array:
  del key
  return hard_softmax(logits, axis=-2)


def _soft(logits: jax.Array, key: jax.Array | None) -> jax.Array:
  del key
  return jax.nn.softmax(logits, axis=-2)


@dataclasses.dataclass(frozen=True)
class AssignRule:
  """How the [B, S, L] logits become the assignment: ``train`` / ``infer`` map (logits, Gumbel
  key or None) to [B, S, L] weights over the group axis; ``noise``: ``train`` needs a key."""

  train: Callable[[jax.Array, jax.Array | None], jax.Array]
  infer: Callable[[jax.Array, jax.Array | None], jax.Array]
  noise: bool


# The assignment rules, by ``VisionConfig.assign_rule``. A new rule is one entry here.
ASSIGN_RULES = {
    # The reference: Gumbel noise in training, straight-through one-hot; argmax at inference.
    "gumbel_straight_through": AssignRule(_gumbel_straight_through, _hard_argmax, noise=True),
    # Straight-through one-hot of the plain argmax, in training too (``gumbel=False``).
    "hard_argmax": AssignRule(_hard_argmax, _hard_argmax, noise=False),
    # The softmax itself (``hard_assignment=False``, the paper's soft-assignment ablation).
    "soft": AssignRule(_soft, _soft, noise=False),
}


class AssignAttention(nnx.Module):
  """Single-head assignment attention from group queries to image tokens.

  Attributes follow the official module: ``q_proj``, ``k_proj``, ``v_proj``, ``proj``.
  """

  def __init__(self, dim: int, *, rule: str = "gumbel_straight_through", assign_eps: float = 1.0,
               qk_init_std: float = 0.02, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs):
    if rule not in ASSIGN_RULES:
      raise ValueError(f"unknown assignment rule {rule!r}; expected one of {sorted(ASSIGN_RULES)}")
    kw = dict(kernel_init=normal(0.02), bias_init=nnx.initializers.zeros, dtype=dtype,
              param_dtype=param_dtype, rngs=rngs)
    qk = dict(kw, kernel_init=normal(qk_init_std))
    self.q_proj = linear(dim, dim, (EMBED, HEADS), **qk)
    self.k_proj = linear(dim, dim, (EMBED, HEADS), **qk)
    self.v_proj = linear(dim, dim, (EMBED, HEADS), **kw)
    self.proj = linear(dim, dim, (HEADS, EMBED), **kw)
    self.scale = dim**-0.5
    self.rule = rule
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
        used in the forward before renormalisation (one-hot over S unless the rule is soft).
    """
    q = self.q_proj(query)
    k = self.k_proj(key)
    v = self.v_proj(key)
    raw = jnp.einsum("bsc,blc->bsl", q, k, preferred_element_type=jnp.float32) * self.scale
    soft = jax.nn.softmax(raw, axis=-2)
    rule = ASSIGN_RULES[self.rule]
    if train and rule.noise:
      if rngs is None:
        raise ValueError("gumbel assignment in training needs rngs with a 'gumbel' stream")
      attn = rule.train(raw, rngs.gumbel())
    else:
      attn = (rule.train if train else rule.infer)(raw, None)
    assign = attn
    attn = attn / (attn.sum(axis=-1, keepdims=True) + self.assign_eps)
    out = jnp.einsum("bsl,blc->bsc", attn.astype(v.dtype), v,
                     preferred_element_type=jnp.float32).astype(v.dtype)
    out = self.proj(out)
    return out, {"soft": soft, "hard": jax.lax.stop_gradient(assign)}
