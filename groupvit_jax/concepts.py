"""Concept maps: what each group token of a stage gathers, over a folder of images (the
paper's figure of learnt concepts).

Each image is resized (shorter side = ``size``, OpenCV INTER_LINEAR) and centre-cropped to
``size x size``, then run once through the image encoder. For stage ``s``, the composed soft
assignment of every pixel to the stage's ``S_s`` groups (``dense.compose_stage_maps``,
upsampled like the segmentation's group maps) gives, per group token ``g``:

- its region in an image: the pixels whose argmax over groups is ``g``;
- its score there: the soft mass of ``g`` over the image, ``mean_pixels p_g`` (the share of the
  image that the token gathers; scores of one image sum to 1 over its groups).

A group token's top-K regions are the K images where its score is highest (and its region is
not empty). The grid has a row per group token, its top-K regions cropped to their bounding
box (plus a margin) with the region's outline drawn.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

OUTLINE = np.asarray([255, 32, 32], np.uint8)


@dataclasses.dataclass
class Region:
  """A group token's region in one image."""

  image: int  # index into the image list
  score: float  # mean soft assignment of the token over the image (its share)
  box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in the size x size crop, x1/y1 exclusive
  mask: np.ndarray  # bool [size, size]


def square_crop(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, int, int]]:
  """uint8 [h, w, 3] -> uint8 [size, size, 3] (shorter side to ``size``, centre crop) and the
  map back to the original pixels: (scale, left, top) with ``x_orig = (x + left) / scale``."""
  from groupvit_jax.segmentation.windows import resize_image  # pylint: disable=g-import-not-at-top
  h, w = image.shape[:2]
  scale = size / min(h, w)
  nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
  resized = resize_image(image, (nh, nw))
  top, left = (nh - size) // 2, (nw - size) // 2
  return resized[top:top + size, left:left + size], (scale, left, top)


@functools.lru_cache(maxsize=8)
def _soft_maps_fn(graphdef, size: int, patch: int):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from groupvit_jax.preprocessing import IMAGENET_MEAN, IMAGENET_STD  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation import dense  # pylint: disable=g-import-not-at-top

  def fn(state, images_u8):  # [B, size, size, 3] uint8 -> per stage [B, size, size, S_s]
    x = (images_u8.astype(jnp.float32) / 255.0 - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    enc = nnx.merge(graphdef, state).encode_image(x)
    return [dense.upsample_group_maps(m, (size, size), patch)
            for m in dense.compose_stage_maps(enc["soft"], enc["tokens"])]

  return jax.jit(fn)


def stage_soft_maps(model, crops: np.ndarray, batch_size: int = 8) -> list[np.ndarray]:
  """uint8 [N, size, size, 3] -> one float32 [N, size, size, S_s] soft map per stage (the last
  batch is zero-padded, so every call has the same shape)."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  graphdef, state = nnx.split(model)
  fn = _soft_maps_fn(graphdef, crops.shape[1], model.config.vision.patch_size)
  per_stage: list[list[np.ndarray]] = []
  for start in range(0, len(crops), batch_size):
    chunk = crops[start:start + batch_size]
    n = len(chunk)
    if n < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - n,) + chunk.shape[1:], np.uint8)])
    maps = fn(state, chunk)
    if not per_stage:
      per_stage = [[] for _ in maps]
    for s, m in enumerate(maps):
      per_stage[s].append(np.asarray(m[:n], np.float32))
  return [np.concatenate(parts) for parts in per_stage]


def top_regions(soft: np.ndarray, top_k: int) -> list[list[Region]]:
  """soft: [N, H, W, S] one stage's soft maps -> per group token, its best ``top_k`` regions
  (highest score first; fewer when the token wins no pixel in enough images)."""
  hard = soft.argmax(axis=-1)  # [N, H, W]
  scores = soft.mean(axis=(1, 2))  # [N, S]
  out = []
  for g in range(soft.shape[-1]):
    regions = []
    for i in np.argsort(-scores[:, g], kind="stable"):
      mask = hard[i] == g
      if not mask.any():
        continue
      ys, xs = np.nonzero(mask)
      box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
      regions.append(Region(int(i), float(scores[i, g]), box, mask))
      if len(regions) == top_k:
        break
    out.append(regions)
  return out


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
  """bool [H, W] -> bool [H, W]: the region's pixels that touch a pixel outside it (or the
  border), thickened to ``width`` pixels."""
  padded = np.pad(mask, 1, constant_values=False)
  inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
  edge = mask & ~inner
  for _ in range(width - 1):
    p = np.pad(edge, 1, constant_values=False)
    edge = edge | (mask & (p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]))
  return edge


def region_tile(crop: np.ndarray, region: Region, tile: int, margin: float = 0.15) -> np.ndarray:
  """The region's box (grown by ``margin`` on each side, kept square when it fits) cut from
  the image with the outline drawn, resized to uint8 [tile, tile, 3]."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  size = crop.shape[0]
  x0, y0, x1, y1 = region.box
  side = max(x1 - x0, y1 - y0)
  side = min(size, int(round(side * (1 + 2 * margin))) + 2)
  cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
  left = int(np.clip(cx - side // 2, 0, size - side))
  top = int(np.clip(cy - side // 2, 0, size - side))
  shown = crop.copy()
  edge = outline(region.mask, width=max(1, size // 112))
  shown[edge] = OUTLINE
  cut = shown[top:top + side, left:left + side]
  return np.asarray(Image.fromarray(cut).resize((tile, tile), Image.NEAREST if side < tile
                                                   else Image.BILINEAR))


def concept_grid(crops: np.ndarray, regions: Sequence[Sequence[Region]], top_k: int, *,
                 tile: int = 96, stage: int = 0):
  """The stage's picture: a row per group token (labelled), its top-K region tiles."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.visualize import _font  # pylint: disable=g-import-not-at-top
  gap, label_w, title_h = 4, 64, 24
  rows = len(regions)
  width = label_w + top_k * (tile + gap) + gap
  height = title_h + rows * (tile + gap) + gap
  canvas = Image.new("RGB", (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  font = _font(14)
  draw.text((gap, 4), f"stage {stage}: {rows} group tokens, top {top_k} regions each",
            fill=(0, 0, 0), font=font)
  for g, regs in enumerate(regions):
    y = title_h + g * (tile + gap)
    draw.text((gap, y + tile // 2 - 8), f"g{g}", fill=(0, 0, 0), font=font)
    for k, reg in enumerate(regs):
      x = label_w + k * (tile + gap)
      canvas.paste(Image.fromarray(region_tile(crops[reg.image], reg, tile)), (x, y))
  return canvas


def original_box(box: tuple[int, int, int, int], mapping: tuple[float, int, int],
                 hw: tuple[int, int]) -> list[int]:
  """A box in the square crop -> the same box in the original image's pixels."""
  scale, left, top = mapping
  x0, y0, x1, y1 = box
  return [int(np.clip(np.floor((x0 + left) / scale), 0, hw[1])),
          int(np.clip(np.floor((y0 + top) / scale), 0, hw[0])),
          int(np.clip(np.ceil((x1 + left) / scale), 0, hw[1])),
          int(np.clip(np.ceil((y1 + top) / scale), 0, hw[0]))]
