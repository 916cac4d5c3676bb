"""RandAugment as timm 0.4.12 implements it (``rand_augment_transform``), on PIL images.

``rand-m9-mstd0.5-inc1``: 2 ops drawn uniformly *with* replacement from the 15 "increasing"
transforms; each op runs with probability 0.5 at a magnitude drawn from N(9, 0.5) clipped to
[0, 10]. Geometric ops fill with the ImageNet mean in uint8 (124, 116, 104) and resample
bilinearly (the training interpolation). Translations are relative (0.45 * level/10 of the
side): timm's ``translate_const`` hyper-parameter only feeds the absolute-translate ops, which
this policy does not use.

Randomness comes from a ``numpy.random.Generator`` (timm draws from Python's ``random`` and
numpy's global state); the distributions are the same.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

MAX_LEVEL = 10.0
FILL = (124, 116, 104)  # round(255 * IMAGENET_MEAN)

INCREASING_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
    "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
    "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
    "TranslateYRel")


def _affine(img: Image.Image, matrix) -> Image.Image:
  return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=FILL)


def _solarize_add(img: Image.Image, add: int, thresh: int = 128) -> Image.Image:
  lut = [min(255, i + add) if i < thresh else i for i in range(256)]
  return img.point(lut * 3) if img.mode == "RGB" else img


def _posterize(img: Image.Image, bits: int) -> Image.Image:
  """PIL's posterize; ``bits=0`` (PosterizeIncreasing at magnitude 10) gives the black image the
  old PIL of the reference produced (mask 0), which Pillow >= 10 refuses to compute."""
  if bits >= 8:
    return img
  if bits <= 0:
    return img.point(lambda _: 0)
  return ImageOps.posterize(img, bits)


OPS: dict[str, Callable] = {
    "AutoContrast": lambda img: ImageOps.autocontrast(img),
    "Equalize": lambda img: ImageOps.equalize(img),
    "Invert": lambda img: ImageOps.invert(img),
    "Rotate": lambda img, deg: img.rotate(deg, resample=Image.BILINEAR, fillcolor=FILL),
    "Posterize": _posterize, "PosterizeIncreasing": _posterize,
    "Solarize": lambda img, t: ImageOps.solarize(img, t),
    "SolarizeIncreasing": lambda img, t: ImageOps.solarize(img, t),
    "SolarizeAdd": _solarize_add,
    "Color": lambda img, f: ImageEnhance.Color(img).enhance(f),
    "ColorIncreasing": lambda img, f: ImageEnhance.Color(img).enhance(f),
    "Contrast": lambda img, f: ImageEnhance.Contrast(img).enhance(f),
    "ContrastIncreasing": lambda img, f: ImageEnhance.Contrast(img).enhance(f),
    "Brightness": lambda img, f: ImageEnhance.Brightness(img).enhance(f),
    "BrightnessIncreasing": lambda img, f: ImageEnhance.Brightness(img).enhance(f),
    "Sharpness": lambda img, f: ImageEnhance.Sharpness(img).enhance(f),
    "SharpnessIncreasing": lambda img, f: ImageEnhance.Sharpness(img).enhance(f),
    "ShearX": lambda img, f: _affine(img, (1, f, 0, 0, 1, 0)),
    "ShearY": lambda img, f: _affine(img, (1, 0, 0, f, 1, 0)),
    "TranslateXRel": lambda img, pct: _affine(img, (1, 0, pct * img.size[0], 0, 1, 0)),
    "TranslateYRel": lambda img, pct: _affine(img, (1, 0, 0, 0, 1, pct * img.size[1])),
}


def _negate(v: float, rng: np.random.Generator) -> float:
  return -v if rng.random() > 0.5 else v


def level_args(name: str, level: float, rng: np.random.Generator) -> tuple:
  """timm's ``LEVEL_TO_ARG``: magnitude in [0, 10] -> the op's arguments."""
  if name in ("AutoContrast", "Equalize", "Invert"):
    return ()
  if name == "Rotate":
    return (_negate(level / MAX_LEVEL * 30.0, rng),)
  if name == "Posterize":
    return (int(level / MAX_LEVEL * 4),)
  if name == "PosterizeIncreasing":
    return (4 - int(level / MAX_LEVEL * 4),)
  if name == "Solarize":
    return (int(level / MAX_LEVEL * 256),)
  if name == "SolarizeIncreasing":
    return (256 - int(level / MAX_LEVEL * 256),)
  if name == "SolarizeAdd":
    return (int(level / MAX_LEVEL * 110),)
  if name in ("Color", "Contrast", "Brightness", "Sharpness"):
    return (level / MAX_LEVEL * 1.8 + 0.1,)
  if name.endswith("Increasing"):  # Color/Contrast/Brightness/SharpnessIncreasing
    return (1.0 + _negate(level / MAX_LEVEL * 0.9, rng),)
  if name in ("ShearX", "ShearY"):
    return (_negate(level / MAX_LEVEL * 0.3, rng),)
  if name in ("TranslateXRel", "TranslateYRel"):
    return (_negate(level / MAX_LEVEL * 0.45, rng),)
  raise KeyError(name)


def apply_op(img: Image.Image, name: str, magnitude: float, rng: np.random.Generator) -> Image.Image:
  """One op at ``magnitude`` (already sampled and clipped)."""
  return OPS[name](img, *level_args(name, magnitude, rng))


class RandAugment:
  """``RandAugment.from_string('rand-m9-mstd0.5-inc1')(img, rng)``; defaults are timm's."""

  def __init__(self, magnitude: float = 10.0, magnitude_std: float = 0.0, num_layers: int = 2,
               increasing: bool = False, prob: float = 0.5):
    self.magnitude = magnitude
    self.magnitude_std = magnitude_std
    self.num_layers = num_layers
    self.names = INCREASING_TRANSFORMS if increasing else TRANSFORMS
    self.prob = prob

  @classmethod
  def from_string(cls, config: str) -> "RandAugment":
    """Parses timm's config string (``rand-m9-n2-mstd0.5-inc1``)."""
    sections = config.split("-")
    if sections[0] != "rand":
      raise ValueError(f"RandAugment config must start with 'rand', got {config!r}")
    kw = {}
    for sec in sections[1:]:
      parts = re.split(r"(\d.*)", sec)
      if len(parts) < 2:
        continue
      key, val = parts[:2]
      if key == "mstd":
        kw["magnitude_std"] = float(val)
      elif key == "inc":
        kw["increasing"] = bool(int(val))
      elif key == "m":
        kw["magnitude"] = float(int(val))
      elif key == "n":
        kw["num_layers"] = int(val)
      else:
        raise ValueError(f"unknown RandAugment config section {sec!r} in {config!r} "
                         f"(known: m, n, mstd, inc)")
    return cls(**kw)

  def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """img: RGB PIL image -> augmented RGB PIL image of the same size."""
    for idx in rng.choice(len(self.names), self.num_layers, replace=True):
      if self.prob < 1.0 and rng.random() > self.prob:
        continue
      magnitude = self.magnitude
      if self.magnitude_std == float("inf"):
        magnitude = rng.uniform(0, magnitude)
      elif self.magnitude_std > 0:
        magnitude = rng.normal(magnitude, self.magnitude_std)
      magnitude = min(MAX_LEVEL, max(0.0, magnitude))
      img = apply_op(img, self.names[int(idx)], magnitude, rng)
    return img
