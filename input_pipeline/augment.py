"""The reference's training image transform (spec section 4; timm 0.4.12 ``create_transform``).

RandomResizedCrop(224, scale (0.08, 1), ratio (3/4, 4/3), PIL bilinear) -> horizontal flip
(p 0.5) -> RandAugment ``rand-m9-mstd0.5-inc1`` -> /255 -> ImageNet normalise -> RandomErasing
(p 0.25, mode 'pixel': N(0, 1) noise in normalised space, one box). ColorJitter is not applied
(timm skips it when an auto-augment policy is set). Every random draw comes from the
``numpy.random.Generator`` passed in, so a sample's augmentation depends only on its seed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image

from groupvit_jax.preprocessing import normalize, resize_center_crop
from input_pipeline.rand_augment import RandAugment


def random_resized_crop_params(width: int, height: int, rng: np.random.Generator,
                               scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
  """timm ``RandomResizedCropAndInterpolation.get_params`` -> ``(top, left, h, w)``."""
  area = width * height
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target_area = rng.uniform(*scale) * area
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if w <= width and h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return top, left, h, w
  in_ratio = width / height  # fallback: central crop clamped to the ratio range
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def random_erasing(x: np.ndarray, rng: np.random.Generator, *, prob: float = 0.25,
                   min_area: float = 0.02, max_area: float = 1 / 3, min_aspect: float = 0.3
                   ) -> np.ndarray:
  """timm ``RandomErasing(mode='pixel', max_count=1)`` on a normalised [H, W, C] float image."""
  if rng.random() > prob:
    return x
  h_img, w_img, c = x.shape
  area = h_img * w_img
  log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
  for _ in range(10):
    target_area = rng.uniform(min_area, max_area) * area
    aspect = math.exp(rng.uniform(*log_aspect))
    h = int(round(math.sqrt(target_area * aspect)))
    w = int(round(math.sqrt(target_area / aspect)))
    if w < w_img and h < h_img:
      top = int(rng.integers(0, h_img - h + 1))
      left = int(rng.integers(0, w_img - w + 1))
      x = x.copy()
      x[top:top + h, left:left + w] = rng.standard_normal((h, w, c)).astype(x.dtype)
      break
  return x


@dataclasses.dataclass(frozen=True)
class TrainTransform:
  """Config of the training transform (``config.input.augment``); ``__call__`` applies it.

  Attributes:
    image_size: output side.
    crop_scale / crop_ratio: RandomResizedCrop ranges; ``crop_scale=(1, 1)`` and
      ``crop_ratio=(1, 1)`` on a square image is a plain resize.
    hflip: flip probability.
    randaugment: timm config string, '' for none.
    random_erasing: probability, 0 for none.
  """
  image_size: int = 224
  crop_scale: tuple[float, float] = (0.08, 1.0)
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  hflip: float = 0.5
  randaugment: str = "rand-m9-mstd0.5-inc1"
  random_erasing: float = 0.25

  def __post_init__(self):
    object.__setattr__(self, "_ra", RandAugment.from_string(self.randaugment)
                       if self.randaugment else None)

  def __call__(self, img: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """RGB PIL image -> float32 [image_size, image_size, 3] normalised."""
    top, left, h, w = random_resized_crop_params(img.width, img.height, rng, self.crop_scale,
                                                 self.crop_ratio)
    img = img.crop((left, top, left + w, top + h)).resize((self.image_size,) * 2, Image.BILINEAR)
    if self.hflip > 0 and rng.random() < self.hflip:
      img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if self._ra is not None:
      img = self._ra(img, rng)
    x = normalize(np.asarray(img, np.uint8))
    if self.random_erasing > 0:
      x = random_erasing(x, rng, prob=self.random_erasing)
    return x.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class EvalTransform:
  """Shorter side to ``resize`` (PIL bilinear), center crop ``image_size``, normalise."""
  image_size: int = 224
  resize: int = 256

  def __call__(self, img: Image.Image, rng: np.random.Generator | None = None) -> np.ndarray:
    del rng
    return normalize(np.asarray(resize_center_crop(img, self.resize, self.image_size)))
