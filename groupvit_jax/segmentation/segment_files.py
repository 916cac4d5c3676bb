"""Segmenting many image files with one ``Segmenter``: streamed through its batched device
calls, three PNGs per image, a summary of every image and of every file that was skipped.

Per image ``<stem>``: ``<stem>_mask.png`` (palette PNG at the image's size; 0 = background,
i = the i-th class), ``<stem>_overlay.png`` (coloured segments and a legend) and
``<stem>_groups.png`` (the groups of each stage, before labels are assigned).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from groupvit_jax.image_io import ImageReadError, load_image
from groupvit_jax.segmentation import visualize


def output_stems(paths: Sequence[str]) -> list[str]:
  """File stems of ``paths``; raises ValueError when two would write the same outputs."""
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  seen: dict[str, str] = {}
  for stem, path in zip(stems, paths):
    if stem in seen:
      raise ValueError(f"{seen[stem]} and {path} would both write {stem}_mask.png; rename one")
    seen[stem] = path
  return stems


def class_shares(labels: np.ndarray, names: Sequence[str]) -> dict[str, float]:
  """{label name: share of the image's pixels}, for the labels present, largest first."""
  counts = np.bincount(labels.ravel(), minlength=len(names)) / labels.size
  return {names[i]: round(float(counts[i]), 6) for i in np.argsort(-counts, kind="stable")
          if counts[i] > 0}


def segment_files(seg, paths: Sequence[str], output_dir: str, *, groups: bool = True,
                  progress: bool = True, log: Callable[[str], None] | None = None) -> dict:
  """Segments ``paths`` with ``seg`` and writes each image's PNGs into ``output_dir``.

  A file that cannot be read, or that the protocol rejects (too elongated), is skipped and
  listed under ``skipped``; the others are written.

  Returns:
    the summary: ``labels`` (name of each label value), ``images`` (per image: path, width,
    height, outputs, shares = {class: pixel share}), ``skipped`` (path, error), ``seconds``
    and ``images_per_second``.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  stems = dict(zip(paths, output_stems(paths)))
  names = seg.labels
  skipped: list[dict] = []
  images: dict[str, np.ndarray] = {}  # read, waiting for their labels
  # disable=None: no bar when stderr is not a terminal (logs, pipes).
  bar = tqdm(total=len(paths), unit="img", disable=None if progress else True, dynamic_ncols=True)
  say = log or bar.write

  def readable():
    for path in paths:
      try:
        image = load_image(path)
        seg.prepare(image, path)  # the protocol's checks, before the image joins a batch
      except (ImageReadError, ValueError) as e:
        skipped.append({"path": path, "error": str(e)})
        say(f"skipped {e}")
        bar.update(1)
        continue
      images[path] = image
      yield path, image

  done: dict[str, dict] = {}
  start = time.perf_counter()
  for path, labels in seg.segment_stream(readable()):
    image = images.pop(path)
    base = os.path.join(output_dir, stems[path])
    outputs = {"mask": base + "_mask.png", "overlay": base + "_overlay.png"}
    visualize.mask_image(labels).save(outputs["mask"])
    visualize.overlay(image, labels, names).save(outputs["overlay"])
    if groups:
      shown, maps = seg.group_maps(image)
      outputs["groups"] = base + "_groups.png"
      visualize.group_panels(shown, maps).save(outputs["groups"])
    shares = class_shares(labels, names)
    done[path] = {"path": path, "width": int(image.shape[1]), "height": int(image.shape[0]),
                  "outputs": {k: os.path.basename(v) for k, v in outputs.items()},
                  "shares": shares}
    found = ", ".join(f"{n} {100 * s:.0f}%" for n, s in shares.items())
    say(f"{path}: {found} -> {base}_{{{','.join(outputs)}}}.png")
    bar.update(1)
  seconds = time.perf_counter() - start
  bar.close()
  return {"labels": list(names),
          "images": [done[p] for p in paths if p in done],  # input order
          "skipped": skipped, "seconds": round(seconds, 3),
          "images_per_second": round(len(done) / seconds, 4) if seconds > 0 else None}
