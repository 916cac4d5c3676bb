"""The train state, the device mesh, and their shardings.

The train state is a plain dict (a pytree Orbax saves and restores as is):
``step`` int32 [] updates applied so far; ``params`` nnx.State of ``nnx.Param``; ``batch_stats``
nnx.State of the projectors' BatchNorm statistics; ``opt_state`` the optax state; ``rng`` uint32
key data of the run's base key. The model's ``graphdef`` and the optimizer stay static.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from groupvit_jax import sharding as shd
from groupvit_jax.model_config import GroupViTConfig
from groupvit_jax.models.groupvit import GroupViT

TrainState = dict[str, Any]


def model_config(config) -> GroupViTConfig:
  """``config.model`` (ml_collections) -> ``GroupViTConfig`` (unknown keys are an error)."""
  return GroupViTConfig.from_dict(config.model.to_dict())


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


def rules_from_config(rules) -> tuple[tuple[str, Any], ...]:
  """``config.sharding_rules`` as a tuple of ``(logical_name, mesh_axes | None)``."""
  out = []
  for rule in rules:
    name, axes = rule
    if isinstance(axes, list):
      axes = tuple(axes)
    out.append((str(name), axes))
  return tuple(out)


def batch_sharding(mesh: Mesh, rules, ndim: int, batch_size: int) -> NamedSharding:
  """Leading (batch) axis split by the ``batch`` rule, the rest replicated."""
  spec = shd.logical_to_spec((shd.BATCH,) + (None,) * (ndim - 1), (batch_size,) + (1,) * (ndim - 1),
                             mesh, rules)
  return NamedSharding(mesh, spec)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def split_model(model: GroupViT):
  """``(graphdef, params, batch_stats)``."""
  return nnx.split(model, nnx.Param, ...)


def abstract_state(cfg: GroupViTConfig, tx: optax.GradientTransformation):
  """``(graphdef, abstract train state)`` without allocating anything."""
  graphdef, params, stats = split_model(nnx.eval_shape(lambda: GroupViT(cfg, rngs=nnx.Rngs(0))))
  opt = jax.eval_shape(tx.init, params)
  key = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0)))
  state = {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": params, "batch_stats": stats,
           "opt_state": opt, "rng": key}
  return graphdef, state


def state_shardings(state: TrainState, tx: optax.GradientTransformation, mesh: Mesh, rules):
  """NamedShardings for every leaf of an (abstract) train state.

  Parameters and batch statistics follow their logical axes; the optimizer moments mirror the
  parameters (``optax.tree_map_params``: a bare ``jax.jit(tx.init)`` would replicate them); the
  step, counters and the key are replicated.
  """
  repl = replicated(mesh)
  p_sh = shd.state_shardings(state["params"], mesh, rules)
  s_sh = shd.state_shardings(state["batch_stats"], mesh, rules)
  o_sh = optax.tree_map_params(tx, lambda _, s: s, state["opt_state"], p_sh,
                               transform_non_params=lambda _: repl)
  return {"step": repl, "params": p_sh, "batch_stats": s_sh, "opt_state": o_sh, "rng": repl}


def create_train_state(cfg: GroupViTConfig, tx: optax.GradientTransformation, mesh: Mesh, rules,
                       seed: int):
  """Initialises the model and optimizer directly into their shardings.

  Returns:
    ``(graphdef, state, shardings)``.
  """
  graphdef, abstract = abstract_state(cfg, tx)
  shardings = state_shardings(abstract, tx, mesh, rules)
  init_key, run_key = jax.random.split(jax.random.key(seed))

  def init():
    _, params, stats = split_model(GroupViT(cfg, rngs=nnx.Rngs(params=init_key)))
    return {"step": jnp.zeros((), jnp.int32), "params": params, "batch_stats": stats,
            "opt_state": tx.init(params), "rng": jax.random.key_data(run_key)}

  state = jax.jit(init, out_shardings=shardings)()
  return graphdef, state, shardings


def with_shardings(abstract: TrainState, shardings) -> TrainState:
  """ShapeDtypeStructs carrying the target shardings (for Orbax restore)."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract,
                      shardings)


def model_from_state(graphdef, state: TrainState) -> GroupViT:
  """The ``GroupViT`` module viewing the state's parameters and statistics (no copy)."""
  return nnx.merge(graphdef, state["params"], state["batch_stats"])


def param_count(state: TrainState) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(state["params"])))
