"""The paper's Table 4 baselines as drop-in models for the segmentation code.

A plain ViT (a ``GroupViT`` configured with one stage and no group tokens) trained with the
contrastive loss segments pixel-wise as it is: ``dense.window_predict`` treats each patch as a
group. ``KMeansGrouping`` instead groups its patch tokens with K-means and classifies each
cluster's mean token, like the paper's "ViT + K-means" row.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from groupvit_jax.models.groupvit import GroupViT, l2_normalize


def kmeans(x: jax.Array, k: int, iters: int = 10) -> jax.Array:
  """Cosine K-means, deterministic (centres start at evenly spaced tokens).

  Args:
    x: [B, L, C] tokens.
  Returns:
    int32 [B, L] cluster index per token.
  """
  z = l2_normalize(x)
  b, l, _ = z.shape
  init = jnp.linspace(0, l - 1, k).round().astype(jnp.int32)
  centres = z[:, init]  # [B, K, C]

  def step(centres, _):
    assign = jnp.argmax(jnp.einsum("blc,bkc->blk", z, centres), axis=-1)
    onehot = jax.nn.one_hot(assign, k, dtype=z.dtype)  # [B, L, K]
    sums = jnp.einsum("blk,blc->bkc", onehot, z)
    counts = onehot.sum(axis=1)[..., None]
    new = jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), centres)  # keep empty ones
    return l2_normalize(new), None

  centres, _ = jax.lax.scan(step, centres, None, length=iters)
  return jnp.argmax(jnp.einsum("blc,bkc->blk", z, centres), axis=-1).astype(jnp.int32)


class KMeansGrouping(nnx.Module):
  """A plain ViT whose final patch tokens are grouped into ``k`` K-means clusters."""

  def __init__(self, model: GroupViT, k: int = 8, iters: int = 10):
    if model.config.vision.num_stages != 1 or model.config.vision.num_group_tokens[0]:
      raise ValueError("KMeansGrouping expects a plain ViT (one stage, no group tokens)")
    self.model = model
    self.config = model.config
    self.k = k
    self.iters = iters

  def encode_image(self, x: jax.Array, *, train: bool = False, rngs=None) -> dict:
    """Like ``GroupViT.encode_image``; ``soft``/``hard`` hold the one-hot clustering [B, K, L]
    and ``tokens`` the clusters' mean tokens [B, K, C]."""
    enc = dict(self.model.encode_image(x, train=train, rngs=rngs))
    tokens = enc["tokens"]
    onehot = jnp.swapaxes(jax.nn.one_hot(kmeans(tokens, self.k, self.iters), self.k,
                                         dtype=jnp.float32), 1, 2)  # [B, K, L]
    counts = jnp.maximum(onehot.sum(-1, keepdims=True), 1.0)
    enc["tokens"] = jnp.einsum("bkl,blc->bkc", onehot, tokens.astype(jnp.float32)) / counts
    enc["soft"], enc["hard"] = (onehot,), (onehot,)
    return enc

  def project_groups(self, tokens: jax.Array) -> jax.Array:
    return self.model.project_groups(tokens)

  def scale(self) -> jax.Array:
    return self.model.scale()

  def encode_text(self, input_ids: jax.Array, *, train: bool = False) -> jax.Array:
    return self.model.encode_text(input_ids, train=train)

  def get_text_features(self, input_ids):
    return self.model.get_text_features(input_ids)
