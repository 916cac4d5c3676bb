"""Images read and preprocessed in parallel threads, grouped into fixed-shape masked batches.

Every batch has exactly ``batch_size`` rows: the last one is zero-padded and ``mask`` marks its
real rows, so a jitted function sees one shape and compiles once. At most ``prefetch`` batches
are decoded ahead of the consumer, which bounds memory on a 50,000-image split. PIL releases the
GIL while it decodes and resizes, so threads give a real speed-up.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from groupvit_jax.preprocessing import preprocess_images

# torchvision-style ``Resize(int(256 / 224 * size))`` before ``CenterCrop(size)``, as in the
# reference's evaluation transform (256 for 224).
RESIZE_RATIO = 256 / 224


def eval_resize(image_size: int) -> int:
  """Shorter side before the center crop: ``int(256 / 224 * image_size)`` (256 for 224)."""
  return int(RESIZE_RATIO * image_size)


def default_num_workers() -> int:
  return max(1, min(16, os.cpu_count() or 1))


@dataclasses.dataclass
class Batch:
  """images: float32 [B, S, S, 3] normalised (zeros on padding); labels: int32 [B] (-1 on
  padding); mask: bool [B], True for real images."""

  images: np.ndarray
  labels: np.ndarray
  mask: np.ndarray

  @property
  def num_valid(self) -> int:
    return int(self.mask.sum())


def _preprocess(read: Callable[[Any], np.ndarray], source: Any, image_size: int,
                resize: int) -> np.ndarray:
  return preprocess_images(read(source), image_size=image_size, resize=resize)[0]


def iter_batches(items: Iterable[tuple[Any, int]], read: Callable[[Any], np.ndarray], *,
                 batch_size: int, image_size: int = 224, resize: int | None = None,
                 num_workers: int | None = None, prefetch: int = 2) -> Iterator[Batch]:
  """Yields fixed-size batches of preprocessed images, in the order of ``items``.

  Args:
    items: ``(source, label)`` pairs; ``source`` is whatever ``read`` accepts (a path, bytes).
    read: source -> uint8 [H, W, 3] RGB (e.g. ``groupvit_jax.image_io.load_image``); its
      exceptions (which name the file) propagate to the caller.
    batch_size: rows per batch, the last batch included.
    image_size: center-crop size S.
    resize: shorter side before the crop; default ``eval_resize(image_size)``.
    num_workers: reader threads (default: the CPU count, at most 16).
    prefetch: batches decoded ahead of the consumer.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  resize = eval_resize(image_size) if resize is None else resize
  capacity = batch_size * (prefetch + 1)
  pool = ThreadPoolExecutor(num_workers or default_num_workers(), thread_name_prefix="imread")
  pending: collections.deque = collections.deque()
  source_iter = iter(items)

  def fill():
    while len(pending) < capacity:
      try:
        source, label = next(source_iter)
      except StopIteration:
        return
      pending.append((pool.submit(_preprocess, read, source, image_size, resize), int(label)))

  try:
    fill()
    while pending:
      images, labels = [], []
      while pending and len(images) < batch_size:
        future, label = pending.popleft()
        images.append(future.result())
        labels.append(label)
        fill()
      yield pad_batch(np.stack(images), np.asarray(labels, np.int32), batch_size)
  finally:
    pool.shutdown(wait=True, cancel_futures=True)


def pad_batch(images: np.ndarray, labels: np.ndarray, batch_size: int) -> Batch:
  """images [n, S, S, 3], labels [n] with n <= batch_size -> a ``Batch`` of ``batch_size`` rows."""
  n = len(images)
  if n > batch_size:
    raise ValueError(f"{n} images do not fit a batch of {batch_size}")
  mask = np.arange(batch_size) < n
  if n < batch_size:
    images = np.concatenate([images, np.zeros((batch_size - n,) + images.shape[1:], images.dtype)])
    labels = np.concatenate([labels, np.full(batch_size - n, -1, np.int32)])
  return Batch(images=images, labels=labels.astype(np.int32), mask=mask)
