"""Reading user images as RGB uint8 arrays, whatever their mode, orientation or bit depth.

Like the reference's ``cv2.imread``, the EXIF orientation is applied and alpha is dropped.
Grayscale, palette, CMYK, 16-bit and float images become 8-bit RGB.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageReadError(ValueError):
  """An image file that cannot be read; the message names the file."""


def to_rgb_uint8(img: Image.Image) -> np.ndarray:
  """PIL image of any mode -> [H, W, 3] uint8."""
  if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
    arr = np.asarray(img, dtype=np.float64)
    top = arr.max() if arr.size else 0.0
    scale = 65535.0 if top > 255 else (1.0 if (img.mode == "F" and top <= 1.0) else 255.0)
    arr = np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(arr[..., None], 3, axis=-1)
  if img.mode != "RGB":
    img = img.convert("RGB")
  return np.asarray(img, dtype=np.uint8)


def load_image(path: str | os.PathLike) -> np.ndarray:
  """Reads ``path`` as [H, W, 3] uint8 RGB with its EXIF orientation applied.

  Raises:
    ImageReadError: missing, truncated or unreadable file (the message names it).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ImageReadError(f"{path}: no such image file")
  try:
    with Image.open(path) as img:
      img.load()
      img = ImageOps.exif_transpose(img)
      return to_rgb_uint8(img)
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise ImageReadError(f"{path}: cannot read image ({e})") from e
