"""The paper's ablations in miniature, on the synthetic shapes world (issue: make demo).

Trains every variant of configs/shapes.py for each seed on one world, evaluates zero-shot
segmentation of the held-out test split exactly like ``make demo`` (background threshold chosen on
val, protocol ``shapes``), and writes a markdown table plus the raw numbers:

  variant                     paper table   config
  GroupViT 2-stage, hard, ML  (reference)   configs/shapes.py
  soft assignment             Table 1       configs/shapes.py:hard=False
  no multi-label loss         Table 3       configs/shapes.py:multi_label=0
  1 stage                     Table 2       configs/shapes.py:stages=1
  with Transformer blocks     (this study)  configs/shapes.py:depths=1/2/1
  ViT, pixel-wise             Table 4       configs/shapes.py:vit=True (4 blocks, same size)
  ViT + K-means (K=4)         Table 4       the same ViT checkpoints, patch tokens clustered
  ViT without blocks          (this study)  configs/shapes.py:vit=True,vit_depth=0

    python experiments/shapes_ablations.py [--seeds 0 1] [--steps N] [--out experiments/results]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "experiments", "benchmarks")]

from bench_common import machine  # noqa: E402  pylint: disable=g-import-not-at-top
from groupvit_jax import demo  # noqa: E402  pylint: disable=g-import-not-at-top

VARIANTS = (  # name, paper table, configs/shapes.py argument
    ("GroupViT (2-stage, hard, multi-label)", "ref", ""),
    ("soft assignment", "Tab. 1", "hard=False"),
    ("no multi-label loss", "Tab. 3", "multi_label=0"),
    ("1 stage", "Tab. 2", "stages=1"),
    # the round-3 model: 1 + 2 + 1 Transformer blocks around the groupings
    ("with Transformer blocks (1 + 2 + 1)", "", "depths=1/2/1"),
    ("ViT, pixel-wise (4 blocks, as many parameters)", "Tab. 4", "vit=True"),
    # patch embedding + linear head: labels every patch from its own pixels only
    ("ViT without blocks, pixel-wise", "", "vit=True,vit_depth=0"),
)
KMEANS = "ViT + K-means (K=4, as many groups as GroupViT ends with)"


def run(args) -> dict:
  _, shards, eval_root = demo.make_world(args.data, args.world_seed, args.train_images, 200,
                                         args.test_images)
  from groupvit_jax import load_pretrained  # pylint: disable=g-import-not-at-top
  from groupvit_jax.evaluate.baselines import KMeansGrouping  # pylint: disable=g-import-not-at-top
  rows: dict[str, dict] = {}
  for seed in args.seeds:
    for name, _, arg in VARIANTS:
      if args.only and name not in args.only:
        continue
      tag = (arg or "groupvit").replace("=", "-").replace("/", "-").replace(",", "_")
      workdir = os.path.join(args.runs, f"{tag}_seed{seed}")
      demo.banner(f"{name}, seed {seed}")
      secs, config = demo.train(",".join(filter(None, [arg, f"seed={seed}"])), shards, workdir,
                                args.steps)
      model = load_pretrained(workdir)
      evals = {name: model}
      if arg == "vit=True":
        evals[KMEANS] = KMeansGrouping(model, k=4)
      for eval_name, m in evals.items():
        result = demo.evaluate(m, eval_root)
        entry = rows.setdefault(eval_name, {"seeds": {}, "train_seconds": {}})
        entry["seeds"][str(seed)] = result["mIoU"]
        entry["train_seconds"][str(seed)] = secs
        entry["steps"] = int(config.total_steps)
        print(f"{eval_name} seed {seed}: mIoU {result['mIoU']:.3f} "
              f"(bg threshold {result['bg_threshold']}, trained {secs / 60:.1f} min)", flush=True)
  return {"rows": rows, "chance_miou": demo.chance_miou(eval_root)}


def table(out: dict, args) -> str:
  tables = {n: t or "-" for n, t, _ in VARIANTS} | {KMEANS: "Tab. 4"}
  lines = ["| variant | paper | mIoU per seed | mean | train min/run |",
           "|---|---|---|---|---|"]
  for name, row in out["rows"].items():
    vals = [row["seeds"][s] for s in sorted(row["seeds"])]
    per = ", ".join(f"{s}: {row['seeds'][s]:.3f}" for s in sorted(row["seeds"]))
    mins = np.mean(list(row["train_seconds"].values())) / 60
    lines.append(f"| {name} | {tables[name]} | {per} | {np.mean(vals):.3f} | {mins:.1f} |")
  lines.append(f"| background everywhere | | | {out['chance_miou']:.3f} | |")
  steps = next(iter(out["rows"].values()))["steps"] if out["rows"] else 0
  return "\n".join(lines) + (
      f"\n\nmIoU (fraction, background included) on {args.test_images} held-out test images of "
      f"world seed {args.world_seed}, {steps} steps x batch 64 per run; K-means reuses the ViT "
      f"checkpoints. Machine: {out['machine']}.\n")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
  p.add_argument("--steps", type=int, default=None, help="steps per run (default: the config's)")
  p.add_argument("--world-seed", type=int, default=0)
  p.add_argument("--train-images", type=int, default=30000)
  p.add_argument("--test-images", type=int, default=500)
  p.add_argument("--data", default=os.path.join(REPO, "data", "shapes"))
  p.add_argument("--runs", default=os.path.join(REPO, "runs", "shapes_ablations"))
  p.add_argument("--out", default=os.path.join(REPO, "experiments", "results"))
  p.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
  args = p.parse_args(argv)
  demo.show_training_progress()
  start = time.time()
  out = run(args)
  info = machine()
  out["machine"] = f"{info['cpu']}, {info['cpu_count']} cores, {info['date']}"
  out["seconds"] = time.time() - start
  os.makedirs(args.out, exist_ok=True)
  md = table(out, args)
  with open(os.path.join(args.out, "shapes_ablations.md"), "w") as f:
    f.write("# Shapes-world ablations\n\n" + md)
  with open(os.path.join(args.out, "shapes_ablations.json"), "w") as f:
    json.dump(out, f, indent=1)
  print("\n" + md)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
