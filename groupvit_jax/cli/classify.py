"""``groupvit-jax classify --checkpoint CKPT --image IMG [IMG ...] --labels "cat,dog,car"``:
zero-shot classification of image files against free-text labels, ranked with probabilities."""

from __future__ import annotations

import argparse
import json
import os

from groupvit_jax.cli.checkpoint_args import add_checkpoint_arguments, load_model
from groupvit_jax.cli.main import CLIError
from groupvit_jax.class_embeddings import TEMPLATE_SETS


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser(
      "classify", help="zero-shot classify images against a list of labels",
      description="Ranks LABELS for each image by the cosine similarity of their embeddings (class "
      "embedding = mean over prompt templates, as in the ImageNet evaluation). Probabilities are "
      "softmax(logit_scale * cosine) over the given labels, logit_scale = min(exp(learned), 100), "
      "so they depend on the label set. Images: shorter side resized to 256/224 of the model's "
      "input size (PIL bilinear), then center-cropped.")
  add_arguments(p)
  p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
  add_checkpoint_arguments(p)
  p.add_argument("--image", nargs="+", required=True, metavar="IMG", help="image file(s)")
  labels = p.add_mutually_exclusive_group(required=True)
  labels.add_argument("--labels", help='comma-separated class names, e.g. "cat,dog,car"')
  labels.add_argument("--labels-file", help="text file with one class name per line")
  p.add_argument("--templates", default="subset",
                 help=f"prompt template set ({', '.join(sorted(TEMPLATE_SETS))}) or one template "
                 "with '{}' (default: subset, the 7 templates of the ImageNet evaluation)")
  p.add_argument("--top-k", type=int, default=5, help="labels shown per image (default: 5)")
  p.add_argument("--image-size", type=int, default=None,
                 help="center-crop size (default: the model's input size, 224 for released models)")
  p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _class_names(args) -> list[str]:
  if args.labels is not None:
    names = [n.strip() for n in args.labels.split(",")]
  else:
    if not os.path.isfile(args.labels_file):
      raise CLIError(f"{args.labels_file}: no such labels file")
    with open(args.labels_file, encoding="utf-8") as f:
      names = [line.strip() for line in f if line.strip() and not line.startswith("#")]
  if any(not n for n in names):
    raise CLIError(f"empty label in {args.labels!r}: give comma-separated names like 'cat,dog'")
  if len(names) < 2:
    raise CLIError("give at least two labels to choose from (e.g. --labels 'cat,dog')")
  return names


def _templates(value: str):
  if value in TEMPLATE_SETS:
    return value
  if "{}" not in value:
    raise CLIError(f"--templates {value!r}: expected one of {sorted(TEMPLATE_SETS)} or a "
                   "template containing '{}', e.g. 'a photo of a {}.'")
  return [value]


def run(args) -> int:
  from groupvit_jax.classification import zeroshot as zeroshot_cls  # pylint: disable=g-import-not-at-top
  names = _class_names(args)
  templates = _templates(args.templates)
  if args.top_k < 1:
    raise CLIError(f"--top-k must be >= 1, got {args.top_k}")
  missing = [p for p in args.image if not os.path.isfile(p)]
  if missing:
    raise CLIError(f"no such image file: {', '.join(missing)}")
  model = load_model(args)
  logits = zeroshot_cls.classify_files(model, args.image, names, templates=templates,
                                       image_size=args.image_size)
  probs = zeroshot_cls.softmax_probabilities(logits, float(model.scale()))
  k = min(args.top_k, len(names))
  results = []
  for path, p, l in zip(args.image, probs, logits):
    order = sorted(range(len(names)), key=lambda i: (-p[i], i))[:k]
    results.append({"image": path, "predictions": [
        {"label": names[i], "probability": float(p[i]), "cosine": float(l[i])} for i in order]})
  if args.json:
    print(json.dumps(results, indent=2))
    return 0
  width = max(len(names[i]) for i in range(len(names)))
  for r in results:
    print(r["image"])
    for rank, pred in enumerate(r["predictions"], 1):
      print(f"  {rank:>2}. {pred['label']:<{width}}  {100 * pred['probability']:6.2f}%")
  return 0
