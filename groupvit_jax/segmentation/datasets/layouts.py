"""Readers of the benchmarks' official on-disk layouts (the mmseg conventions the GroupViT code and
later papers use). Each ``open_<name>(root, split)`` returns a ``SegDataset`` or raises a
``DatasetLayoutError`` listing the paths it expected.
"""

from __future__ import annotations

import os

import numpy as np

from groupvit_jax.segmentation.datasets import classes as C
from groupvit_jax.segmentation.datasets.base import (Sample, SegDataset, layout_error,
                                                 check_present, find_files, reduce_zero_lut,
                                                 table_lut)


def _first_layout(root: str, bases: tuple[str, ...], required: tuple[str, ...]) -> str | None:
  for base in bases:
    if all(os.path.exists(os.path.join(root, base, r)) for r in required):
      return os.path.join(root, base)
  return None


def _expected(root: str, bases: tuple[str, ...], required: tuple[str, ...]) -> list[str]:
  out = [os.path.join(root, bases[0], r) for r in required]
  for base in bases[1:]:
    out.append(f"(or the same under {os.path.join(root, base) if base else root})")
  return out


def _split_list(name, root, split, bases, split_dir, img_dir, ann_dir, img_ext, ann_ext, cls, lut):
  """Layouts with an ImageSets split file (VOC, PASCAL Context)."""
  split_rel = os.path.join(split_dir, f"{split}.txt")
  required = (split_rel, img_dir, ann_dir)
  base = _first_layout(root, bases, required)
  if base is None:
    raise layout_error(name, root, _expected(root, bases, required))
  with open(os.path.join(base, split_rel)) as f:
    ids = [line.split()[0] for line in f if line.strip()]
  samples = [Sample(i, os.path.join(base, img_dir, i + img_ext), os.path.join(base, ann_dir, i + ann_ext),
                    lut) for i in ids]
  check_present(name, root, samples, lambda s: s.image_path)
  check_present(name, root, samples, lambda s: s.label_path)
  return SegDataset(name, cls, root, samples)


def open_voc(root: str, split: str = "val") -> SegDataset:
  """PASCAL VOC 2012, 21 classes. ``root`` holds ``VOC2012/`` (like ``VOCdevkit``)."""
  return _split_list("voc", root, split, ("VOC2012", "VOCdevkit/VOC2012"),
                     "ImageSets/Segmentation", "JPEGImages", "SegmentationClass", ".jpg", ".png",
                     C.VOC, None)


def open_voc20(root: str, split: str = "val") -> SegDataset:
  """VOC 2012 without background (20 classes; background pixels ignored)."""
  return _split_list("voc20", root, split, ("VOC2012", "VOCdevkit/VOC2012"),
                     "ImageSets/Segmentation", "JPEGImages", "SegmentationClass", ".jpg", ".png",
                     C.VOC[1:], reduce_zero_lut())


def open_context(root: str, split: str = "val") -> SegDataset:
  """PASCAL Context, 59 classes + background. ``root`` holds ``VOC2010/`` with the
  ``SegmentationClassContext`` labels of mmseg's converter."""
  return _split_list("context", root, split, ("VOC2010", "VOCdevkit/VOC2010"),
                     "ImageSets/SegmentationContext", "JPEGImages", "SegmentationClassContext",
                     ".jpg", ".png", C.CONTEXT, None)


def open_context59(root: str, split: str = "val") -> SegDataset:
  """PASCAL Context without background (59 classes; background pixels ignored)."""
  return _split_list("context59", root, split, ("VOC2010", "VOCdevkit/VOC2010"),
                     "ImageSets/SegmentationContext", "JPEGImages", "SegmentationClassContext",
                     ".jpg", ".png", C.CONTEXT[1:], reduce_zero_lut())


_COCO_USED = [i for i in range(91) if i not in C.COCO_UNUSED_THING_IDS]  # 80 thing ids
# convert_coco_object.py: thing ids -> 1..80; every stuff id and 255 (unlabeled) -> 0.
COCO_OBJECT_LUT = table_lut({k: i + 1 for i, k in enumerate(_COCO_USED)}, default=0)
# mmseg coco_stuff164k converter: the 171 used ids -> 0..170; 255 stays ignore.
COCO_STUFF_LUT = table_lut({k: i for i, k in enumerate(_COCO_USED + list(range(91, 182)))},
                           default=255)


def _coco(name: str, root: str, split: str, converted_suffix: str, lut: np.ndarray, cls):
  """COCO-Stuff-164k layout: ``images/{split}2017/*.jpg``, ``annotations/{split}2017/*.png``."""
  img_dir, ann_dir = f"images/{split}2017", f"annotations/{split}2017"
  bases = ("", "coco_stuff164k", "coco")
  base = _first_layout(root, bases, (img_dir, ann_dir))
  if base is None:
    raise layout_error(
        name, root, _expected(root, bases, (img_dir + "/<id>.jpg", ann_dir + "/<id>.png")),
        f"Labels: the raw COCO-Stuff-164k maps <id>.png (converted on the fly) or "
        f"<id>{converted_suffix}.")
  samples = []
  for rel in find_files(os.path.join(base, img_dir), ".jpg"):
    key = rel[:-4]
    converted = os.path.join(base, ann_dir, key + converted_suffix)
    if os.path.isfile(converted):
      samples.append(Sample(key, os.path.join(base, img_dir, rel), converted, None))
    else:
      samples.append(Sample(key, os.path.join(base, img_dir, rel),
                            os.path.join(base, ann_dir, key + ".png"), lut))
  if not samples:
    raise layout_error(name, root, _expected(root, bases, (img_dir + "/<id>.jpg",)),
                             "the image folder holds no .jpg file")
  check_present(name, root, samples, lambda s: s.label_path)
  return SegDataset(name, cls, root, samples)


def open_coco_object(root: str, split: str = "val") -> SegDataset:
  """COCO-Object (80 things + background), built from COCO-Stuff-164k (spec 5.5)."""
  return _coco("coco_object", root, split, "_instanceTrainIds.png", COCO_OBJECT_LUT, C.COCO_OBJECT)


def open_coco_stuff(root: str, split: str = "val") -> SegDataset:
  """COCO-Stuff-164k, 171 classes."""
  return _coco("coco_stuff", root, split, "_labelTrainIds.png", COCO_STUFF_LUT, C.COCO_STUFF)


CITYSCAPES_LUT = table_lut(C.CITYSCAPES_ID_TO_TRAINID, default=255)


def open_cityscapes(root: str, split: str = "val") -> SegDataset:
  """Cityscapes, 19 classes: ``leftImg8bit/{split}/<city>/*_leftImg8bit.png`` and
  ``gtFine/{split}/<city>/*_gtFine_labelTrainIds.png`` (or ``*_labelIds.png``, converted)."""
  img_dir, ann_dir = f"leftImg8bit/{split}", f"gtFine/{split}"
  bases = ("", "cityscapes")
  base = _first_layout(root, bases, (img_dir, ann_dir))
  if base is None:
    raise layout_error("cityscapes", root, _expected(
        root, bases, (img_dir + "/<city>/<name>_leftImg8bit.png",
                      ann_dir + "/<city>/<name>_gtFine_labelTrainIds.png")))
  samples = []
  for rel in find_files(os.path.join(base, img_dir), "_leftImg8bit.png"):
    stem = rel[:-len("_leftImg8bit.png")]
    train_ids = os.path.join(base, ann_dir, stem + "_gtFine_labelTrainIds.png")
    if os.path.isfile(train_ids):
      samples.append(Sample(stem, os.path.join(base, img_dir, rel), train_ids, None))
    else:
      samples.append(Sample(stem, os.path.join(base, img_dir, rel),
                            os.path.join(base, ann_dir, stem + "_gtFine_labelIds.png"),
                            CITYSCAPES_LUT))
  if not samples:
    raise layout_error("cityscapes", root, [os.path.join(base, img_dir)],
                             "no *_leftImg8bit.png image found")
  check_present("cityscapes", root, samples, lambda s: s.label_path)
  return SegDataset("cityscapes", C.CITYSCAPES, root, samples)


def open_ade20k(root: str, split: str = "val") -> SegDataset:
  """ADE20K (SceneParsing), 150 classes; label 0 ('other') is ignored."""
  sub = {"val": "validation", "train": "training"}.get(split, split)
  img_dir, ann_dir = f"images/{sub}", f"annotations/{sub}"
  bases = ("ADEChallengeData2016", "")
  base = _first_layout(root, bases, (img_dir, ann_dir))
  if base is None:
    raise layout_error("ade20k", root, _expected(
        root, bases, (img_dir + "/<id>.jpg", ann_dir + "/<id>.png")))
  samples = [Sample(rel[:-4], os.path.join(base, img_dir, rel),
                    os.path.join(base, ann_dir, rel[:-4] + ".png"), reduce_zero_lut())
             for rel in find_files(os.path.join(base, img_dir), ".jpg")]
  if not samples:
    raise layout_error("ade20k", root, [os.path.join(base, img_dir)], "no .jpg image found")
  check_present("ade20k", root, samples, lambda s: s.label_path)
  return SegDataset("ade20k", C.ADE20K, root, samples)
