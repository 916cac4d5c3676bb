"""One probe of the shapes demo: a world variant, a training run, and every diagnostic.

The rows of round 4 in experiments/results/shapes_demo_notes.md were produced with this script:
it writes ``COLOURED_KINDS_WORLD`` with the given ``WorldConfig`` overrides (once per distinct world),
trains ``configs/shapes.py`` with the given arguments through the demo's trainer call, then
prints the test mIoU under the ``shapes`` protocol (background threshold chosen on val), the
mIoU with the background kinds' names in the vocabulary, and the val diagnostics of
experiments/shapes_diagnostics.py. One JSON line per probe is appended to WORK/probes.jsonl.

    python experiments/shapes_probe.py --name s5 --config-arg assign_std=0.1,depths=1/2/0 \\
        --world '{"background_nouns": true, "describe_background": 0.8, "empty_scenes": 0.2}'
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "experiments"))


def world_dir(work: str, cfg) -> str:
  """One folder per distinct world config (probes of the same world share it; ``make_world``
  rewrites it when the seed or the sizes change)."""
  key = hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
  return os.path.join(work, f"world_{key}")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--name", required=True, help="the probe's name (its training workdir)")
  p.add_argument("--config-arg", default="", help="configs/shapes.py arguments")
  p.add_argument("--world", default="{}", help="JSON WorldConfig overrides of COLOURED_KINDS_WORLD")
  p.add_argument("--work", default="/tmp/shapes_probe")
  p.add_argument("--steps", type=int, default=None)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--train-images", type=int, default=30000)
  p.add_argument("--val-images", type=int, default=200)
  p.add_argument("--test-images", type=int, default=300)
  args = p.parse_args(argv)

  from groupvit_jax import demo, load_pretrained  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.datasets import open_dataset  # pylint: disable=g-import-not-at-top
  from input_pipeline import synthetic_world as sw  # pylint: disable=g-import-not-at-top
  import shapes_diagnostics  # pylint: disable=g-import-not-at-top

  try:
    overrides = json.loads(args.world)
    cfg = dataclasses.replace(sw.COLOURED_KINDS_WORLD, **overrides)
  except (ValueError, TypeError) as e:
    raise SystemExit(f"--world: expected a JSON object of WorldConfig fields, got {args.world!r} "
                     f"({e})") from e
  _, shards, eval_root = demo.make_world(world_dir(args.work, cfg), args.seed, args.train_images,
                                         args.val_images, args.test_images, cfg=cfg)
  demo.show_training_progress()
  workdir = os.path.join(args.work, f"run_{args.name}")
  shutil.rmtree(workdir, ignore_errors=True)
  arg = ",".join(a for a in (f"seed={args.seed}", args.config_arg) if a)
  secs, _ = demo.train(arg, shards, workdir, args.steps)

  model = load_pretrained(workdir)
  test = demo.evaluate(model, eval_root)
  out = shapes_diagnostics.diagnose(model, open_dataset("folder", eval_root, "val"))
  out["stuff_vocabulary_miou"] = shapes_diagnostics.stuff_vocabulary_miou(
      model, open_dataset("folder", eval_root, "test"), sorted(set(sw.STUFF_NAMES.values())))
  print(f"\n{args.name}: test mIoU {test['mIoU']:.3f} (background threshold {test['bg_threshold']} "
        f"chosen on val); train {secs:.0f} s")
  shapes_diagnostics.report(out)
  row = {"name": args.name, "config_arg": args.config_arg, "world": overrides,
         "test_miou": test["mIoU"], "per_class_iou": test["per_class_iou"],
         "bg_threshold": test["bg_threshold"], "train_seconds": secs,
         "diagnostics": {k: (v if not isinstance(v, dict) else {str(a): b for a, b in v.items()})
                         for k, v in out.items()}}
  with open(os.path.join(args.work, "probes.jsonl"), "a") as f:
    f.write(json.dumps(row) + "\n")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
