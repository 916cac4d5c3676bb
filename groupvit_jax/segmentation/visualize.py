"""Pictures of segmentations: palette masks, overlays with a legend, and the groups of each stage.

Pure numpy + Pillow (no plotting library), so the CLI and notebooks share them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def label_palette(n: int = 256) -> np.ndarray:
  """The PASCAL VOC colour map: uint8 [n, 3], label 0 (background) is black."""
  out = np.zeros((n, 3), np.uint8)
  for i in range(n):
    c, r, g, b = i, 0, 0, 0
    for j in range(8):
      r |= ((c >> 0) & 1) << (7 - j)
      g |= ((c >> 1) & 1) << (7 - j)
      b |= ((c >> 2) & 1) << (7 - j)
      c >>= 3
    out[i] = (r, g, b)
  return out


def group_palette(n: int, seed: int = 0) -> np.ndarray:
  """Distinct-ish random colours for group indices: uint8 [n, 3]."""
  rng = np.random.default_rng(seed)
  return rng.integers(40, 256, size=(n, 3)).astype(np.uint8)


def mask_image(labels: np.ndarray) -> Image.Image:
  """[H, W] labels (0..255) -> palette ('P') PNG image with the VOC colour map."""
  if labels.max(initial=0) > 255 or labels.min(initial=0) < 0:
    raise ValueError("a palette PNG holds labels 0..255")
  img = Image.fromarray(labels.astype(np.uint8), mode="P")
  img.putpalette(label_palette().reshape(-1).tolist())
  return img


def _font(size: int) -> ImageFont.ImageFont:
  try:
    return ImageFont.load_default(size=size)
  except (TypeError, OSError):  # Pillow without FreeType
    return ImageFont.load_default()


def blend(image: np.ndarray, labels: np.ndarray, colors: np.ndarray, alpha: float = 0.5,
          skip_zero: bool = False) -> np.ndarray:
  """uint8 [H, W, 3] image with ``colors[labels]`` blended in (label 0 left alone if
  ``skip_zero``, like the reference's ``blend_result`` with background)."""
  color = colors[labels].astype(np.float32)
  out = image.astype(np.float32) * (1 - alpha) + color * alpha
  if skip_zero:
    out = np.where((labels == 0)[..., None], image.astype(np.float32), out)
  return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def overlay(image: np.ndarray, labels: np.ndarray, names: Sequence[str], *, alpha: float = 0.5,
            with_bg: bool = True) -> Image.Image:
  """The image with coloured segments and, on the right, a legend of the labels present.

  Args:
    image: uint8 [H, W, 3]. labels: [H, W] values indexing ``names``.
    names: the name of every label value (``names[0] == 'background'`` when ``with_bg``).
  """
  colors = label_palette()
  shown = blend(image, labels, colors, alpha, skip_zero=with_bg)
  h, w = labels.shape
  counts = np.bincount(labels.ravel(), minlength=len(names))
  present = [i for i in np.argsort(-counts) if counts[i] > 0]
  size = max(12, min(28, h // 24))
  font = _font(size)
  row = size + 8
  legend_w = max(160, int(size * 0.62 * max([len(names[i]) for i in present] + [4])) + 3 * size + 40)
  canvas = Image.new("RGB", (w + legend_w, max(h, row * len(present) + 10)), (255, 255, 255))
  canvas.paste(Image.fromarray(shown), (0, 0))
  draw = ImageDraw.Draw(canvas)
  for k, i in enumerate(present):
    y = 6 + k * row
    draw.rectangle([w + 8, y, w + 8 + size, y + size], fill=tuple(int(c) for c in colors[i]),
                   outline=(0, 0, 0))
    draw.text((w + 16 + size, y), f"{names[i]} {100 * counts[i] / labels.size:.0f}%",
              fill=(0, 0, 0), font=font)
  return canvas


def group_panels(image: np.ndarray, stage_maps: Sequence[np.ndarray], alpha: float = 0.5
                 ) -> Image.Image:
  """The image and, next to it, its groups at every grouping stage (before labels).

  Args:
    image: uint8 [H, W, 3]. stage_maps: one [H, W] group-index map per stage.
  """
  h, w = image.shape[:2]
  size = max(12, min(24, h // 20))
  font = _font(size)
  top = size + 10
  panels = [(image, "input")]
  offset = 0
  for s, groups in enumerate(stage_maps):
    n = int(groups.max()) + 1
    colors = group_palette(max(n, 1) + offset, seed=0)[offset:]
    offset += n
    used = len(np.unique(groups))
    panels.append((blend(image, groups, colors, alpha),
                   f"stage {s}: {used} group{'' if used == 1 else 's'}"))
  canvas = Image.new("RGB", (len(panels) * (w + 8) - 8, h + top), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  for k, (pic, title) in enumerate(panels):
    canvas.paste(Image.fromarray(pic), (k * (w + 8), top))
    draw.text((k * (w + 8) + 4, 4), title, fill=(0, 0, 0), font=font)
  return canvas


def titled_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str], *, scale: int = 3,
                legend: Sequence[str] = (), gap: int = 4) -> Image.Image:
  """Tiles in a grid under column ``titles``, upscaled ``scale``x (nearest) for small images,
  with an optional legend of ``label_palette`` colours for the label names in ``legend``.

  Args:
    rows: rows of uint8 [h, w, 3] tiles, all the same size; titles: one per column.
  """
  h, w = rows[0][0].shape[:2]
  th, tw = h * scale, w * scale
  size = max(12, min(18, tw // 9))
  font = _font(size)
  top = size + 10
  legend_h = size + 12 if legend else 0
  cols = len(titles)
  canvas = Image.new("RGB", (cols * (tw + gap) - gap, top + len(rows) * (th + gap) + legend_h),
                     (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  for c, title in enumerate(titles):
    draw.text((c * (tw + gap) + 2, 3), title, fill=(0, 0, 0), font=font)
  for r, row in enumerate(rows):
    for c, tile in enumerate(row):
      big = Image.fromarray(tile).resize((tw, th), Image.NEAREST)
      canvas.paste(big, (c * (tw + gap), top + r * (th + gap)))
  x, y = 2, top + len(rows) * (th + gap) + 4
  colors = label_palette()
  for i, name in enumerate(legend):
    if i == 0 and name == "background":
      continue
    draw.rectangle([x, y, x + size, y + size], fill=tuple(int(v) for v in colors[i]),
                   outline=(0, 0, 0))
    draw.text((x + size + 4, y), name, fill=(0, 0, 0), font=font)
    x += size + 12 + int(size * 0.6 * len(name))
  return canvas
