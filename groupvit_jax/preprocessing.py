"""Image normalisation and the reference's classification preprocessing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from groupvit_jax.image_io import to_rgb_uint8

# The reference normalises with ImageNet statistics everywhere (not CLIP's; spec 7.2.4).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def normalize(images: np.ndarray) -> np.ndarray:
  """uint8 [..., H, W, 3] -> float32 ``(x/255 - mean) / std``."""
  x = np.asarray(images, np.float32) / 255.0
  return (x - IMAGENET_MEAN) / IMAGENET_STD


def resize_center_crop(img: Image.Image, resize: int, crop: int) -> Image.Image:
  """torchvision ``Resize(resize)`` (shorter side, PIL bilinear) then ``CenterCrop(crop)``."""
  w, h = img.size
  if w <= h:
    nw, nh = resize, int(resize * h / w)
  else:
    nw, nh = int(resize * w / h), resize
  img = img.resize((nw, nh), Image.BILINEAR)
  left = int(round((nw - crop) / 2.0))
  top = int(round((nh - crop) / 2.0))
  return img.crop((left, top, left + crop, top + crop))


def preprocess_images(images: Sequence[Image.Image | np.ndarray] | Image.Image | np.ndarray,
                      image_size: int = 224, resize: int | None = 256) -> np.ndarray:
  """Images -> model input, the reference's evaluation transform.

  Args:
    images: PIL images or uint8 [H, W, 3] arrays (one or a list).
    image_size: center-crop size.
    resize: shorter side before the crop (256 in the reference); None resizes straight to
      ``image_size`` x ``image_size``.
  Returns:
    float32 [N, image_size, image_size, 3] (NHWC), ImageNet-normalised.
  """
  if isinstance(images, (Image.Image, np.ndarray)):
    images = [images]
  out = []
  for img in images:
    if isinstance(img, np.ndarray):
      if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"array images must be uint8 [H, W, 3], got {img.dtype} {img.shape}")
      img = Image.fromarray(img)
    img = Image.fromarray(to_rgb_uint8(img))
    if resize is None:
      img = img.resize((image_size, image_size), Image.BILINEAR)
    else:
      img = resize_center_crop(img, resize, image_size)
    out.append(np.asarray(img))
  return normalize(np.stack(out))
