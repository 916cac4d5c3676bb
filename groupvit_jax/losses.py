"""GroupViT's training losses over the global batch (spec section 3).

Inside ``jax.jit`` with batch-sharded inputs, ``zi @ zt.T`` is the all-gathered similarity of the
reference (``dist_collect`` + DDP averaging), so these functions are written for the global batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from groupvit_jax.models.groupvit import l2_normalize


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """``mean_rows(sum(-targets * log_softmax(logits)))``; logits, targets: [N, M]."""
  return jnp.mean(jnp.sum(-targets * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean over rows of ``-log_softmax(logits)[row, labels[row]]``; logits [N, M], labels [N]."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def contrastive_loss(image_x: jax.Array, text_x: jax.Array, scale: jax.Array) -> jax.Array:
  """Symmetric image-text InfoNCE (spec 3.1).

  Args:
    image_x: [B, D] projected image embeddings (normalised here).
    text_x: [B, D] projected caption embeddings.
    scale: scalar ``min(exp(logit_scale), 100)``.
  Returns:
    ``0.5 * (CE(zi zt^T s) + CE(zt zi^T s))`` with targets on the diagonal.
  """
  zi = l2_normalize(image_x)
  zt = l2_normalize(text_x)
  logits = scale * (zi @ zt.T)
  labels = jnp.arange(zi.shape[0])
  return 0.5 * (cross_entropy(logits, labels) + cross_entropy(logits.T, labels))


def multi_label_contrastive_loss(image_x: jax.Array, prompt_x: jax.Array,
                                 scale: jax.Array) -> jax.Array:
  """Multi-label contrastive loss with K prompts per image (spec 3.2).

  Args:
    image_x: [B, D] projected image embeddings.
    prompt_x: [B, K, D] projected prompt embeddings (row order b-major, k-minor).
    scale: scalar ``min(exp(multi_label_logit_scale), 100)``.
  Returns:
    ``0.5 * (img->txt + txt->img)`` soft cross-entropies: an image's K own prompts each get
    target 1/K; a prompt's own image gets 1. Identical prompts of other samples stay negatives.
  """
  b, k, _ = prompt_x.shape
  zi = l2_normalize(image_x)  # [B, D]
  zt = l2_normalize(prompt_x).reshape(b * k, -1)  # [B*K, D]
  logits_per_img = scale * (zi @ zt.T)  # [B, B*K]
  owner = jnp.repeat(jnp.arange(b), k)  # image index of every prompt row
  targets_img = (owner[None, :] == jnp.arange(b)[:, None]).astype(jnp.float32) / k
  loss_img = soft_cross_entropy(logits_per_img, targets_img)
  loss_txt = cross_entropy(logits_per_img.T, owner)  # [B*K, B], one-hot own image
  return 0.5 * (loss_img + loss_txt)
