"""A segmentation split as a list of (image file, label file) pairs, and the label conversions
the benchmarks need (as 256-entry lookup tables on uint8 label maps)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from groupvit_jax.dataset_errors import DatasetLayoutError
from groupvit_jax.image_io import ImageReadError, load_image

IGNORE = 255


def layout_error(dataset: str, root: str, expected: Sequence[str],
                 note: str = "") -> DatasetLayoutError:
  """The error for a data root without the official layout of ``dataset``: lists the ``expected``
  paths (or, when empty, says the split is incomplete) and the ``note``."""
  if expected:
    lines = [f"dataset {dataset!r} not found under {root}. Expected the official layout:"]
    lines += [f"  {p}" for p in expected]
  else:
    lines = [f"dataset {dataset!r} under {root} is incomplete:"]
  if note:
    lines.append(note)
  return DatasetLayoutError("\n".join(lines))


@dataclasses.dataclass(frozen=True)
class Sample:
  key: str  # image id, e.g. '2007_000033' or 'frankfurt/frankfurt_000000_000294'
  image_path: str
  label_path: str
  lut: np.ndarray | None = None  # uint8 [256] raw label -> label id; None = as stored


@dataclasses.dataclass(frozen=True)
class Example:
  key: str
  image: np.ndarray  # uint8 [H, W, 3] RGB
  label: np.ndarray  # uint8 [H, W]; 255 = ignore


class SegDataset:
  """One split of a benchmark, read from its official on-disk layout.

  Attributes:
    name: registry key ('voc', 'context', ...).
    classes: every label id's name (``classes[0] == 'background'`` where the dataset has one).
  """

  def __init__(self, name: str, classes: Sequence[str], root: str, samples: Sequence[Sample]):
    self.name = name
    self.classes = tuple(classes)
    self.root = root
    self.samples = list(samples)

  @property
  def has_background(self) -> bool:
    return self.classes[0] == "background"

  @property
  def prompt_classes(self) -> tuple[str, ...]:
    """Names to embed: background is never embedded (spec 5.1)."""
    return self.classes[1:] if self.has_background else self.classes

  def __len__(self) -> int:
    return len(self.samples)

  def __iter__(self) -> Iterator[Example]:
    for i in range(len(self)):
      yield self[i]

  def __getitem__(self, i: int) -> Example:
    s = self.samples[i]
    image = load_image(s.image_path)
    label = read_label(s.label_path, s.lut)
    if label.shape != image.shape[:2]:
      raise ImageReadError(f"{s.label_path}: label is {label.shape[1]}x{label.shape[0]} but its "
                           f"image {s.image_path} is {image.shape[1]}x{image.shape[0]}")
    return Example(s.key, image, label)

  def limit(self, n: int | None) -> "SegDataset":
    """The first ``n`` samples (for smoke runs); all if ``n`` is None."""
    return self if n is None else SegDataset(self.name, self.classes, self.root, self.samples[:n])


def read_label(path: str, lut: np.ndarray | None = None) -> np.ndarray:
  """A label PNG as stored (palette indices for mode 'P'), optionally mapped through ``lut``."""
  if not os.path.isfile(path):
    raise ImageReadError(f"{path}: no such label file")
  try:
    with Image.open(path) as img:
      if img.mode not in ("P", "L"):
        raise ImageReadError(f"{path}: label PNG must be 8-bit palette or grayscale, got {img.mode}")
      label = np.asarray(img, np.uint8)
  except (OSError, SyntaxError, ValueError) as e:
    if isinstance(e, ImageReadError):
      raise
    raise ImageReadError(f"{path}: cannot read label ({e})") from e
  return label if lut is None else lut[label]


# ---- label conversions ----------------------------------------------------------------------------


def reduce_zero_lut() -> np.ndarray:
  """mmseg ``reduce_zero_label``: 0 -> 255 (ignore), k -> k-1, 255 stays 255."""
  lut = (np.arange(256) - 1).astype(np.uint8)
  lut[0] = lut[255] = IGNORE
  return lut


def table_lut(mapping: dict[int, int], default: int) -> np.ndarray:
  lut = np.full(256, default, np.uint8)
  for k, v in mapping.items():
    lut[k] = v
  return lut


def find_files(directory: str, suffix: str) -> list[str]:
  """Files under ``directory`` (recursively) ending with ``suffix``, as sorted relative paths."""
  out = []
  for base, _, files in os.walk(directory):
    for f in files:
      if f.endswith(suffix):
        out.append(os.path.relpath(os.path.join(base, f), directory))
  return sorted(out)


def check_present(name: str, root: str, samples: list[Sample], what: Callable[[Sample], str]) -> None:
  missing = [what(s) for s in samples if not os.path.isfile(what(s))]
  if missing:
    shown = "\n".join(f"  {m}" for m in missing[:5])
    raise layout_error(name, root, [], f"{len(missing)} file(s) of the split are missing, "
                             f"e.g.\n{shown}")
