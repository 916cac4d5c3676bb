"""Random-access sources (TFDS ArrayRecord datasets) behind the same raw-sample interface.

The order is a seeded global permutation per epoch (grain's index shuffle); host ``p`` of ``P``
reads, for every global batch of ``B`` positions, the block ``[p*B/P, (p+1)*B/P)`` of it, so the
global batches do not depend on the number of hosts (as long as no sample is skipped).
"""

from __future__ import annotations

from typing import Any

import grain


class RawRecords:
  """A TFDS data source viewed as raw samples (image bytes undecoded, caption bytes)."""

  def __init__(self, source, image_key: str, text_key: str):
    self._source = source
    self._image_key = image_key
    self._text_key = text_key

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = self._source[index]
    for key in (self._image_key, self._text_key):
      if key not in record:
        raise KeyError(f"TFDS record has no feature {key!r} (features: {sorted(record)}); set "
                       f"input.tfds_image_key / input.tfds_text_key")
    return {"image": record[self._image_key], "caption": record[self._text_key], "json": None,
            "__key__": str(index)}


def tfds_source(name: str, *, split: str, data_dir: str, image_key: str, text_key: str
                ) -> RawRecords:
  """Opens a prepared TFDS dataset (ArrayRecord format) without decoding its images.

  ``name`` is a registered/prepared dataset name (with ``data_dir``) or, when it is a directory
  path, the dataset's version directory (``builder_from_directory``). Nothing downloads.
  """
  import os  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  decoders = {image_key: tfds.decode.SkipDecoding()}
  if os.path.isdir(name):
    source = tfds.builder_from_directory(name).as_data_source(split, decoders=decoders)
  else:
    source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False,
                              decoders=decoders)
  return RawRecords(source, image_key, text_key)


class HostBlocks(grain.MapDataset):
  """Element ``j`` of host ``p``: ``parent[(j // b) * B + p * b + j % b]`` with ``b = B / P``."""

  def __init__(self, parent: grain.MapDataset, *, global_batch: int, process_index: int,
               process_count: int):
    super().__init__(parent)
    if global_batch % process_count:
      raise ValueError(f"batch {global_batch} does not split over {process_count} hosts")
    self._b = global_batch // process_count
    self._B = global_batch
    self._p = process_index
    self._len = len(parent) if len(parent) >= 2**62 else (len(parent) // global_batch) * self._b

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    block, offset = divmod(index, self._b)
    return self._parent[block * self._B + self._p * self._b + offset]

  def __str__(self) -> str:
    return f"HostBlocks(host {self._p}, {self._b} of every {self._B})"


def _with_index(index: int, record: dict[str, Any]) -> dict[str, Any]:
  return dict(record, __index__=index)


def ordered_records(source, *, seed: int, global_batch: int, process_index: int,
                    process_count: int) -> grain.MapDataset:
  """Raw samples of this host in global order; each carries ``__index__`` (global position)."""
  ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat()
  ds = ds.map_with_index(_with_index)
  return HostBlocks(ds, global_batch=global_batch, process_index=process_index,
                    process_count=process_count)
