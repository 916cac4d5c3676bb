"""``groupvit-jax segment``: zero-shot segmentation of your own images with your own class names.

Takes files, folders and globs. For each ``<stem>.<ext>`` it writes ``<stem>_mask.png`` (palette
PNG at the image's size; 0 = background, i = the i-th class given), ``<stem>_overlay.png``
(coloured segments and a legend) and ``<stem>_groups.png`` (the groups of each stage, before
labels are assigned), then ``summary.json`` (per image: size and the share of each class; the
files skipped and why). Exit status 1 when some files were skipped, 0 when all were written.
"""

from __future__ import annotations

import argparse
import os
import sys

from groupvit_jax.cli.checkpoint_args import add_checkpoint_arguments, checkpoint_label, load_model
from groupvit_jax.cli.main import CLIError


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser(
      "segment", help="segment images with any vocabulary (zero-shot)",
      description="Zero-shot semantic segmentation under the official GroupViT protocol (shorter "
      "side 448, 448x448 windows at stride 224, adaptive background threshold).")
  add_checkpoint_arguments(p)
  p.add_argument("--image", required=True, nargs="+", metavar="IMG",
                 help="image files, folders (their images, not recursive) or quoted globs "
                 "('photos/**/*.jpg')")
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
  p.add_argument("--batch-size", type=int, default=None,
                 help="images per device call (default: 1 on CPU, 8 on accelerators)")
  p.add_argument("--no-groups", action="store_true",
                 help="skip <stem>_groups.png (saves one whole-image pass and its compilation "
                 "per image size)")
  p.add_argument("--quiet", action="store_true", help="no progress bar or per-image lines")
  p.set_defaults(func=run)


def parse_classes(text: str) -> list[str]:
  from groupvit_jax.class_embeddings import check_class_names  # pylint: disable=g-import-not-at-top
  names = check_class_names(text.split(","))
  if any(n.lower() == "background" for n in names):
    raise CLIError("'background' is not a class to name: pixels that match no class become "
                   "background (label 0) through --bg-threshold")
  return names


def run(args) -> int:
  import json  # pylint: disable=g-import-not-at-top
  from groupvit_jax.image_files import expand_image_args  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.segment_files import output_stems, segment_files  # pylint: disable=g-import-not-at-top
  classes = parse_classes(args.classes)
  if not 0.0 <= args.bg_threshold <= 1.0:
    raise CLIError(f"--bg-threshold must be in [0, 1], got {args.bg_threshold}")
  if args.batch_size is not None and args.batch_size < 1:
    raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
  paths = expand_image_args(args.image)
  output_stems(paths)  # clashing names fail before the slow model load
  if os.path.exists(args.output) and not os.path.isdir(args.output):
    raise CLIError(f"{args.output}: exists and is not a directory")
  os.makedirs(args.output, exist_ok=True)

  from groupvit_jax.segmentation.segmenter import Segmenter  # pylint: disable=g-import-not-at-top
  say = (lambda _: None) if args.quiet else (lambda m: print(m, flush=True))
  say(f"loading {args.checkpoint} ...")
  model = load_model(args, dtype=args.dtype)
  seg = Segmenter(model, classes, bg_threshold=args.bg_threshold, templates=args.templates,
                  mode=args.mode, images_per_batch=args.batch_size)
  say(f"segmenting {len(paths)} image(s) into {args.output}")
  summary = segment_files(seg, paths, args.output, groups=not args.no_groups,
                          progress=not args.quiet, log=None if not args.quiet else say)
  summary = {"checkpoint": checkpoint_label(args), "classes": classes,
             "bg_threshold": args.bg_threshold, "mode": args.mode, "templates": args.templates,
             **summary}
  with open(os.path.join(args.output, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  n, bad = len(summary["images"]), summary["skipped"]
  if not n:
    raise CLIError("; ".join(b["error"] for b in bad))
  rate = summary["images_per_second"]
  print(f"wrote {n} image(s) to {args.output} in {summary['seconds']:.1f} s"
        + (f" ({rate:.2f} images/s)" if rate else "") + "; summary.json lists them", flush=True)
  if bad:
    print(f"skipped {len(bad)} file(s): " + ", ".join(b["path"] for b in bad), file=sys.stderr)
    return 1
  return 0
