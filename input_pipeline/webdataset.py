"""webdataset tar shards as img2dataset writes them, as a checkpointable grain ``IterDataset``.

A shard is a tar whose members are grouped by key (the member path up to the first dot of its
file name): ``000012.jpg`` (or .png/.webp), ``000012.txt`` caption, optional ``000012.json``.
Shards are read sequentially (streaming; works on remote object stores), several at once
(``cycle_length``, round-robin), in a seeded order that changes every epoch.

A shard that yields no sample (not a tar, truncated before its first member, unreadable, deleted
since the listing, empty) is named in a warning with the running count of such shards; when every
shard of this worker in a row yields nothing the iterator raises ``ValueError`` listing them,
instead of cycling over empty epochs for ever.

The iterator state is small: the epoch, the next shard position, and for each open shard its
position and the number of samples already read. Restoring re-opens those shards and skips the
samples already read, so a resumed run continues with the same data order.
"""

from __future__ import annotations

import copy
import logging
import os
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np

from input_pipeline.samples import SKIP_KEY

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def _open(path: str):
  if "://" in path:
    from etils import epath  # pylint: disable=g-import-not-at-top
    return epath.Path(path).open("rb")
  return open(path, "rb")


def split_member_name(name: str) -> tuple[str, str]:
  """``'dir/000012.jpg'`` -> ``('dir/000012', 'jpg')``; extension lower-cased."""
  dirname, base = os.path.split(name)
  key, _, ext = base.partition(".")
  return (os.path.join(dirname, key) if dirname else key), ext.lower()


def _sample(shard: str, index: int, key: str, parts: dict[str, bytes]) -> dict[str, Any]:
  image_ext = next((e for e in IMAGE_EXTS if e in parts), None)
  return {
      "__key__": key, "__shard__": shard, "__shard_id__": shard_seed(shard), "__index__": index,
      "image": parts.get(image_ext) if image_ext else None,
      "caption": parts.get("txt"), "json": parts.get("json"),
  }


def iter_tar_groups(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
  """``(key, {extension: bytes})`` for every sample of a shard, in file order.

  A shard that ends early (truncated upload) yields what it holds and logs a warning naming it;
  the sample at the cut is dropped.
  """
  count, key, parts = 0, None, {}
  try:
    with _open(path) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
      for member in tar:
        if not member.isfile():
          continue
        mkey, ext = split_member_name(member.name)
        data = tar.extractfile(member).read()
        if mkey != key:
          if key is not None:
            yield key, parts
            count += 1
          key, parts = mkey, {}
        parts[ext] = data
  except GeneratorExit:  # closed early (or at interpreter exit): not a corrupt shard
    raise
  except (tarfile.TarError, OSError, EOFError) as e:
    logging.warning("shard %s is truncated or corrupt after %d samples (%s); continuing with the "
                    "next shard", path, count, e)
    return
  if key is not None:
    yield key, parts


def iter_tar_samples(path: str) -> Iterator[dict[str, Any]]:
  """The raw samples of one shard in file order.

  Each sample: ``__key__``, ``__shard__``, ``__shard_id__``, ``__index__`` (position in the
  shard), ``image`` bytes or None, ``caption`` bytes or None, ``json`` bytes or None.
  """
  for index, (key, parts) in enumerate(iter_tar_groups(path)):
    yield _sample(path, index, key, parts)


def shard_seed(path: str) -> int:
  """A stable 32-bit id of a shard (for per-sample random streams) from its folder's and its
  own name only: the same shards read from another place (a copy, another mount point, a
  fresh clone's data folder) get the same augmentations, so a run does not depend on where its
  data lies; sources whose shards share file names (``gcc3m/00000.tar``, ``yfcc/00000.tar``)
  still get their own streams."""
  parts = path.replace("\\", "/").rstrip("/").split("/")
  return zlib.crc32("/".join(parts[-2:]).encode())


class WebDatasetSource(grain.IterDataset):
  """Raw samples from ``shards``, ``cycle_length`` shards interleaved, reshuffled per epoch.

  Supports grain's in-place slicing (``set_slice``), which ``mp_prefetch`` uses to give every
  worker process its own subset of the shards.
  """

  def __init__(self, shards: Sequence[str], *, seed: int, cycle_length: int = 4,
               num_epochs: int | None = None, shuffle_shards: bool = True):
    super().__init__()
    if not shards:
      raise ValueError("WebDatasetSource needs at least one shard")
    self.shards = list(shards)
    self.seed = int(seed)
    self.cycle_length = max(1, int(cycle_length))
    self.num_epochs = num_epochs
    self.shuffle_shards = shuffle_shards

  def set_slice(self, sl: slice, sequential_slice: bool = False) -> None:
    del sequential_slice
    sliced = self.shards[sl]
    if not sliced:
      raise ValueError(f"{len(self.shards)} shards on this host cannot feed the data workers "
                       f"(slice {sl}): lower input.num_workers or write more shards")
    self.shards = sliced

  def __iter__(self) -> "WebDatasetIterator":
    return WebDatasetIterator(self)

  def __str__(self) -> str:
    return f"WebDatasetSource({len(self.shards)} shards, cycle_length={self.cycle_length})"


class WebDatasetIterator(grain.DatasetIterator):
  """Round-robin over open shards; state = epoch, next shard position, open slots."""

  def __init__(self, ds: WebDatasetSource):
    super().__init__()
    self._ds = ds
    self._epoch = 0
    self._position = 0  # next position in the epoch's shard order
    self._slots: list[list[int]] = []  # [epoch, position, samples_read] per open shard
    self._readers: list[Iterator | None] = []
    self._next_slot = 0
    self._orders: dict[int, np.ndarray] = {}
    self._empty_in_a_row: set[str] = set()  # shards that yielded nothing since the last sample
    self.empty_shards = 0  # over this iterator's life

  def _order(self, epoch: int) -> np.ndarray:
    if epoch not in self._orders:
      if len(self._orders) > 2:  # open shards span at most two epochs
        self._orders.clear()
      n = len(self._ds.shards)
      self._orders[epoch] = (np.random.default_rng([self._ds.seed, epoch]).permutation(n)
                             if self._ds.shuffle_shards else np.arange(n))
    return self._orders[epoch]

  def _take_shard(self) -> list[int] | None:
    """The next ``[epoch, position, 0]`` slot, or None when all epochs are done."""
    if self._position >= len(self._ds.shards):
      self._epoch += 1
      self._position = 0
    if self._ds.num_epochs is not None and self._epoch >= self._ds.num_epochs:
      return None
    slot = [self._epoch, self._position, 0]
    self._position += 1
    return slot

  def _shard_path(self, slot: list[int]) -> str:
    return self._ds.shards[int(self._order(slot[0])[slot[1]])]

  def _note_empty(self, path: str) -> None:
    self.empty_shards += 1
    self._empty_in_a_row.add(path)
    logging.warning("shard %s yielded no samples (%d such shards so far)", path,
                    self.empty_shards)
    if len(self._empty_in_a_row) >= len(self._ds.shards):
      names = sorted(self._empty_in_a_row)
      raise ValueError(
          f"none of the {len(self._ds.shards)} shards read by this data worker yields a sample "
          f"(each is not a tar, truncated, unreadable, missing or empty; see the warnings above): "
          f"{', '.join(names[:10])}{' ...' if len(names) > 10 else ''}. Check "
          f"input.train_shards")

  def _reader(self, slot: list[int]) -> Iterator:
    epoch, position, skip = slot
    path = self._shard_path(slot)
    it = iter_tar_samples(path)
    for _ in range(skip):  # resume inside a shard
      if next(it, None) is None:
        break
    return it

  def _fill(self) -> None:
    while len(self._slots) < self._ds.cycle_length:
      slot = self._take_shard()
      if slot is None:
        return
      self._slots.append(slot)
      self._readers.append(None)

  def __next__(self) -> dict[str, Any]:
    self._fill()
    while self._slots:
      i = self._next_slot % len(self._slots)
      if self._readers[i] is None:
        self._readers[i] = self._reader(self._slots[i])
      sample = next(self._readers[i], None)
      if sample is None:  # shard finished: replace it by the next one in order
        empty = self._shard_path(self._slots[i]) if self._slots[i][2] == 0 else None
        if empty:
          self._note_empty(empty)
        replacement = self._take_shard()
        if replacement is None:
          del self._slots[i], self._readers[i]
        else:
          self._slots[i], self._readers[i] = replacement, None
        if empty:  # counted downstream as skipped_shard (samples.SkipCountingIterDataset)
          return {SKIP_KEY: "shard", "__key__": empty}
        continue
      self._slots[i][2] += 1
      self._empty_in_a_row.clear()
      self._next_slot = (i + 1) % len(self._slots)
      sample["__epoch__"] = self._slots[i][0]
      return sample
    raise StopIteration

  def get_state(self) -> dict[str, Any]:
    return {"epoch": self._epoch, "position": self._position, "slots": copy.deepcopy(self._slots),
            "next_slot": self._next_slot, "num_shards": len(self._ds.shards)}

  def set_state(self, state: dict[str, Any]) -> None:
    if state["num_shards"] != len(self._ds.shards):
      raise ValueError(f"data iterator checkpoint was written for {state['num_shards']} shards on "
                       f"this worker, but {len(self._ds.shards)} are configured now: resume with "
                       f"the same input.train_shards, host count and input.num_workers")
    self._epoch, self._position = int(state["epoch"]), int(state["position"])
    self._slots = [list(map(int, s)) for s in state["slots"]]
    self._readers = [None] * len(self._slots)
    self._next_slot = int(state["next_slot"])

  def __str__(self) -> str:
    return f"WebDatasetIterator(epoch={self._epoch}, position={self._position})"
