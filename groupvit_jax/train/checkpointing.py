"""Orbax checkpoints of the train state and the data iterator, and preemption handling.

Layout: ``WORKDIR/checkpoints/<step>/{state, data}``: ``state`` the train state (sharded arrays,
restored straight into their shardings), ``data`` every process's data iterator position and
skip counts (grain's handler, one JSON file per process).
Saves are asynchronous; ``keep`` most recent steps are kept.

Preemption: on SIGTERM the loop saves at the end of the current step and exits with status 0.
With several processes, JAX's preemption sync point (``jax.distributed``'s service, which catches
SIGTERM itself) makes every process stop at the same step.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

import grain
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

from groupvit_jax.convert.workdir import CHECKPOINTS as CHECKPOINT_DIR  # the workdir layout's home
ITEMS = ("state", "data")


def absolute(path: str) -> str:
  """Local paths made absolute (Orbax needs it); remote ones (``gs://...``) as they are."""
  return path if "://" in path else os.path.abspath(path)


def checkpoint_dir(workdir: str) -> str:
  return f"{absolute(workdir).rstrip('/')}/{CHECKPOINT_DIR}"


def make_manager(directory: str, ckpt_config, *, read_only: bool = False) -> ocp.CheckpointManager:
  """Manager saving every ``ckpt_config.every_steps`` updates, keeping ``ckpt_config.keep``."""
  options = ocp.CheckpointManagerOptions(
      save_decision_policy=cm.AnySavePolicy([
          cm.FixedIntervalPolicy(int(ckpt_config.every_steps)),
          cm.PreemptionCheckpointingPolicy()]),
      preservation_policy=cm.LatestN(int(ckpt_config.keep)),
      enable_async_checkpointing=bool(ckpt_config.async_save),
      read_only=read_only, create=not read_only)
  return ocp.CheckpointManager(absolute(directory), item_names=ITEMS, options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, data_iter, *, force: bool = False) -> bool:
  """Saves if the policy says so (or ``force``); returns whether a save started."""
  return mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter)),
      force=force)


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state, data_iter=None):
  """The train state at ``step``, restored into ``abstract_state``'s shardings; the data
  iterator's position is set in place (when ``data_iter`` is given)."""
  args = dict(state=ocp.args.StandardRestore(abstract_state))
  if data_iter is not None:
    args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
  return mngr.restore(step, args=ocp.args.Composite(**args))["state"]


def resolve_resume_from(path: str) -> tuple[str, int]:
  """A workdir, its ``checkpoints`` dir or one ``checkpoints/<step>`` dir -> (manager dir, step)."""
  from etils import epath  # pylint: disable=g-import-not-at-top  # local or remote
  p = epath.Path(absolute(path))
  if p.name.isdigit() and (p / "state").is_dir():
    return str(p.parent), int(p.name)
  directory = p if p.name == CHECKPOINT_DIR else p / CHECKPOINT_DIR
  steps = sorted(int(d.name) for d in directory.iterdir() if d.name.isdigit()) if (
      directory.is_dir()) else []
  if not steps:
    raise FileNotFoundError(f"ckpt.resume_from={path!r}: no checkpoints/<step> directory found")
  return str(directory), steps[-1]


class PreemptionGuard:
  """Records SIGTERM (single process) so the loop can save and exit cleanly.

  With several processes the handler is not installed: JAX's preemption service owns SIGTERM and
  ``mngr.reached_preemption(step)`` answers the same on every process.
  """

  def __init__(self, multi_process: bool):
    self._event = threading.Event()
    self._previous = None
    self._multi = multi_process
    if not multi_process and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame) -> None:
    del frame
    logging.warning("received signal %d: saving a checkpoint at the end of this step", signum)
    self._event.set()

  def should_stop(self, mngr: ocp.CheckpointManager, step: int) -> bool:
    if self._multi:
      return bool(mngr.reached_preemption(step))
    return self._event.is_set()

  def restore_handler(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
