"""``groupvit-jax concepts --checkpoint CKPT --images DIR --output OUT [--stage S] [--top K]``:
what each group token gathers over a folder of images (the paper's concept figure).

Writes ``concepts_stage<S>.png`` per stage (a row per group token, its top-K regions cropped
and outlined) and ``concepts.json`` (per stage and token: the images, scores and boxes of its
regions, boxes in the original image's pixels). See ``groupvit_jax.concepts``.
"""

from __future__ import annotations

import argparse
import os

from groupvit_jax.cli.checkpoint_args import add_checkpoint_arguments, checkpoint_label, load_model
from groupvit_jax.cli.main import CLIError


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser(
      "concepts", help="what each group token learnt: its top regions over a folder of images",
      description="Runs the image encoder over the images (shorter side resized to --image-size, "
      "centre-cropped) and, for every group token of a stage, collects the regions most "
      "assigned to it; one grid PNG per stage plus a JSON index.")
  add_checkpoint_arguments(p)
  p.add_argument("--images", required=True, nargs="+", metavar="IMG",
                 help="image folders, files or quoted globs")
  p.add_argument("--output", required=True, help="output directory (created if needed)")
  p.add_argument("--stage", type=int, default=None,
                 help="grouping stage (0 = first); default: every stage")
  p.add_argument("--top", type=int, default=8, help="regions shown per group token (default 8)")
  p.add_argument("--image-size", type=int, default=None,
                 help="input size (default: the model's, 224 for the released models)")
  p.add_argument("--tile", type=int, default=96, help="pixel size of each region tile")
  p.set_defaults(func=run)


def run(args) -> int:
  import json  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from groupvit_jax import concepts  # pylint: disable=g-import-not-at-top
  from groupvit_jax.image_files import expand_image_args  # pylint: disable=g-import-not-at-top
  from groupvit_jax.image_io import ImageReadError, load_image  # pylint: disable=g-import-not-at-top
  if args.top < 1:
    raise CLIError(f"--top must be >= 1, got {args.top}")
  if args.tile < 16:
    raise CLIError(f"--tile must be >= 16, got {args.tile}")
  paths = expand_image_args(args.images)
  if os.path.exists(args.output) and not os.path.isdir(args.output):
    raise CLIError(f"{args.output}: exists and is not a directory")
  print(f"loading {args.checkpoint} ...", flush=True)
  model = load_model(args)
  num_stages = len(model.config.vision.num_output_groups)
  if args.stage is not None and not 0 <= args.stage < num_stages:
    raise CLIError(f"--stage {args.stage}: this model has grouping stages 0..{num_stages - 1}")
  size = args.image_size or model.config.vision.img_size
  if size < model.config.vision.patch_size:
    raise CLIError(f"--image-size {size} is smaller than one {model.config.vision.patch_size}-"
                   "pixel patch")
  kept, crops, mappings, sizes, skipped = [], [], [], [], []
  for path in paths:
    try:
      image = load_image(path)
    except ImageReadError as e:
      skipped.append({"path": path, "error": str(e)})
      print(f"skipped {e}", flush=True)
      continue
    crop, mapping = concepts.square_crop(image, size)
    kept.append(path), crops.append(crop), mappings.append(mapping), sizes.append(image.shape[:2])
  if not kept:
    raise CLIError("no readable image: " + "; ".join(s["error"] for s in skipped))
  os.makedirs(args.output, exist_ok=True)
  print(f"encoding {len(kept)} image(s) at {size}x{size} ...", flush=True)
  maps = concepts.stage_soft_maps(model, np.stack(crops))
  stages = range(num_stages) if args.stage is None else [args.stage]
  index = {"checkpoint": checkpoint_label(args), "image_size": size, "top": args.top,
           "images": kept, "skipped": skipped, "stages": []}
  for s in stages:
    regions = concepts.top_regions(maps[s], args.top)
    grid = f"concepts_stage{s}.png"
    concepts.concept_grid(np.stack(crops), regions, args.top, tile=args.tile, stage=s).save(
        os.path.join(args.output, grid))
    index["stages"].append({"stage": s, "grid": grid, "groups": [
        {"group": g, "regions": [
            {"image": kept[r.image], "score": round(r.score, 6),
             "box": concepts.original_box(r.box, mappings[r.image], sizes[r.image]),
             "pixels": int(r.mask.sum())} for r in regs]}
        for g, regs in enumerate(regions)]})
    print(f"stage {s}: {len(regions)} group tokens -> {os.path.join(args.output, grid)}",
          flush=True)
  with open(os.path.join(args.output, "concepts.json"), "w") as f:
    json.dump(index, f, indent=2)
  return 0
