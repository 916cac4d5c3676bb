"""Small ImageNet-style folders made by the tests (no real ImageNet images)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from groupvit_jax.classification.imagenet_classes import imagenet_synsets


def write_image(path, value: int | None = None, size=(48, 40), seed: int = 0, fmt=None) -> str:
  """A uniform grey image of ``value`` (or random noise when None), ``size`` = (w, h)."""
  os.makedirs(os.path.dirname(str(path)), exist_ok=True)
  w, h = size
  if value is None:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
  else:
    arr = np.full((h, w, 3), value, np.uint8)
  Image.fromarray(arr).save(str(path), format=fmt)
  return str(path)


def make_folders(root, counts: dict[int, int], ext: str = ".png", value_of=None) -> list:
  """``counts``: class index -> number of images; writes ROOT/<synset>/img<j><ext>.

  ``value_of(k)`` gives the grey level of the k-th image in the layout's reading order (classes
  sorted, then file names); None writes noise. Returns ``[(path, label)]`` in that order.
  """
  synsets = imagenet_synsets()
  out, k = [], 0
  for label in sorted(counts):
    for j in range(counts[label]):
      path = os.path.join(str(root), synsets[label], f"img{j}{ext}")
      write_image(path, None if value_of is None else value_of(k), seed=k)
      out.append((path, label))
      k += 1
  return out
