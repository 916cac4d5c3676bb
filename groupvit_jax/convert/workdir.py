"""Reading a trained model out of a training workdir (``python -m groupvit_jax.train``).

``WORKDIR/config.json`` holds the run's config (its ``model`` section is the architecture) and
``WORKDIR/checkpoints/<step>/state`` the Orbax train state. Only the parameters and BatchNorm
statistics are read (a partial restore: the optimizer moments stay on disk), as numpy, with the
``'a/b/kernel'`` keys of ``flat_state``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

import numpy as np

from groupvit_jax.convert.flat_state import flatten_tree
from groupvit_jax.model_config import GroupViTConfig

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"
MODEL_ITEMS = ("params", "batch_stats")


def _step_dirs(checkpoints: str) -> list[str]:
  if not os.path.isdir(checkpoints):
    return []
  steps = sorted((int(d) for d in os.listdir(checkpoints)
                  if d.isdigit() and os.path.isdir(os.path.join(checkpoints, d, "state"))))
  return [os.path.join(checkpoints, str(s)) for s in steps]


def _is_step_dir(path: str) -> bool:
  return (os.path.basename(os.path.normpath(path)).isdigit()
          and os.path.isdir(os.path.join(path, "state"))
          and os.path.basename(os.path.dirname(os.path.normpath(path))) == CHECKPOINTS)


def is_workdir(path: str) -> bool:
  """A training workdir with at least one checkpoint, or one of its ``checkpoints/<step>``."""
  path = os.fspath(path)
  return _is_step_dir(path) or (os.path.isfile(os.path.join(path, CONFIG_FILE))
                                and bool(_step_dirs(os.path.join(path, CHECKPOINTS))))


def resolve(path: str) -> tuple[str, str]:
  """``(workdir, step_dir)``: the given step, or the latest one of a workdir."""
  path = os.path.abspath(os.fspath(path))
  if _is_step_dir(path):
    return os.path.dirname(os.path.dirname(path)), path
  steps = _step_dirs(os.path.join(path, CHECKPOINTS))
  if not steps:
    raise FileNotFoundError(f"{path}: no {CHECKPOINTS}/<step>/state in this workdir")
  return path, steps[-1]


def read_config(workdir: str) -> GroupViTConfig:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: missing; pass config= to load the checkpoint")
  with open(path) as f:
    run_config = json.load(f)
  if "model" not in run_config:
    raise ValueError(f"{path}: no 'model' section (not a groupvit_jax training config)")
  return GroupViTConfig.from_dict(run_config["model"])


class _DropStepMetadataWarning(logging.Filter):
  """The trainer's CheckpointManager keeps ``_CHECKPOINT_METADATA`` one level up, at the step;
  reading the ``state`` item on its own makes orbax warn that it is missing. Nothing is."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "Metadata file does not exist" not in record.getMessage()


@contextlib.contextmanager
def _no_step_metadata_warning():
  handler_filter = _DropStepMetadataWarning()
  logger = logging.getLogger("absl")
  logger.addFilter(handler_filter)
  try:
    yield
  finally:
    logger.removeFilter(handler_filter)


def read(path: str, config: GroupViTConfig | None = None
         ) -> tuple[GroupViTConfig, dict[str, np.ndarray]]:
  """``(model config, {'img_encoder/.../kernel': array})`` of a workdir's latest checkpoint or of
  a ``checkpoints/<step>`` directory."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  workdir, step_dir = resolve(path)
  config = config or read_config(workdir)
  state_dir = os.path.join(step_dir, "state")
  with _no_step_metadata_warning(), ocp.PyTreeCheckpointer() as ckptr:
    meta = ckptr.metadata(state_dir)
    tree = meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta
    item = {k: tree[k] for k in MODEL_ITEMS}
    restore_args = {k: _numpy_args(tree[k], ocp) for k in MODEL_ITEMS}
    restored = ckptr.restore(state_dir, args=ocp.args.PyTreeRestore(
        item=item, restore_args=restore_args, partial_restore=True))
  flat = {}
  for k in MODEL_ITEMS:
    flat.update(flatten_tree(restored[k]))
  return config, flat


def _numpy_args(tree, ocp):
  if isinstance(tree, dict):
    return {k: _numpy_args(v, ocp) for k, v in tree.items()}
  return ocp.RestoreArgs(restore_type=np.ndarray)
