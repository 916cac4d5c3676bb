"""A model's variables as a flat ``{'a/b/kernel': array}`` dict, and loading one back with checks."""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from groupvit_jax import runtime_cache
from groupvit_jax.model_config import GroupViTConfig
from groupvit_jax.models.groupvit import GroupViT


class CheckpointMismatchError(ValueError):
  """Raised when a checkpoint does not fit the model; the message lists every problem."""

  def __init__(self, source: str, missing=(), unexpected=(), mismatched=()):
    lines = [f"checkpoint {source} does not match the model:"]
    if missing:
      lines.append(f"  missing keys ({len(missing)}): " + ", ".join(missing))
    if unexpected:
      lines.append(f"  unexpected keys ({len(unexpected)}): " + ", ".join(unexpected))
    for key, got, want in mismatched:
      lines.append(f"  shape mismatch: {key}: checkpoint {got}, model {want}")
    super().__init__("\n".join(lines))
    self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)


def _key(path) -> str:
  return "/".join(str(p) for p in path)


def flatten_tree(tree: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
  """Nested dicts of arrays -> ``{'a/b/kernel': array}``; an ``nnx.Variable`` saved as
  ``{'value': array}`` (training checkpoints) flattens to its parent's key."""
  out = {}
  for key, value in tree.items():
    if key == "value" and not isinstance(value, Mapping):
      out[prefix] = np.asarray(value)
      continue
    name = f"{prefix}/{key}" if prefix else str(key)
    if isinstance(value, Mapping):
      out.update(flatten_tree(value, name))
    else:
      out[name] = np.asarray(value)
  return out


def flat_variables(model: nnx.Module) -> dict[str, nnx.Variable]:
  return {_key(p): v for p, v in nnx.to_flat_state(nnx.state(model))}


def to_flat(model: nnx.Module) -> dict[str, np.ndarray]:
  """Every variable (params and BatchNorm statistics) as numpy, keyed by '/'-joined path."""
  return {k: np.asarray(v.get_value()) for k, v in flat_variables(model).items()}


def expected_shapes(model: nnx.Module) -> dict[str, tuple]:
  return {k: tuple(v.get_value().shape) for k, v in flat_variables(model).items()}


def abstract_model(config: GroupViTConfig) -> GroupViT:
  """The model with shape-only variables (no random init cost). Tracing the constructor takes
  1-2 s for the released size on 2 cores, so with the runtime caches on (the command line, the
  notebook) the structure is kept on disk per configuration and model code, and read back in
  ~0.05 s."""
  cache_dir = runtime_cache.structure_cache_dir()
  key = runtime_cache.structure_key(config) if cache_dir else None
  if key:
    kept = runtime_cache.load_structure(key, cache_dir)
    if kept is not None:
      return nnx.merge(*kept)
  model = nnx.eval_shape(lambda: GroupViT(config, rngs=nnx.Rngs(0)))
  if key:
    runtime_cache.save_structure(key, cache_dir, *nnx.split(model))
  return model


def fill(model: nnx.Module, flat: Mapping[str, np.ndarray], source: str,
         unexpected=()) -> nnx.Module:
  """Sets every variable of ``model`` from ``flat``; lists all missing/mismatched keys at once."""
  variables = flat_variables(model)
  missing = sorted(k for k in variables if k not in flat)
  mismatched = [(k, tuple(np.shape(flat[k])), tuple(v.get_value().shape))
                for k, v in variables.items()
                if k in flat and tuple(np.shape(flat[k])) != tuple(v.get_value().shape)]
  extra = sorted(set(unexpected) | {k for k in flat if k not in variables})
  if missing or mismatched or extra:
    raise CheckpointMismatchError(source, missing, extra, mismatched)
  for k, var in variables.items():
    var.set_value(jnp.asarray(flat[k], dtype=var.get_value().dtype))
  return model
