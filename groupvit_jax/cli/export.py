"""``groupvit-jax export --checkpoint CKPT --format stablehlo|savedmodel --output DIR``: the image
encoder, text encoder and dense segmentation function for serving, with a dynamic batch
dimension (see ``groupvit_jax.serving_export``)."""

from __future__ import annotations

import argparse
import os

from groupvit_jax.cli.checkpoint_args import add_checkpoint_arguments, checkpoint_label, load_model
from groupvit_jax.cli.main import CLIError


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser(
      "export", help="export the encoders and the segmentation function for serving",
      description="Writes the image encoder, the text encoder and the dense segmentation "
      "function (one window) with a symbolic batch dimension: jax.export StableHLO, or a "
      "TensorFlow SavedModel through jax2tf (needs the tf extra). Weights are baked in.")
  add_checkpoint_arguments(p)
  p.add_argument("--format", required=True, choices=("stablehlo", "savedmodel"))
  p.add_argument("--output", required=True, help="output directory (must not exist or be empty)")
  p.add_argument("--image-size", type=int, default=None,
                 help="image encoder input size (default: the model's, 224 when released)")
  p.add_argument("--segment-size", type=int, default=448,
                 help="segmentation window size (default 448, the protocol's window)")
  p.add_argument("--num-classes", type=int, default=None,
                 help="fix the segmentation's number of classes (default: any number >= 5; "
                 "give it for a vocabulary of fewer than 5)")
  p.add_argument("--platforms", default=None,
                 help="stablehlo only: comma-separated platforms to lower for (e.g. cpu,cuda,tpu; "
                 "default: this machine's)")
  p.set_defaults(func=run)


def run(args) -> int:
  from groupvit_jax import serving_export  # pylint: disable=g-import-not-at-top
  if os.path.exists(args.output) and (not os.path.isdir(args.output) or os.listdir(args.output)):
    raise CLIError(f"{args.output}: output directory exists and is not empty")
  if args.num_classes is not None and args.num_classes < 1:
    raise CLIError(f"--num-classes must be >= 1, got {args.num_classes}")
  if args.platforms and args.format != "stablehlo":
    raise CLIError("--platforms applies to --format stablehlo only")
  print(f"loading {args.checkpoint} ...", flush=True)
  model = load_model(args)
  patch = model.config.vision.patch_size
  image_size = args.image_size or model.config.vision.img_size
  for flag, size in (("--image-size", image_size), ("--segment-size", args.segment_size)):
    if size < patch:
      raise CLIError(f"{flag} {size} is smaller than one {patch}-pixel patch")
  print(f"exporting {args.format} to {args.output} ...", flush=True)
  if args.format == "stablehlo":
    platforms = tuple(p.strip() for p in args.platforms.split(",")) if args.platforms else None
    info = serving_export.write_stablehlo(model, args.output, image_size=image_size,
                                          seg_size=args.segment_size, platforms=platforms,
                                          num_classes=args.num_classes)
  else:
    info = serving_export.write_savedmodel(model, args.output, image_size=image_size,
                                           seg_size=args.segment_size,
                                           num_classes=args.num_classes)
  print(f"wrote {', '.join(info['functions'])} ({args.format}, from "
        f"{checkpoint_label(args)}) to {os.path.abspath(args.output)}")
  return 0
