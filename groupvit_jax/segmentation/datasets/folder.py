"""A generic segmentation layout for your own data (and the synthetic shapes world):

    ROOT/classes.txt                 one class name per line; line i is label id i
                                     ('background' first if the data has a background class)
    ROOT/<split>/images/KEY.png      (or .jpg / .jpeg)
    ROOT/<split>/labels/KEY.png      8-bit label map, 255 = ignore
"""

from __future__ import annotations

import os

from groupvit_jax.segmentation.datasets.base import (Sample, SegDataset, layout_error,
                                                 check_present)

IMAGE_EXTS = (".png", ".jpg", ".jpeg")


def read_classes(path: str) -> tuple[str, ...]:
  with open(path, encoding="utf-8") as f:
    names = tuple(line.strip() for line in f if line.strip())
  if not names:
    raise layout_error("folder", os.path.dirname(path), [], f"{path} lists no class names")
  if len(set(names)) != len(names):
    raise layout_error("folder", os.path.dirname(path), [], f"{path} repeats class names")
  return names


def open_folder(root: str, split: str = "val", name: str = "folder") -> SegDataset:
  classes_path = os.path.join(root, "classes.txt")
  images_dir = os.path.join(root, split, "images")
  labels_dir = os.path.join(root, split, "labels")
  if not (os.path.isfile(classes_path) and os.path.isdir(images_dir) and os.path.isdir(labels_dir)):
    raise layout_error(name, root, [classes_path, images_dir + "/KEY.png (or .jpg)",
                                          labels_dir + "/KEY.png"])
  samples = []
  for f in sorted(os.listdir(images_dir)):
    key, ext = os.path.splitext(f)
    if ext.lower() in IMAGE_EXTS:
      samples.append(Sample(key, os.path.join(images_dir, f), os.path.join(labels_dir, key + ".png")))
  check_present(name, root, samples, lambda s: s.label_path)
  return SegDataset(name, read_classes(classes_path), root, samples)
