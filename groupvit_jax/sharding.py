"""Logical axis names, their mapping onto a device mesh, and activation constraints.

Every parameter is created with ``nnx.with_partitioning(init, (LOGICAL, ...))`` using the names
below. ``logical_to_spec`` turns those names into a ``PartitionSpec`` for a given mesh with
maxtext-style rules: for each tensor dimension the first rule whose mesh axes are not already used
by another dimension of the same tensor, and that divide the dimension, wins; otherwise the
dimension is replicated. (``nnx.get_named_sharding`` would emit ``P('fsdp', 'fsdp')`` for a kernel
whose two dimensions both map to ``fsdp``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
from flax import nnx
from flax.core import spmd as core_spmd
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

# Parameter dimensions.
EMBED = "embed"  # model width (vision C, text width)
MLP = "mlp"  # hidden width of channel MLPs and projection heads
HEADS = "heads"  # fused attention heads x head_dim (q|k|v or proj input)
VOCAB = "vocab"
SEQ = "seq"  # position-embedding rows
GROUPS = "groups"  # group-token axis (group tokens, token-mixer in/out)
TOKEN_MLP = "token_mlp"  # hidden width of the token-mixing MLPs
PATCH = "patch"  # patch kernel spatial/input-channel dims

# Activation dimensions.
BATCH = "batch"
LENGTH = "length"

Rules = Sequence[tuple[str, Any]]

# Data parallel over ("data", "fsdp"); parameters and optimizer state sharded over "fsdp".
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    (BATCH, ("data", "fsdp")),
    (EMBED, "fsdp"),
    (MLP, "fsdp"),
    (HEADS, "fsdp"),
    (VOCAB, "fsdp"),
    (TOKEN_MLP, "fsdp"),
    (SEQ, None),
    (GROUPS, None),
    (PATCH, None),
    (LENGTH, None),
)


def make_mesh(mesh_axes: Sequence[tuple[str, int]], devices=None) -> Mesh:
  """A mesh from ``(("data", -1), ("fsdp", 1), ...)``; one size may be -1 (all remaining devices).

  Axis types are ``Auto`` (GSPMD propagation): ``jax.make_mesh`` would default to ``Explicit``.
  """
  devices = list(jax.devices() if devices is None else devices)
  names = tuple(str(n) for n, _ in mesh_axes)
  sizes = [int(s) for _, s in mesh_axes]
  if len(set(names)) != len(names):
    raise ValueError(f"config.mesh: duplicate axis names in {mesh_axes}")
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh: at most one axis may be -1, got {mesh_axes}")
  known = int(np.prod([s for s in sizes if s != -1]))
  if known <= 0 or len(devices) % known:
    raise ValueError(f"config.mesh {mesh_axes}: the fixed axis sizes (product {known}) must divide "
                     f"the {len(devices)} devices")
  sizes = [len(devices) // known if s == -1 else s for s in sizes]
  if int(np.prod(sizes)) != len(devices):
    raise ValueError(f"config.mesh {mesh_axes} resolves to {dict(zip(names, sizes))} = "
                     f"{int(np.prod(sizes))} devices, but {len(devices)} are available")
  return jax.make_mesh(tuple(sizes), names, axis_types=(AxisType.Auto,) * len(names),
                       devices=devices)


def data_mesh(devices=None) -> Mesh:
  """All ``devices`` (default: every device) on one ``data`` axis."""
  return make_mesh((("data", -1),), devices)


def batch_axes(rules: Rules = DEFAULT_RULES) -> tuple[str, ...]:
  """The mesh axes that the ``batch`` rule splits a batch over."""
  axes = next((a for name, a in rules if name == BATCH and a is not None), ())
  return (axes,) if isinstance(axes, str) else tuple(axes)


def data_parallel_size(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> int:
  """How many ways a batch is split on ``mesh``: the product of its ``batch`` axes' sizes."""
  return int(np.prod([mesh.shape[a] for a in batch_axes(rules) if a in mesh.shape]))


def partitioned(init, *names):
  """``init`` annotated with logical axis ``names`` (no eager sharding at creation)."""
  return nnx.with_partitioning(init, tuple(names), eager_sharding=False)


def param(value, *names) -> nnx.Param:
  """A ``nnx.Param`` holding ``value`` annotated with logical axis ``names``."""
  return nnx.Param(value, sharding=tuple(names), eager_sharding=False)


def _mesh_axes_size(mesh: Mesh, axes) -> int:
  size = 1
  for a in axes:
    size *= mesh.shape[a]
  return size


def logical_to_spec(names: Sequence[str | None] | None, shape: Sequence[int], mesh: Mesh,
                    rules: Rules = DEFAULT_RULES) -> PartitionSpec:
  """Resolves logical axis ``names`` of an array of ``shape`` to a PartitionSpec on ``mesh``."""
  if not names:
    return PartitionSpec()
  if len(names) != len(shape):
    raise ValueError(f"logical axes {tuple(names)} do not match shape {tuple(shape)}")
  used: set[str] = set()
  out = []
  for name, dim in zip(names, shape):
    chosen = None
    for rule_name, mesh_axes in rules:
      if rule_name != name or mesh_axes is None:
        continue
      axes = (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)
      axes = tuple(a for a in axes if a in mesh.shape and mesh.shape[a] > 1)
      if not axes or used.intersection(axes):
        continue
      if dim % _mesh_axes_size(mesh, axes):
        continue
      chosen = axes[0] if len(axes) == 1 else axes
      used.update(axes)
      break
    out.append(chosen)
  return PartitionSpec(*out)


def _names_of(var) -> tuple | None:
  meta = var.get_metadata() if hasattr(var, "get_metadata") else {}
  return meta.get("out_sharding") or meta.get("sharding") or meta.get("sharding_names")


def state_shardings(state: nnx.State, mesh: Mesh, rules: Rules = DEFAULT_RULES):
  """NamedShardings for every variable of an (abstract) ``nnx.State``; unannotated → replicated."""

  def one(var):
    value = var.get_value() if hasattr(var, "get_value") else var.value
    spec = logical_to_spec(_names_of(var), value.shape, mesh, rules)
    return var.replace(NamedSharding(mesh, spec))

  return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def state_partition_specs(state: nnx.State, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> dict:
  """``{'a/b/kernel': 'PartitionSpec(...)'}`` for golden tests and logs."""
  shardings = state_shardings(state, mesh, rules)
  flat = nnx.to_flat_state(shardings)
  return {"/".join(map(str, path)): str(var.get_value().spec) for path, var in flat}


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """Constrains an activation's sharding by logical names (no-op outside a mesh/rules context)."""
  rules = core_spmd.get_logical_axis_rules()
  if not rules:
    return x
  mesh = jax.sharding.get_abstract_mesh()
  if mesh is None or mesh.empty:
    return x
  spec = logical_to_spec(names, x.shape, mesh, rules)
  return jax.lax.with_sharding_constraint(x, spec)
