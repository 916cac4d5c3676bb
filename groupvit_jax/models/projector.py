"""Projection head (official ``ProjectMLP``): ``Linear -> BatchNorm -> ReLU`` x (n-1), ``Linear``.

The official head uses Conv1d(k=1) on ``[B, C, L]``; a Linear per token is the same map. Children
keep the official ``nn.Sequential`` indices: ``linear_hidden.{3i}`` Linear, ``.{3i+1}`` BatchNorm,
``.{3i+2}`` ReLU (no parameters).
"""

from __future__ import annotations

import jax
from flax import nnx

from groupvit_jax.models.layers import BatchNorm, Dtype, linear
from groupvit_jax.sharding import EMBED, MLP


class ReLU(nnx.Module):
  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.relu(x)


class ProjectMLP(nnx.Module):
  """[..., in_dim] -> [..., out_dim]; BatchNorm statistics over every leading axis."""

  def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, *, num_layers: int = 2,
               bn_momentum: float = 0.9, bn_eps: float = 1e-5, dtype: Dtype, param_dtype: Dtype,
               rngs: nnx.Rngs):
    hidden = []
    dim = in_dim
    for _ in range(num_layers - 1):
      hidden += [
          linear(dim, hidden_dim, (EMBED, MLP), dtype=dtype, param_dtype=param_dtype, rngs=rngs),
          BatchNorm(hidden_dim, momentum=bn_momentum, eps=bn_eps, dtype=dtype,
                    param_dtype=param_dtype),
          ReLU(),
      ]
      dim = hidden_dim
    self.linear_hidden = nnx.List(hidden)
    self.linear_out = linear(dim, out_dim, (MLP, EMBED), dtype=dtype, param_dtype=param_dtype,
                             rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    for layer in self.linear_hidden:
      x = layer(x, train=train) if isinstance(layer, BatchNorm) else layer(x)
    return self.linear_out(x)
