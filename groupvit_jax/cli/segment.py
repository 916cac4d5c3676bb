"""``groupvit-jax segment``: zero-shot segmentation of your own images with your own class names.

For each ``<stem>.<ext>`` it writes ``<stem>_mask.png`` (palette PNG at the image's size; 0 =
background, i = the i-th class given), ``<stem>_overlay.png`` (coloured segments and a legend)
and ``<stem>_groups.png`` (the groups of each stage, before labels are assigned).
"""

from __future__ import annotations

import argparse
import os

from groupvit_jax.cli.main import CLIError


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser(
      "segment", help="segment images with any vocabulary (zero-shot)",
      description="Zero-shot semantic segmentation under the official GroupViT protocol (shorter "
      "side 448, 448x448 windows at stride 224, adaptive background threshold).")
  p.add_argument("--checkpoint", required=True,
                 help="anything groupvit_jax.load_pretrained reads (official .pth, transformers "
                 "directory, groupvit_jax directory)")
  p.add_argument("--image", required=True, nargs="+", metavar="IMG", help="image file(s)")
  p.add_argument("--classes", required=True,
                 help='comma-separated class names, e.g. "cat,dog,grass" (no "background")')
  p.add_argument("--bg-threshold", type=float, default=0.95,
                 help="background threshold of the adaptive rule (default 0.95, the VOC value; "
                 "0 turns background off)")
  p.add_argument("--output", required=True, help="output directory (created if needed)")
  p.add_argument("--mode", choices=("slide", "whole"), default="slide",
                 help="slide: the official sliding windows (default); whole: one pass")
  p.add_argument("--templates", default="simple",
                 help="prompt template set: simple (default), subset or full")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="compute dtype of the model (default float32)")
  p.set_defaults(func=run)


def parse_classes(text: str) -> list[str]:
  from groupvit_jax.class_embeddings import check_class_names  # pylint: disable=g-import-not-at-top
  names = check_class_names(text.split(","))
  if any(n.lower() == "background" for n in names):
    raise CLIError("'background' is not a class to name: pixels that match no class become "
                   "background (label 0) through --bg-threshold")
  return names


def _output_stems(paths: list[str]) -> list[str]:
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  seen: dict[str, str] = {}
  for stem, path in zip(stems, paths):
    if stem in seen:
      raise CLIError(f"{seen[stem]} and {path} would both write {stem}_mask.png; rename one")
    seen[stem] = path
  return stems


def run(args) -> int:
  from groupvit_jax.image_io import load_image  # pylint: disable=g-import-not-at-top
  classes = parse_classes(args.classes)
  if not 0.0 <= args.bg_threshold <= 1.0:
    raise CLIError(f"--bg-threshold must be in [0, 1], got {args.bg_threshold}")
  stems = _output_stems(args.image)
  for path in args.image:  # fail on a bad file before the slow model load
    load_image(path)
  if os.path.exists(args.output) and not os.path.isdir(args.output):
    raise CLIError(f"{args.output}: exists and is not a directory")
  os.makedirs(args.output, exist_ok=True)

  import numpy as np  # pylint: disable=g-import-not-at-top
  from groupvit_jax.convert import load_pretrained  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation import visualize  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.segmenter import Segmenter  # pylint: disable=g-import-not-at-top

  print(f"loading {args.checkpoint} ...", flush=True)
  model = load_pretrained(args.checkpoint, dtype=args.dtype)
  seg = Segmenter(model, classes, bg_threshold=args.bg_threshold, templates=args.templates,
                  mode=args.mode)
  names = seg.labels
  for path, stem in zip(args.image, stems):
    image = load_image(path)
    try:
      labels = seg.segment(image)
    except ValueError as e:  # e.g. an image too elongated for the protocol
      raise CLIError(f"{path}: {e}") from e
    base = os.path.join(args.output, stem)
    visualize.mask_image(labels).save(base + "_mask.png")
    visualize.overlay(image, labels, names).save(base + "_overlay.png")
    shown, groups = seg.group_maps(image)
    visualize.group_panels(shown, groups).save(base + "_groups.png")
    counts = np.bincount(labels.ravel(), minlength=len(names)) / labels.size
    found = ", ".join(f"{names[i]} {100 * counts[i]:.0f}%" for i in np.argsort(-counts)
                      if counts[i] > 0)
    print(f"{path}: {found} -> {base}_{{mask,overlay,groups}}.png", flush=True)
  return 0
