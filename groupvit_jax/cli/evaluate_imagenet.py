"""Zero-shot ImageNet-1k evaluation. ``groupvit-jax evaluate --dataset imagenet ...`` dispatches
here (``add_arguments`` + ``run``); ``python -m groupvit_jax.cli.evaluate_imagenet ...`` runs it
alone.

Writes a JSON file with ``top1``, ``top5`` (fractions from 0 to 1), ``num_images`` and
``protocol``; the printed summary shows percent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from groupvit_jax.cli.checkpoint_args import add_checkpoint_arguments, checkpoint_label, load_model
from groupvit_jax.cli.main import CLIError
from groupvit_jax.classification.imagenet_data import LAYOUTS
from groupvit_jax.class_embeddings import TEMPLATE_SETS

# The reference's ImageNet prompt set (spec 5.1); used when --templates is not given.
DEFAULT_TEMPLATES = "subset"
DEFAULT_BATCH_SIZE = 64


# The options every run needs; ``groupvit-jax evaluate`` declares its own versions of these.
# (--checkpoint and --revision come from ``checkpoint_args``.)
COMMON_OPTIONS = {
    "--data-root": dict(required=True,
                        help="ImageNet val: a folder with one sub-folder per WordNet id, a flat "
                        "image folder (with --ground-truth), or for --layout tfds the folder "
                        "holding ILSVRC2012_img_val.tar"),
    "--output": dict(default=None, help="results JSON file (default: print only)"),
    "--batch-size": dict(type=int, default=None,
                         help="images per step, rounded up to a multiple of the device count "
                         f"(ImageNet default: {DEFAULT_BATCH_SIZE})"),
}
# ImageNet's own options, added to ``groupvit-jax evaluate`` too.
IMAGENET_OPTIONS = {
    "--templates": dict(default=None, choices=sorted(TEMPLATE_SETS),
                        help="prompt template set (default: subset, the 7 templates of the "
                        "reference)"),
    "--ground-truth": dict(default=None, metavar="FILE",
                           help="the labels of a flat folder: 'FILE LABEL' lines (LABEL = WordNet "
                           "id or class index 0-999 in sorted WordNet-id order) or one WordNet id "
                           "per line in sorted file-name order; see docs/classification.md"),
    "--layout": dict(default="auto", choices=LAYOUTS,
                     help="data layout (default: auto = folders, or flat when --ground-truth is "
                     "given)"),
    "--tfds-data-dir": dict(default=None,
                            help="tfds data directory for --layout tfds (default: tfds' own, "
                            "~/tensorflow_datasets)"),
    "--image-size": dict(type=int, default=None,
                         help="center-crop size (default: the model's input size, 224 for the "
                         "released models)"),
    "--num-workers": dict(type=int, default=None,
                          help="image reader threads (default: CPU count, at most 16)"),
    "--max-images": dict(type=int, default=None,
                         help="evaluate only the first N images (smoke tests; the numbers are "
                         "then not comparable)"),
}


def add_arguments(parser: argparse.ArgumentParser, *, common: bool = True) -> None:
  """Adds ``IMAGENET_OPTIONS`` and, with ``common``, ``COMMON_OPTIONS`` and --checkpoint/--revision."""
  options = {**COMMON_OPTIONS, **IMAGENET_OPTIONS} if common else IMAGENET_OPTIONS
  if common:
    add_checkpoint_arguments(parser)
  for flag, kwargs in options.items():
    parser.add_argument(flag, **kwargs)


def run(args) -> int:
  # Heavy imports (jax, the model) only when the command runs, not when --help is shown.
  from groupvit_jax.classification import imagenet_data  # pylint: disable=g-import-not-at-top
  from groupvit_jax.classification import zeroshot as zeroshot_cls  # pylint: disable=g-import-not-at-top
  for flag in ("checkpoint", "data_root"):
    if not getattr(args, flag, None):
      raise CLIError(f"--{flag.replace('_', '-')} is required for --dataset imagenet")
  templates = args.templates or DEFAULT_TEMPLATES
  if args.batch_size is None:  # the shared `evaluate` parser leaves it to each dataset
    args.batch_size = DEFAULT_BATCH_SIZE
  if getattr(args, "limit", None) is not None and args.max_images is None:
    args.max_images = args.limit  # `evaluate --limit N` means the same as --max-images N
  if args.batch_size < 1:
    raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
  if args.max_images is not None and args.max_images < 1:
    raise CLIError(f"--max-images must be >= 1, got {args.max_images}")
  if args.output and os.path.isdir(args.output):
    raise CLIError(f"--output {args.output} is a directory; give a .json file name")
  data = imagenet_data.open_imagenet(args.data_root, args.layout, labels_file=args.ground_truth,
                                     tfds_data_dir=args.tfds_data_dir)
  print(f"{data.layout} layout: {len(data)} images"
        + (f" in {data.num_classes_present} classes" if data.num_classes_present else ""),
        flush=True)
  if data.num_classes_present is not None and data.num_classes_present < 1000:
    print(f"warning: only {data.num_classes_present} of the 1000 classes have images; the "
          "classifier still chooses among all 1000", file=sys.stderr)
  for note in data.notes:
    print(f"note: {note}", flush=True)
  print(f"loading {args.checkpoint} ...", flush=True)
  model = load_model(args)
  start = time.time()
  result = zeroshot_cls.evaluate(model, data, templates=templates, batch_size=args.batch_size,
                                 image_size=args.image_size, num_workers=args.num_workers,
                                 max_images=args.max_images)
  result = {"dataset": "imagenet", **result, "num_classes_present": data.num_classes_present,
            "layout": data.layout, "data_root": os.path.abspath(args.data_root),
            "checkpoint": checkpoint_label(args), "seconds": round(time.time() - start, 1)}
  if args.max_images is not None:
    result["max_images"] = args.max_images
  print(f"ImageNet zero-shot: top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%  "
        f"({result['num_images']} images, {result['seconds']:.0f} s)")
  if args.output:
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)
    print(f"wrote {args.output}")
  return 0


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m groupvit_jax.cli.evaluate_imagenet",
      description="Zero-shot ImageNet-1k top-1/top-5 (the reference protocol; see "
      "docs/classification.md).")
  add_arguments(parser)
  args = parser.parse_args(argv)
  try:
    return run(args)
  except (CLIError, FileNotFoundError, ValueError, ImportError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
