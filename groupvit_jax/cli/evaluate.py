"""``groupvit-jax evaluate``: zero-shot benchmarks under a named protocol.

Segmentation datasets (voc, voc20, context, context59, coco_object, coco_stuff, cityscapes,
ade20k) report mIoU; ``--dataset imagenet`` runs zero-shot classification
(``groupvit_jax.cli.evaluate_imagenet``).
"""

from __future__ import annotations

import argparse
import json
import math
import os

from groupvit_jax.cli.checkpoint_args import add_checkpoint_arguments, checkpoint_label, load_model
from groupvit_jax.cli.main import CLIError


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser(
      "evaluate", help="zero-shot benchmarks (segmentation mIoU, ImageNet accuracy)",
      description="Evaluates a checkpoint on a benchmark read from its official layout and "
      "writes the results as JSON. Protocols: groupvit (official: voc, context, coco_object) and "
      "benchmark8 (all eight segmentation datasets).")
  add_checkpoint_arguments(p)
  from groupvit_jax.segmentation.datasets import DATASETS  # pylint: disable=g-import-not-at-top
  p.add_argument("--dataset", required=True, choices=sorted(DATASETS) + ["imagenet"])
  p.add_argument("--data-root", required=True,
                 help="dataset root: for voc the folder that holds VOC2012/ (e.g. VOCdevkit)")
  p.add_argument("--output", required=True, help="results JSON file")
  p.add_argument("--protocol", default=None,
                 help="groupvit (default for voc/context/coco_object), benchmark8 (default for "
                 "the other benchmarks) or shapes (default for --dataset folder)")
  p.add_argument("--bg-threshold", type=float, default=None,
                 help="override the protocol's background threshold (the protocol is then "
                 "reported as NAME+bg=T)")
  p.add_argument("--split", default="val", help="dataset split (default val)")
  p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
  p.add_argument("--batch-size", type=int, default=None,
                 help="images per device call; their windows run as one batch (default: 1 on "
                 "CPU, 8 on accelerators)")
  p.add_argument("--window-chunk", type=int, default=8,
                 help="windows per model forward inside a call (bounds memory; default 8)")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="compute dtype of the model (default float32)")
  p.add_argument("--skip-bad", action="store_true",
                 help="leave out images or labels that cannot be read (listed under 'skipped' "
                 "in the output JSON) instead of stopping at the first")
  p.add_argument("--data-parallel", action="store_true",
                 help="split each batch of images over all local devices (--batch-size is "
                 "rounded up to a multiple of the device count)")
  # ImageNet's own options (--templates, --ground-truth, --layout, ...).
  from groupvit_jax.cli import evaluate_imagenet  # pylint: disable=g-import-not-at-top
  evaluate_imagenet.add_arguments(p, common=False)
  p.set_defaults(func=run)


def _check_output(path: str) -> None:
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent):
    raise CLIError(f"{path}: the folder {parent} does not exist")
  if os.path.isdir(path):
    raise CLIError(f"{path}: is a directory; --output takes a JSON file name")


def run(args) -> int:
  if args.dataset == "imagenet":
    from groupvit_jax.cli import evaluate_imagenet  # pylint: disable=g-import-not-at-top
    return evaluate_imagenet.run(args)
  return run_segmentation(args)


def run_segmentation(args) -> int:
  from groupvit_jax.segmentation.datasets import open_dataset  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.protocols import (default_protocol, get_protocol,  # pylint: disable=g-import-not-at-top
                                               with_bg_threshold)
  protocol = get_protocol(args.protocol) if args.protocol else default_protocol(args.dataset)
  protocol.settings(args.dataset)  # refuses a dataset the protocol does not cover
  if args.bg_threshold is not None:
    if not 0.0 <= args.bg_threshold <= 1.0:
      raise CLIError(f"--bg-threshold must be in [0, 1], got {args.bg_threshold}")
    protocol = with_bg_threshold(protocol, args.dataset, args.bg_threshold)
  if args.limit is not None and args.limit <= 0:
    raise CLIError(f"--limit must be positive, got {args.limit}")
  if (args.batch_size is not None and args.batch_size <= 0) or args.window_chunk <= 0:
    raise CLIError("--batch-size and --window-chunk must be positive")
  _check_output(args.output)
  dataset = open_dataset(args.dataset, args.data_root, args.split).limit(args.limit)
  if not len(dataset):
    raise CLIError(f"{args.data_root}: the {args.split} split of {args.dataset} is empty")

  from groupvit_jax.segmentation.miou import per_class_table  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.benchmark import evaluate_segmentation  # pylint: disable=g-import-not-at-top

  mesh, batch = None, args.batch_size
  if args.data_parallel:
    import jax  # pylint: disable=g-import-not-at-top
    from groupvit_jax.sharding import data_mesh  # pylint: disable=g-import-not-at-top
    n = jax.local_device_count()
    mesh = data_mesh(jax.local_devices())
    batch = -(-(batch or n) // n) * n
  print(f"loading {args.checkpoint} ...", flush=True)
  model = load_model(args, dtype=args.dtype)
  result = evaluate_segmentation(model, dataset, protocol, images_per_batch=batch,
                                 window_chunk=args.window_chunk, mesh=mesh,
                                 skip_bad=args.skip_bad)
  result.update(checkpoint=checkpoint_label(args), split=args.split, dtype=args.dtype)
  nan = float("nan")
  table_metrics = {
      "iou": [nan if v is None else v for v in result["per_class_iou"].values()],
      "acc": [nan if v is None else v for v in result["per_class_acc"].values()],
      "mIoU": result["mIoU"], "mAcc": result["mAcc"], "aAcc": result["aAcc"]}
  title = (f"{args.dataset} ({args.split}, {result['num_images']} images), protocol "
           f"{protocol.name}")
  print(per_class_table(list(result["per_class_iou"]), table_metrics, title))
  with open(args.output, "w") as f:
    json.dump(_finite(result), f, indent=2)
  skipped = result["skipped"]
  for bad in skipped:
    print(f"skipped {bad['key']}: {bad['error']}")
  note = f", {len(skipped)} unreadable skipped" if skipped else ""
  print(f"mIoU {100 * result['mIoU']:.2f} ({protocol.name} protocol, {result['num_images']} "
        f"images{note}, {result['images_per_second']:.2f} images/s) -> {args.output}")
  return 0


def _finite(obj):
  """NaN/inf -> None, so the file is strict JSON."""
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  if isinstance(obj, dict):
    return {k: _finite(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_finite(v) for v in obj]
  return obj
