"""Host-side geometry of the segmentation protocol (spec 5.2, 5.3): the keep-ratio resize, the
sliding windows, the taps of the final bilinear resize and the shape buckets.

Everything here is plain numpy/OpenCV on static sizes; the jitted code receives its results as
arrays (window offsets, interpolation taps), so images of different sizes share compilations.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from groupvit_jax.interpolate import source_coords


def rescale_size(h: int, w: int, img_scale: tuple[int, int] = (2048, 448)) -> tuple[int, int]:
  """mmcv ``rescale_size``: the keep-ratio size bounded by ``img_scale`` (long, short edge).

  Returns:
    (new_h, new_w) with ``f = min(long / max(h, w), short / min(h, w))`` and
    ``new = int(old * f + 0.5)`` (so the shorter side becomes 448 unless the aspect exceeds 4.57).
  """
  long_edge, short_edge = max(img_scale), min(img_scale)
  f = min(long_edge / max(h, w), short_edge / min(h, w))
  return int(h * f + 0.5), int(w * f + 0.5)


def resize_image(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
  """uint8 [h, w, 3] -> uint8 [H, W, 3] with OpenCV INTER_LINEAR (the reference resize; PIL's
  bilinear antialiases when downscaling)."""
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
  h, w = size_hw
  if image.shape[:2] == (h, w):
    return image
  return cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=cv2.INTER_LINEAR)


def num_grids(size: int, crop: int, stride: int) -> int:
  """mmseg ``slide_inference``: ``max(size - crop + stride - 1, 0) // stride + 1``."""
  return max(size - crop + stride - 1, 0) // stride + 1


def slide_windows(h: int, w: int, crop: int, stride: int) -> np.ndarray:
  """Sliding windows over an (h, w) image, the last one snapped to the border.

  Returns:
    int32 [K, 4] rows ``(y1, y2, x1, x2)``, row-major over the grid (as mmseg loops). Every
    window has the same size ``(min(crop, h), min(crop, w))``.
  """
  out = []
  for gy in range(num_grids(h, crop, stride)):
    for gx in range(num_grids(w, crop, stride)):
      y1, x1 = gy * stride, gx * stride
      y2, x2 = min(y1 + crop, h), min(x1 + crop, w)
      y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
      out.append((y1, y2, x1, x2))
  return np.asarray(out, np.int32)


def bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
  """The two taps per output index of PyTorch ``bilinear, align_corners=False`` (no antialias).

  Returns:
    idx int32 [out, 2] source indices and wts float32 [out, 2] their weights; applying them is
    the same as multiplying by ``groupvit_jax.interpolate.bilinear_matrix(in_size, out_size)``.
  """
  idx, wts = _taps(in_size, out_size)
  return idx.copy(), wts.copy()


@functools.lru_cache(maxsize=512)
def _taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
  if in_size == out_size:
    i0 = np.arange(out_size, dtype=np.int64)
    lam = np.zeros(out_size)
  else:
    # The float32 coordinates of interpolate.bilinear_matrix, so both give the same weights.
    s = np.maximum(source_coords(in_size, out_size).astype(np.float64), 0.0)
    i0 = s.astype(np.int64)  # floor, s >= 0
    lam = s - i0
  i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
  idx = np.stack([i0, i1], -1).astype(np.int32)
  wts = np.stack([1.0 - lam, lam], -1).astype(np.float32)
  return idx, wts


def padded_taps(in_size: int, out_size: int, bucket: int) -> tuple[np.ndarray, np.ndarray]:
  """``bilinear_taps`` padded to ``bucket`` outputs (padding reads index 0 with weight 0)."""
  idx, wts = _taps(in_size, out_size)
  pad = bucket - out_size
  if pad < 0:
    raise ValueError(f"bucket {bucket} smaller than the output size {out_size}")
  return (np.pad(idx, ((0, pad), (0, 0))), np.pad(wts, ((0, pad), (0, 0))))


def size_bucket(n: int, minimum: int = 64) -> int:
  """Smallest size >= n in the geometric ladder 64, 96, 128, 192, 256, 384, 512, 768, ...

  Output buffers are padded to these sizes, so a dataset compiles a few shapes and no buffer is
  more than 1.5x the image.
  """
  size = minimum
  while True:
    if size >= n:
      return size
    if size * 3 // 2 >= n:
      return size * 3 // 2
    size *= 2


def canvas_size(num_windows: int, window: int, stride: int) -> int:
  """Largest image side that ``num_windows`` windows of ``window`` at ``stride`` cover."""
  return (num_windows - 1) * stride + window
