"""The project's own model format: a directory with ``groupvit_config.json`` and an orbax
``weights/`` checkpoint of every variable (nested dict, numpy on restore)."""

from __future__ import annotations

import json
import os

import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from groupvit_jax.model_config import GroupViTConfig
from groupvit_jax.convert import flat_state

CONFIG_FILE = "groupvit_config.json"
WEIGHTS_DIR = "weights"
FORMAT = "groupvit_jax/v1"


def is_native(path: str) -> bool:
  return os.path.isfile(os.path.join(path, CONFIG_FILE))


def _nest(flat: dict[str, np.ndarray]) -> dict:
  out: dict = {}
  for key, value in flat.items():
    node = out
    *parents, leaf = key.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out


def save(model: nnx.Module, directory: str, *, extra_metadata: dict | None = None) -> str:
  """Writes ``model`` (config + all variables) to ``directory``; returns its absolute path."""
  directory = os.path.abspath(directory)
  weights = os.path.join(directory, WEIGHTS_DIR)
  if os.path.exists(weights):
    raise FileExistsError(f"{weights} already exists; choose an empty output directory")
  os.makedirs(directory, exist_ok=True)
  meta = {"format": FORMAT, "model": model.config.to_dict()}
  meta.update(extra_metadata or {})
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(weights, _nest(flat_state.to_flat(model)))
    ckptr.wait_until_finished()
  with open(os.path.join(directory, CONFIG_FILE), "w") as f:
    json.dump(meta, f, indent=2, sort_keys=True)
  return directory


def read_config(directory: str) -> GroupViTConfig:
  path = os.path.join(directory, CONFIG_FILE)
  with open(path) as f:
    meta = json.load(f)
  if meta.get("format") != FORMAT or "model" not in meta:
    raise ValueError(f"{path}: expected format {FORMAT!r} with a 'model' section, got "
                     f"format={meta.get('format')!r}")
  return GroupViTConfig.from_dict(meta["model"])


def read_weights(directory: str) -> dict[str, np.ndarray]:
  weights = os.path.join(os.path.abspath(directory), WEIGHTS_DIR)
  if not os.path.isdir(weights):
    raise FileNotFoundError(f"{weights}: missing (expected next to {CONFIG_FILE})")
  with ocp.StandardCheckpointer() as ckptr:
    tree = ckptr.restore(weights)
  return flat_state.flatten_tree(tree)
