"""ImageNet-1k validation images with labels, from the usual on-disk layouts or tfds.

Labels are class indices 0-999 in sorted WordNet-id order (``imagenet_classes.imagenet_synsets``).
Layouts (``open_imagenet(root, layout=...)``):

``folders``: one folder per class named by its WordNet id, images inside (sub-folders are
  searched too), like torchvision ``ImageFolder``::

    ROOT/n01440764/ILSVRC2012_val_00000293.JPEG
    ...
    ROOT/n15075141/ILSVRC2012_val_00049174.JPEG

  Every folder must be one of the 1000 ids; folders with no images are allowed (counted as
  missing classes). Hidden folders and non-image files are ignored.

``flat``: all images in ROOT plus a labels file (``labels_file``), UTF-8 text, one image per line;
  blank lines and lines starting with ``#`` are skipped. Two forms are accepted:

  1. ``NAME LABEL``: fields separated by a comma and/or whitespace (so names must not contain
     either); fields after LABEL are ignored. NAME is a path relative to ROOT, or a file name
     without its extension (``ILSVRC2012_val_00000001``) when exactly one image in ROOT has that
     stem. LABEL is a WordNet id (``n01751748``) or a class index 0-999 in sorted WordNet-id order
     (as in Caffe's ``val.txt``). A first line whose LABEL field is a word (a header such as
     Kaggle's ``ImageId,PredictionString``) is skipped. Exactly the listed images are evaluated,
     each listed once.
  2. ``LABEL`` alone: one WordNet id per line, line i labelling the i-th image of ROOT in sorted
     file-name order (the format of tfds' ``imagenet2012/validation_labels.txt``); the number of
     lines must equal the number of images.

  One-column integer files are refused: the devkit's ``ILSVRC2012_validation_ground_truth.txt``
  holds 1-based ILSVRC2012_IDs in the devkit's own class order, not the sorted one.

``tfds``: tfds ``imagenet2012`` (needs the ``tf`` extra). ROOT is the manual directory holding
  ``ILSVRC2012_img_val.tar``; the dataset is prepared once into ``tfds_data_dir`` (tfds' default
  when None) and read from there afterwards. The JPEG bytes are decoded with PIL, like the files
  of the other layouts.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from groupvit_jax.classification.imagenet_classes import synset_to_index
from groupvit_jax.dataset_errors import DatasetLayoutError
from groupvit_jax.image_io import ImageReadError, load_image, to_rgb_uint8

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
LAYOUTS = ("auto", "folders", "flat", "tfds")
TFDS_VAL_TAR = "ILSVRC2012_img_val.tar"
_SYNSET = re.compile(r"^n\d{8}$")

EXPECTED = (
    "Expected one of:\n"
    "  - one folder per class named by WordNet id:\n"
    "    ROOT/n01440764/*.JPEG ... ROOT/n15075141/*.JPEG\n"
    "  - a flat folder of images plus --ground-truth (lines 'FILE LABEL', LABEL a WordNet id or a\n"
    "    class index 0-999 in sorted WordNet-id order; or one WordNet id per line in sorted\n"
    "    file-name order)\n"
    f"  - --layout tfds with ROOT holding {TFDS_VAL_TAR} (needs the tf extra)")




@dataclasses.dataclass
class LabelledImages:
  """``items()``: a fresh iterable of ``(source, label)``; ``read(source)`` -> uint8 [H, W, 3]."""

  layout: str
  root: str
  num_images: int
  items: Callable[[], Iterable[tuple[Any, int]]]
  read: Callable[[Any], np.ndarray]
  num_classes_present: int | None  # None when unknown without reading everything (tfds)
  notes: list[str] = dataclasses.field(default_factory=list)

  def __len__(self) -> int:
    return self.num_images


def _is_image(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _listing(root: str) -> tuple[list[str], list[str]]:
  """Visible sub-folders and image files directly in ``root`` (sorted)."""
  dirs, images = [], []
  for entry in sorted(os.scandir(root), key=lambda e: e.name):
    if entry.name.startswith("."):
      continue
    if entry.is_dir():
      dirs.append(entry.name)
    elif entry.is_file() and _is_image(entry.name):
      images.append(entry.name)
  return dirs, images


def _layout_error(root: str, why: str) -> DatasetLayoutError:
  dirs, images = _listing(root)
  shown = ", ".join(dirs[:8]) + (", ..." if len(dirs) > 8 else "")
  shown = f" ({shown})" if dirs else ""
  found = f"Found {len(dirs)} folder(s){shown}, {len(images)} image(s)."
  return DatasetLayoutError(f"{root}: {why}\n{EXPECTED}\n{found}")


def open_imagenet(root: str | os.PathLike, layout: str = "auto", *,
                  labels_file: str | os.PathLike | None = None,
                  tfds_data_dir: str | None = None) -> LabelledImages:
  """Opens an ImageNet validation set; see the module docstring for the layouts."""
  root = os.fspath(root)
  if layout not in LAYOUTS:
    raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
  if layout == "tfds":
    from groupvit_jax.classification.imagenet_tfds import open_tfds  # pylint: disable=g-import-not-at-top
    return open_tfds(root, tfds_data_dir)
  if not os.path.isdir(root):
    raise DatasetLayoutError(f"{root}: no such directory\n{EXPECTED}")
  if labels_file is not None:
    if layout == "folders":
      raise ValueError("--ground-truth is for the flat layout; the folders layout takes its labels "
                       "from the folder names")
    return _open_flat(root, os.fspath(labels_file))
  if layout == "flat":
    raise _layout_error(root, "the flat layout needs a labels file (--ground-truth).")
  return _open_folders(root)


def _open_folders(root: str) -> LabelledImages:
  dirs, images = _listing(root)
  index = synset_to_index()
  synset_dirs = [d for d in dirs if d in index]
  if not synset_dirs:
    for sub in ("val", "validation", "ILSVRC2012_img_val"):
      if sub in dirs and any(d in index for d in _listing(os.path.join(root, sub))[0]):
        raise _layout_error(root, f"no class folders here; did you mean {os.path.join(root, sub)}?")
    if os.path.isfile(os.path.join(root, TFDS_VAL_TAR)):
      raise _layout_error(root, f"found {TFDS_VAL_TAR}: use --layout tfds to read it.")
    if images:
      raise _layout_error(root, "images without class folders: a flat folder needs --ground-truth.")
    raise _layout_error(root, "no ImageNet class folders found.")
  others = [d for d in dirs if d not in index]
  if others:
    raise _layout_error(root, f"folders that are not ImageNet WordNet ids: {others[:8]}; every "
                        "class folder must be named by one of the 1000 ids (n01440764 ...).")
  samples, skipped = [], 0
  for synset in synset_dirs:
    for dirpath, subdirs, files in os.walk(os.path.join(root, synset)):
      subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
      for name in sorted(files):
        if _is_image(name):
          samples.append((os.path.join(dirpath, name), index[synset]))
        elif not name.startswith("."):
          skipped += 1
  if not samples:
    raise _layout_error(root, f"{len(synset_dirs)} class folder(s) but no images in them "
                        f"(extensions {', '.join(IMAGE_EXTENSIONS)}).")
  notes = [f"ignored {skipped} non-image file(s) inside class folders"] if skipped else []
  if images:
    notes.append(f"ignored {len(images)} image(s) directly in {root} (not in a class folder)")
  present = len({label for _, label in samples})
  return LabelledImages("folders", root, len(samples), lambda: samples, load_image, present, notes)


def _parse_label(field: str, where: str) -> int:
  index = synset_to_index()
  if _SYNSET.match(field):
    if field not in index:
      raise DatasetLayoutError(f"{where}: {field!r} is not one of the 1000 ImageNet-1k WordNet ids")
    return index[field]
  if field.isdigit():
    value = int(field)
    if value >= len(index):
      raise DatasetLayoutError(
          f"{where}: class index {value} is outside 0-999 (indices are 0-based in sorted "
          "WordNet-id order; the devkit's 1-based ILSVRC2012_IDs use another order)")
    return value
  raise DatasetLayoutError(f"{where}: label {field!r} is neither a WordNet id (n01440764) nor a "
                           "class index 0-999")


def _read_label_lines(labels_file: str) -> list[tuple[int, list[str]]]:
  if not os.path.isfile(labels_file):
    raise DatasetLayoutError(f"{labels_file}: no such labels file")
  try:
    with open(labels_file, encoding="utf-8") as f:
      text = f.read()
  except UnicodeDecodeError as e:
    raise DatasetLayoutError(f"{labels_file}: not a UTF-8 text file ({e})") from e
  lines = []
  for number, line in enumerate(text.splitlines(), 1):
    line = line.strip()
    if line and not line.startswith("#"):
      lines.append((number, [f for f in re.split(r"[,\s]+", line) if f]))
  if not lines:
    raise DatasetLayoutError(f"{labels_file}: no labels in the file")
  return lines


def _open_flat(root: str, labels_file: str) -> LabelledImages:
  _, images = _listing(root)
  lines = _read_label_lines(labels_file)
  if len(lines[0][1]) >= 2 and not _SYNSET.match(lines[0][1][1]) and not lines[0][1][1].isdigit():
    lines = lines[1:]  # a header line such as "ImageId,PredictionString"
  one_column = len(lines[0][1]) == 1 if lines else False
  samples = []
  if one_column:
    if not images:
      raise _layout_error(root, "no images for the labels file.")
    if lines[0][1][0].isdigit():
      raise DatasetLayoutError(
          f"{labels_file}: one integer per line is ambiguous (the devkit's "
          "ILSVRC2012_validation_ground_truth.txt uses 1-based ids in another order); write "
          "'FILE INDEX' lines with 0-999 indices in sorted WordNet-id order, or one WordNet id per "
          "line")
    if len(lines) != len(images):
      raise DatasetLayoutError(
          f"{labels_file}: {len(lines)} labels for {len(images)} images in {root}; a one-column "
          "labels file needs exactly one WordNet id per image, in sorted file-name order")
    for (number, fields), name in zip(lines, images):
      if len(fields) != 1:
        raise DatasetLayoutError(f"{labels_file}:{number}: expected one WordNet id per line "
                                 f"(like the first line), got {len(fields)} fields")
      where = f"{labels_file}:{number}"
      samples.append((os.path.join(root, name), _parse_label(fields[0], where)))
  else:
    stems: dict[str, list[str]] = {}
    for name in images:
      stems.setdefault(os.path.splitext(name)[0], []).append(name)
    listed: dict[str, int] = {}
    for number, fields in lines:
      where = f"{labels_file}:{number}"
      if len(fields) < 2:
        raise DatasetLayoutError(f"{where}: expected 'FILE LABEL' (like the first line), got "
                                 f"{' '.join(fields)!r}")
      path = os.path.join(root, fields[0])
      if not os.path.isfile(path):
        match = stems.get(fields[0], [])
        if len(match) != 1:
          why = "several images have that name" if match else "no such image"
          raise DatasetLayoutError(f"{where}: {path}: {why}")
        path = os.path.join(root, match[0])
      if path in listed:
        raise DatasetLayoutError(f"{where}: {path} is already labelled on line {listed[path]}")
      listed[path] = number
      samples.append((path, _parse_label(fields[1], where)))
  if not samples:
    raise DatasetLayoutError(f"{labels_file}: no labels after the header line")
  notes = []
  unlisted = len(images) - len({p for p, _ in samples if os.path.dirname(p) == root})
  if not one_column and unlisted > 0:
    notes.append(f"{unlisted} image(s) in {root} are not in the labels file and were skipped")
  present = len({label for _, label in samples})
  return LabelledImages("flat", root, len(samples), lambda: samples, load_image, present, notes)


def decode_image_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
  """Encoded image bytes -> uint8 [H, W, 3] RGB, with the same conversions as ``load_image``."""
  try:
    with Image.open(io.BytesIO(data)) as img:
      img.load()
      return to_rgb_uint8(ImageOps.exif_transpose(img))
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise ImageReadError(f"{name}: cannot decode image ({e})") from e

