"""Segmentation benchmarks read from their official layouts under a data root.

``open_dataset('voc', '/data/VOCdevkit')`` returns a ``SegDataset`` whose items are
``Example(key, image uint8 [H, W, 3], label uint8 [H, W])`` (255 = ignore). tfds builders for the
same datasets live in ``groupvit_jax.segmentation.datasets.tfds_builders`` (needs the ``tf`` extra).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from groupvit_jax.segmentation.datasets import classes, folder, layouts
from groupvit_jax.segmentation.datasets.base import (DatasetLayoutError, Example, SegDataset,
                                                 read_label)


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
  reader: Callable[[str, str], SegDataset]  # (root, split) -> dataset
  classes: tuple[str, ...]  # every label id's name (empty: read from the data, see folder.py)
  root_hint: str  # what the data root is


_VOC_ROOT = "the folder holding VOC2012/ (e.g. VOCdevkit)"
_CONTEXT_ROOT = "the folder holding VOC2010/ with SegmentationClassContext/"
_COCO_ROOT = "the COCO-Stuff-164k folder (images/val2017, annotations/val2017)"
DATASETS: dict[str, DatasetEntry] = {
    "voc": DatasetEntry(layouts.open_voc, classes.VOC, _VOC_ROOT),
    "voc20": DatasetEntry(layouts.open_voc20, classes.VOC[1:], _VOC_ROOT),
    "context": DatasetEntry(layouts.open_context, classes.CONTEXT, _CONTEXT_ROOT),
    "context59": DatasetEntry(layouts.open_context59, classes.CONTEXT[1:], _CONTEXT_ROOT),
    "coco_object": DatasetEntry(layouts.open_coco_object, classes.COCO_OBJECT, _COCO_ROOT),
    "coco_stuff": DatasetEntry(layouts.open_coco_stuff, classes.COCO_STUFF, _COCO_ROOT),
    "cityscapes": DatasetEntry(layouts.open_cityscapes, classes.CITYSCAPES,
                               "the Cityscapes folder (leftImg8bit/, gtFine/)"),
    "ade20k": DatasetEntry(layouts.open_ade20k, classes.ADE20K,
                           "the folder holding ADEChallengeData2016/"),
    "folder": DatasetEntry(folder.open_folder, (),
                           "a folder with classes.txt and <split>/images, <split>/labels"),
}


def open_dataset(name: str, root: str, split: str = "val") -> SegDataset:
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
  return DATASETS[name].reader(str(root), split)


__all__ = ["DATASETS", "DatasetEntry", "DatasetLayoutError", "Example", "SegDataset", "classes", "open_dataset",
           "read_label"]
