"""Orbax checkpoints of the train state and the data iterator, and preemption handling.

Layout: ``WORKDIR/checkpoints/<step>/{state, data}``: ``state`` the train state (sharded arrays,
restored straight into their shardings), ``data`` every process's data iterator position and
skip counts (grain's handler, one JSON file per process).
Saves are asynchronous; ``keep`` most recent steps are kept.

Faults (docs/reliability.md): a step folder that is incomplete (no commit marker, a missing
item or metadata) or whose arrays do not read back is named in a warning and set aside as
``<step>.corrupt-<reason>`` (never deleted; Orbax only lists all-digit names, so it never reads
it again), and the next older step is tried. A checkpoint written for another model or
optimizer (array shapes differ) is not corrupt: it stops the run instead of being set aside.

Preemption: on SIGTERM the loop saves at the end of the current step and exits with status 0.
With several processes, JAX's preemption sync point (``jax.distributed``'s service, which catches
SIGTERM itself) makes every process stop at the same step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import threading

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as cm
from orbax.checkpoint._src import asyncio_utils as orbax_asyncio

from groupvit_jax.convert.workdir import CHECKPOINTS as CHECKPOINT_DIR  # the workdir layout's home
ITEMS = ("state", "data")
COMMIT_MARKER = "commit_success.txt"  # Orbax writes it last, into the step and each item
SET_ASIDE = ".corrupt-"


class CheckpointError(RuntimeError):
  """No checkpoint in the workdir restores, or one does not fit the configured model."""


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
  """Saves if the policy says so (or ``force``); returns whether a save started.

  Raises:
    CheckpointError: this save, or the previous asynchronous one, failed (disk full, no
      permission, ...); the checkpoints committed before it are intact.
  """
  try:
    return mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter)),
        force=force)
  except Exception as e:  # pylint: disable=broad-except  # OSError, tensorstore, orbax errors
    if lost_peer(e):
      raise
    raise _save_failed(mngr, e) from e


def lost_peer(e: BaseException) -> bool:
  """A collective or barrier of a multi-process save failed: another process is gone, which the
  entry point reports as such (not as a disk fault)."""
  return jax.process_count() > 1 and isinstance(e, (jax.errors.JaxRuntimeError, TimeoutError))


def wait_until_finished(mngr: ocp.CheckpointManager) -> None:
  """Waits for the asynchronous save; a failure raises ``CheckpointError`` (see ``save``)."""
  try:
    mngr.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except
    if lost_peer(e):
      raise
    raise _save_failed(mngr, e) from e


def _save_failed(mngr: ocp.CheckpointManager, e: BaseException) -> CheckpointError:
  try:  # let an earlier save still in flight commit before listing what is kept
    mngr.wait_until_finished()
  except Exception:  # pylint: disable=broad-except  # the failure being reported
    pass
  kept = step_dirs(str(mngr.directory))
  return CheckpointError(
      f"saving a checkpoint in {mngr.directory} failed ({_first_line(e)}); the run stops. "
      f"Committed checkpoints are intact: {kept or 'none'}. Free space or fix permissions, then "
      f"rerun the same command to resume.")


def state_bytes(abstract_state) -> int:
  """Bytes one checkpoint of ``abstract_state`` takes (its arrays, uncompressed)."""
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
             for x in jax.tree.leaves(abstract_state) if hasattr(x, "shape"))


def check_writable(directory: str, need_bytes: int) -> None:
  """Before compiling: ``directory`` can be created and written, and (local disks) has room for
  ``need_bytes``.

  Raises:
    CheckpointError: naming the path and what is wrong.
  """
  if "://" in directory:
    return  # object stores: no cheap free-space query; a failed save stops the run
  probe = os.path.join(directory, f".write-probe-{os.getpid()}")
  try:
    os.makedirs(directory, exist_ok=True)
    with open(probe, "wb") as f:
      f.write(b"probe")
    os.remove(probe)
  except OSError as e:
    raise CheckpointError(f"cannot write to {directory}: {e.strerror or e} "
                          f"(choose a writable --workdir)") from e
  free = shutil.disk_usage(directory).free
  if free < need_bytes:
    raise CheckpointError(
        f"not enough disk space for checkpoints in {directory}: {free / 2**20:.1f} MiB free, "
        f"{need_bytes / 2**20:.1f} MiB needed (two train states: a new save while the last is "
        f"kept). Free space or choose another --workdir")


def _run_then_drain(coro):
  """Orbax's ``_run_sync_via_new_loop``, but the loop is closed only after every task on it
  ended. When one array of a corrupt checkpoint fails to read, Orbax (0.12) closes its loop with
  the sibling reads still in flight; each then finishes into the closed loop and TensorStore
  prints an "Event loop is closed" traceback (hundreds for one bad step)."""
  loop = asyncio.new_event_loop()
  try:
    asyncio.set_event_loop(loop)
    return loop.run_until_complete(coro)
  finally:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if pending:
      loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    asyncio.set_event_loop(None)
    loop.close()


@contextlib.contextmanager
def _reads_drained_on_failure():
  """Within it, Orbax's synchronous calls drain their loop (see ``_run_then_drain``). A no-op
  if Orbax no longer has the private function (a newer release may have fixed it)."""
  original = getattr(orbax_asyncio, "_run_sync_via_new_loop", None)
  if original is None:
    yield
    return
  orbax_asyncio._run_sync_via_new_loop = _run_then_drain  # pylint: disable=protected-access
  try:
    yield
  finally:
    orbax_asyncio._run_sync_via_new_loop = original  # pylint: disable=protected-access


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state, data_iter=None):
  """The train state at ``step``, restored into ``abstract_state``'s shardings; the data
  iterator's position is set in place (when ``data_iter`` is given)."""
  args = dict(state=ocp.args.StandardRestore(abstract_state))
  if data_iter is not None:
    args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
  with _reads_drained_on_failure():
    return mngr.restore(step, args=ocp.args.Composite(**args))["state"]


def step_dirs(directory: str) -> list[int]:
  """The all-digit step folders of ``directory`` (what Orbax lists), oldest first."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  d = epath.Path(directory)
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def incomplete_reason(step_dir) -> str | None:
  """Why ``step_dir`` cannot hold a whole checkpoint, judged from its files alone, or None."""
  if not (step_dir / COMMIT_MARKER).exists():
    return "uncommitted"
  for item in ITEMS:
    if not (step_dir / item / COMMIT_MARKER).exists():
      return f"missing-{item}"
  if not (step_dir / "state" / "_METADATA").exists():
    return "missing-metadata"
  return None


def _shapes(tree) -> list[tuple]:
  return sorted(tuple(x.shape) for x in jax.tree.leaves(tree) if hasattr(x, "shape"))


def architecture_mismatch(step_dir, abstract_state) -> str | None:
  """A description when the saved arrays' shapes differ from ``abstract_state``'s, else None.

  Raises whatever reading the metadata raises (a corrupt step)."""
  with _reads_drained_on_failure():
    saved = ocp.StandardCheckpointHandler().metadata(step_dir / "state")
  got, want = _shapes(saved), _shapes(abstract_state)
  if got == want:
    return None
  only_saved = sorted(set(got) - set(want))[:5]
  only_model = sorted(set(want) - set(got))[:5]
  return (f"{len(got)} arrays saved, {len(want)} in the configured state; shapes only in the "
          f"checkpoint {only_saved}, only in the configured model {only_model}")


def set_aside(step_dir, reason: str):
  """Renames ``step_dir`` to ``<step>.corrupt-<reason>`` (process 0; every process waits)."""
  target = step_dir.parent / f"{step_dir.name}{SET_ASIDE}{reason}"
  n = 1
  while target.exists():
    n += 1
    target = step_dir.parent / f"{step_dir.name}{SET_ASIDE}{reason}-{n}"
  if jax.process_index() == 0:
    step_dir.rename(target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"set aside {step_dir.name}")
  return target


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, data_iter):
  """The newest checkpoint of ``mngr`` that restores, as ``(step, state)``, or None when there
  is no step folder. Steps that do not restore are set aside (see the module docstring).

  Raises:
    CheckpointError: step folders exist but none restores (the message lists each one and why),
      or one was written for another architecture.
  """
  directory = str(mngr.directory)
  steps = step_dirs(directory)
  if not steps:
    return None
  tried = []
  for step in reversed(steps):
    step_dir = mngr.directory / str(step)
    reason = incomplete_reason(step_dir)
    detail = reason
    if reason is None:
      try:
        mismatch = architecture_mismatch(step_dir, abstract_state)
      except Exception as e:  # pylint: disable=broad-except  # tensorstore, OSError, ValueError
        reason, detail = "unreadable", f"does not read back: {_first_line(e)}"
      else:
        if mismatch:
          raise CheckpointError(
              f"checkpoint {step_dir} was written for another model or optimizer ({mismatch}). "
              f"Use a new --workdir for a new configuration, or restore the config.json of "
              f"this workdir.")
    if reason is None:
      try:
        return step, restore(mngr, step, abstract_state, data_iter)
      except Exception as e:  # pylint: disable=broad-except  # tensorstore, OSError, ValueError
        reason, detail = "unreadable", f"does not read back: {_first_line(e)}"
    target = set_aside(step_dir, reason)
    mngr.reload()  # forget the step set aside
    logging.warning("checkpoint %s is corrupt (%s): set aside as %s; trying the previous one",
                    step_dir, detail, target.name)
    tried.append(f"{step_dir} ({detail}; now {target.name})")
  raise CheckpointError(
      f"no checkpoint in {directory} restores; tried, newest first:\n  " + "\n  ".join(tried) +
      "\nThe folders are kept. To start afresh use a new --workdir; to start from other weights "
      "use --config.ckpt.resume_from or --config.ckpt.model_init.")


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0][:300] if text else ''}"


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
