"""``make_train_iter``: the training input pipeline for one host, yielding global device batches.

webdataset backend (grain ``IterDataset``)::

  this host's shards -> [worker slice] -> WebDatasetSource (seeded shard order, interleaved)
  -> window shuffle (seeded) -> decode + augment + prompts + tokenize -> drop & count bad samples
  -> batch (per host) -> [mp_prefetch over input.num_workers processes] -> global jax.Arrays

tfds backend: the same from ``random_access.ordered_records``; synthetic backend: see
``synthetic.py``. Every backend's host iterator has ``get_state``/``set_state`` (JSON-able), and
the device iterator saves it with each checkpoint (grain's orbax handler), so a resumed run
continues with the same data order.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import grain
import jax
from absl import flags
import numpy as np
from jax.sharding import Mesh

from groupvit_jax import sharding as shd
from input_pipeline import augment, random_access, samples, shards as shards_lib, synthetic
from input_pipeline import webdataset

WORKER_DIED = "terminated unexpectedly"  # grain's message when a prefetch process is gone


class DataWorkerError(RuntimeError):
  """A decode worker process died (killed, out of memory); the message says which setting."""


def num_texts(input_config) -> int:
  return 1 + int(input_config.multi_label)


def train_transform(input_config) -> augment.TrainTransform:
  a = input_config.augment
  return augment.TrainTransform(
      image_size=int(input_config.image_size), crop_scale=tuple(a.crop_scale),
      crop_ratio=tuple(a.crop_ratio), hflip=float(a.hflip), randaugment=str(a.randaugment),
      random_erasing=float(a.random_erasing))


def _processor(input_config, seed: int) -> samples.SampleProcessor:
  return samples.SampleProcessor(train_transform(input_config), int(input_config.multi_label),
                                 int(input_config.context_length), seed)


def _finish(ds: grain.IterDataset, input_config, seed: int, local_batch: int):
  ds = ds.map(_processor(input_config, seed))
  ds = samples.SkipCountingIterDataset(ds)
  ds = ds.batch(local_batch, drop_remainder=True)
  workers = int(input_config.num_workers)
  if workers > 0:
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags (library / notebook use)
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=workers, per_worker_buffer_size=int(input_config.worker_buffer_size)))
  return ds


def _synthetic(input_config, *, seed, process_index, process_count, global_batch, local_batch):
  del local_batch
  return synthetic.SyntheticIterator(
      seed=seed, global_batch=global_batch, image_size=int(input_config.image_size),
      num_texts=num_texts(input_config), context_length=int(input_config.context_length),
      process_index=process_index, process_count=process_count)


def _webdataset(input_config, *, seed, process_index, process_count, global_batch, local_batch):
  del global_batch
  all_shards = shards_lib.expand_shards(input_config.train_shards)
  mine = shards_lib.host_shards(all_shards, process_index, process_count)
  logging.info("input: %d shards in total, %d on host %d", len(all_shards), len(mine),
               process_index)
  ds = webdataset.WebDatasetSource(mine, seed=seed + 7919 * process_index,
                                   cycle_length=int(input_config.cycle_length))
  window = max(1, int(input_config.shuffle_buffer) // max(1, int(input_config.num_workers)))
  if window > 1:
    ds = grain.experimental.WindowShuffleIterDataset(ds, window_size=window, seed=seed)
  return _finish(ds, input_config, seed, local_batch)


def _tfds(input_config, *, seed, process_index, process_count, global_batch, local_batch):
  source = random_access.tfds_source(
      input_config.tfds_name, split=input_config.tfds_split,
      data_dir=input_config.tfds_data_dir, image_key=input_config.tfds_image_key,
      text_key=input_config.tfds_text_key)
  ds = random_access.ordered_records(source, seed=seed, global_batch=global_batch,
                                     process_index=process_index, process_count=process_count)
  return _finish(ds.to_iter_dataset(), input_config, seed, local_batch)


# ``input.backend`` -> the function building this host's dataset. A new input format is one
# function here (and its config keys in train/config_lib.py).
BACKENDS = {"webdataset": _webdataset, "tfds": _tfds, "synthetic": _synthetic}


def make_host_dataset(input_config, *, seed: int, process_index: int, process_count: int):
  """The grain dataset of this host's batches (numpy), or a ``SyntheticIterator``."""
  backend = input_config.backend
  if backend not in BACKENDS:
    raise ValueError(f"input.backend must be one of {sorted(BACKENDS)}, got {backend!r}")
  global_batch = int(input_config.batch_size)
  if global_batch % process_count:
    raise ValueError(f"input.batch_size {global_batch} must be divisible by the number of hosts "
                     f"({process_count})")
  return BACKENDS[backend](input_config, seed=seed, process_index=process_index,
                           process_count=process_count, global_batch=global_batch,
                           local_batch=global_batch // process_count)


def batch_spec(input_config) -> dict[str, tuple[tuple[int, ...], Any]]:
  """The model inputs of one global batch, ``{key: (shape, dtype)}``: ``image`` f32
  [B, S, S, 3] normalised pixels, ``text`` i32 [B, 1+K, L] the caption then K prompts."""
  i = input_config
  b, s = int(i.batch_size), int(i.image_size)
  return {"image": ((b, s, s, 3), np.float32),
          "text": ((b, num_texts(i), int(i.context_length)), np.int32)}


def batch_shardings(mesh: Mesh, rules, input_config) -> dict[str, jax.sharding.NamedSharding]:
  """Shardings of the model inputs: the batch axis over the ``batch`` rule's mesh axes."""
  out = {}
  for key, (shape, _) in batch_spec(input_config).items():
    spec = shd.logical_to_spec((shd.BATCH,) + (None,) * (len(shape) - 1),
                               (shape[0],) + (1,) * (len(shape) - 1), mesh, rules)
    out[key] = jax.sharding.NamedSharding(mesh, spec)
  return out


class DeviceBatchIterator:
  """Host batches -> ``(batch, counts)``: ``batch`` global ``jax.Array``s (``image`` f32
  [B, H, W, 3], ``text`` i32 [B, 1+K, L]) sharded over the mesh, ``counts`` the numbers of
  samples skipped while filling this host's part (``skipped_image``, ``skipped_caption``);
  ``skipped`` holds this host's totals over the run (saved with the position).

  ``get_state``/``set_state`` exchange JSON bytes, the protocol of grain's orbax handler
  (``grain.checkpoint.CheckpointSave/CheckpointRestore``).
  """

  def __init__(self, host_source, shardings: dict[str, Any], global_batch: int):
    self._source = host_source
    self._it = iter(host_source)
    self._shardings = shardings
    self._global_batch = global_batch
    self.skipped = {f"skipped_{r}": 0 for r in samples.SKIP_REASONS}  # this host, whole run
    # The training loop's own running totals (e.g. nonfinite_skipped_total), saved and restored
    # with the position so that a resumed run goes on counting.
    self.run_counters: dict[str, int] = {}

  def __iter__(self):
    return self

  def __next__(self) -> tuple[dict[str, jax.Array], dict[str, int]]:
    try:
      host = next(self._it)
    except RuntimeError as e:  # grain notices a dead worker within about a second
      if WORKER_DIED not in str(e):
        raise
      raise DataWorkerError(
          f"a data decode worker process died ({e}); the run stops. Look for the kernel's "
          f"out-of-memory killer or a crash in the worker's log, lower input.num_workers or "
          f"input.worker_buffer_size if memory is short, then rerun the same command to "
          f"resume") from e
    counts = {f"skipped_{r}": int(np.sum(host[f"skipped_{r}"])) for r in samples.SKIP_REASONS}
    for k, v in counts.items():
      self.skipped[k] += v
    batch = {}
    for key, sharding in self._shardings.items():  # the keys of batch_spec
      local = np.asarray(host[key])
      shape = (self._global_batch,) + local.shape[1:]
      batch[key] = jax.make_array_from_process_local_data(sharding, local, shape)
    return batch, counts

  def get_state(self) -> bytes:
    """JSON: the source iterator's state, this host's running skip totals and the loop's
    run counters."""
    return json.dumps({"source": self._it.get_state(), "skipped": self.skipped,
                       "run_counters": self.run_counters}).encode()

  def set_state(self, state: bytes) -> None:
    state = json.loads(state.decode() if isinstance(state, bytes) else state)
    self._it.set_state(state["source"])
    self.skipped = {f"skipped_{r}": 0 for r in samples.SKIP_REASONS}  # older states lack some
    self.skipped.update({k: int(v) for k, v in state["skipped"].items()})
    self.run_counters = {k: int(v) for k, v in state.get("run_counters", {}).items()}

  def start_prefetch(self) -> None:
    """Called by grain's checkpoint handler after ``set_state`` (a restore)."""
    if hasattr(self._it, "start_prefetch"):
      self._it.start_prefetch()

  def close(self) -> None:
    if hasattr(self._it, "close"):
      self._it.close()


def make_train_iter(input_config, *, mesh: Mesh, rules, seed: int, process_index: int | None = None,
                    process_count: int | None = None) -> DeviceBatchIterator:
  """The training iterator of this host (see the module docstring)."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  host = make_host_dataset(input_config, seed=seed, process_index=process_index,
                           process_count=process_count)
  return DeviceBatchIterator(host, batch_shardings(mesh, rules, input_config),
                             int(input_config.batch_size))
