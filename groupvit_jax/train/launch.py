"""Training entry point, run as ``python -m groupvit_jax.train`` (kept short; the library stays
importable from a notebook).

  python -m groupvit_jax.train --config configs/groupvit_gcc_yfcc.py --workdir runs/yfcc \
    --config.input.train_shards='gs://bucket/{cc3m,cc12m,yfcc14m}/*.tar' [--config.key=value ...]

Running the same command again resumes from the latest checkpoint in the workdir.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and config.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() and let "
                                 "JAX detect the cluster (TPU pods, SLURM, ...).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's id.")
_LOCAL_DEVICES = flags.DEFINE_string("local_device_ids", None, "Comma list of local device ids.")
_HEARTBEAT = flags.DEFINE_integer("heartbeat_timeout_s", 100, "Multi-process runs: seconds "
                                  "without a heartbeat after which a process counts as dead and "
                                  "the others exit with an error.")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv):
  """absl parsing with one-line errors for bad overrides (e.g. an unknown config key)."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:  # ml_collections: a --config.<key> that does not exist
    key = str(e).strip("\"'")
    print(f"error: unknown config key {key!r} in a --config.* override (a locked config only "
          f"accepts keys its file defines)", file=sys.stderr)
  except (flags.Error, ValueError, TypeError) as e:
    print(f"error: {e}", file=sys.stderr)
  sys.exit(2)


class QuietLibraries:
  """Drops INFO lines from orbax and grain (one per save step); warnings and errors pass."""

  def filter(self, record) -> bool:
    noisy = any(f"/{lib}/" in record.pathname for lib in ("orbax", "grain"))
    return record.levelno >= 30 or not noisy


def main(argv):
  del argv
  logging.get_absl_handler().addFilter(QuietLibraries())
  from groupvit_jax.train import checkpointing, distributed, loop  # pylint: disable=g-import-not-at-top
  from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], "GPU")  # TF (CLU, TFDS) must never take accelerator memory
  except ImportError:
    pass
  distributed.initialize(distributed=_DISTRIBUTED.value, coordinator_address=_COORDINATOR.value,
                         num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
                         local_device_ids=_LOCAL_DEVICES.value,
                         heartbeat_timeout_s=_HEARTBEAT.value)
  logging.info("JAX %s: process %d/%d, devices %s", jax.__version__, jax.process_index(),
               jax.process_count(), jax.devices())
  try:
    loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (loop.NonFiniteLossError, checkpointing.CheckpointError, pipeline.DataWorkerError,
          ValueError, OSError, jax.errors.JaxRuntimeError) as e:
    # Expected faults (docs/reliability.md): the message says what happened, no traceback.
    peer_gone = checkpointing.lost_peer(e)
    if isinstance(e, jax.errors.JaxRuntimeError) and not peer_gone:
      raise  # a runtime failure of one process: keep the traceback
    hint = (" -- another process stopped responding (a dead host?); the coordination service "
            "names it below. Rerun every process to resume from the last checkpoint"
            if peer_gone else "")
    logging.error("training stopped: %s: %s%s", type(e).__name__, e, hint)
    print(f"error: {e}{hint}", file=sys.stderr)
    sys.exit(1)

