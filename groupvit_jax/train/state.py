"""The train state and its shardings (the device mesh: ``groupvit_jax.sharding.make_mesh``).

The train state is a plain dict (a pytree Orbax saves and restores as is):
``step`` int32 [] updates applied so far; ``params`` nnx.State of ``nnx.Param``; ``batch_stats``
nnx.State of the projectors' BatchNorm statistics; ``opt_state`` the optax state; ``rng`` uint32
key data of the run's base key. The model's ``graphdef`` and the optimizer stay static.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from groupvit_jax import sharding as shd
from groupvit_jax.sharding import make_mesh  # noqa: F401  (the one home: groupvit_jax.sharding)
from groupvit_jax.model_config import GroupViTConfig
from groupvit_jax.models.groupvit import GroupViT

TrainState = dict[str, Any]


def model_config(config) -> GroupViTConfig:
  """``config.model`` (ml_collections) -> ``GroupViTConfig`` (unknown keys are an error)."""
  return GroupViTConfig.from_dict(config.model.to_dict())


def rules_from_config(rules) -> tuple[tuple[str, Any], ...]:
  """``config.sharding_rules`` as a tuple of ``(logical_name, mesh_axes | None)``."""
  out = []
  for rule in rules:
    name, axes = rule
    if isinstance(axes, list):
      axes = tuple(axes)
    out.append((str(name), axes))
  return tuple(out)


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
