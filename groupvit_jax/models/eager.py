"""Eager calls of a module method run through one cached ``jax.jit`` of the same method.

NNX modules run op by op when called outside ``jit``; for users of the transformers-style API
(``model.get_image_features(x)``) that would be slow. ``jit_when_eager`` splits the module into
``(graphdef, state)`` and calls a ``jax.jit``-compiled function keyed by the graphdef, so repeated
calls with the same shapes reuse one compilation. Inside a trace (the training step, the dense
segmentation function) the method runs directly.
"""

from __future__ import annotations

import functools

import jax
from flax import nnx


def _has_tracer(tree) -> bool:
  return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


@functools.lru_cache(maxsize=64)
def _compiled(graphdef, name: str):

  def run(state, args, kwargs):
    return getattr(nnx.merge(graphdef, state), name)(*args, **kwargs)

  return jax.jit(run)


def jit_when_eager(method):
  """Decorates an eval-only, side-effect-free module method (``self`` must define ``_trace_probe``
  returning one of its arrays)."""
  name = method.__name__

  @functools.wraps(method)
  def wrapper(self, *args, **kwargs):
    if _has_tracer((args, kwargs, self._trace_probe())):
      return method(self, *args, **kwargs)
    graphdef, state = nnx.split(self)
    return _compiled(graphdef, name)(state, args, kwargs)

  return wrapper
