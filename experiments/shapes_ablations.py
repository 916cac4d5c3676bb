"""The paper's ablations in miniature, on the synthetic shapes world (issue: make demo).

Trains every variant of configs/shapes.py for each seed on one world, evaluates zero-shot
segmentation of the held-out test split exactly like ``make demo`` (background threshold chosen on
val, protocol ``shapes``), and writes a markdown table plus the raw numbers:

  variant                     paper table   config
  GroupViT 2-stage, hard, ML  (reference)   configs/shapes.py
  soft assignment             Table 1       configs/shapes.py:hard=False
  no multi-label loss         Table 3       configs/shapes.py:multi_label=0
  1 stage                     Table 2       configs/shapes.py:stages=1
  without Transformer blocks  (round 5)     configs/shapes.py:depths=0/0/0,assign_std=0.2
  ViT, pixel-wise             Table 4       configs/shapes.py:vit=True (4 blocks, same size)
  ViT + K-means (K=4)         Table 4       the same ViT checkpoints, patch tokens clustered
  ViT without blocks          (round 5)     configs/shapes.py:vit=True,vit_depth=0

``--only NAME ... --merge`` runs some variants and keeps the other rows of the existing
shapes_ablations.json (each row records the machine and date it was measured on).

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
    # round 5's lead: the patch embedding and the two GroupingBlocks only
    ("without Transformer blocks (depths=0/0/0, assign_std=0.2)", "", "depths=0/0/0,assign_std=0.2"),
    ("ViT, pixel-wise", "Tab. 4", "vit=True"),  # 4 blocks
    # patch embedding + linear head: labels every patch from its own pixels only
    ("ViT without blocks, pixel-wise", "", "vit=True,vit_depth=0"),
)
KMEANS = "ViT + K-means (K=4, as many groups as GroupViT ends with)"


def _row_order() -> list[str]:
  names = []
  for name, _, arg in VARIANTS:
    names.append(name)
    if arg == "vit=True":
      names.append(KMEANS)
  return names


def merge_rows(old: dict, rows: dict) -> dict:
  """The rows of an earlier ``shapes_ablations.json`` (``old``) updated with newly measured
  ``rows``, in table order; old rows keep the machine they were measured on."""
  kept = {n: {"machine": old.get("machine", "unknown"), **r} for n, r in old["rows"].items()}
  merged = {**kept, **rows}
  return {n: merged[n] for n in _row_order() if n in merged}


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
        entry["machine"] = args.machine
        print(f"{eval_name} seed {seed}: mIoU {result['mIoU']:.3f} "
              f"(bg threshold {result['bg_threshold']}, trained {secs / 60:.1f} min)", flush=True)
  return {"rows": rows, "chance_miou": demo.chance_miou(eval_root)}


def table(out: dict, args) -> str:
  tables = {n: t or "-" for n, t, _ in VARIANTS} | {KMEANS: "Tab. 4"}
  machines = sorted({row.get("machine", out["machine"]) for row in out["rows"].values()})
  lines = ["| variant | paper | mIoU per seed | mean | train min/run |"
           + (" measured |" if len(machines) > 1 else ""),
           "|---|---|---|---|---|" + ("---|" if len(machines) > 1 else "")]
  for name, row in out["rows"].items():
    vals = [row["seeds"][s] for s in sorted(row["seeds"])]
    per = ", ".join(f"{s}: {row['seeds'][s]:.3f}" for s in sorted(row["seeds"]))
    mins = np.mean(list(row["train_seconds"].values())) / 60
    when = f" {machines.index(row.get('machine', out['machine'])) + 1} |" if len(machines) > 1 else ""
    lines.append(f"| {name} | {tables[name]} | {per} | {np.mean(vals):.3f} | {mins:.1f} |{when}")
  lines.append(f"| background everywhere | | | {out['chance_miou']:.3f} | |"
               + (" |" if len(machines) > 1 else ""))
  steps = next(iter(out["rows"].values()))["steps"] if out["rows"] else 0
  return "\n".join(lines) + (
      f"\n\nmIoU (fraction, background included) on {args.test_images} held-out test images of "
      f"world seed {args.world_seed}, {steps} steps x batch 64 per run; K-means reuses the ViT "
      f"checkpoints. Machine: {machines[0] if len(machines) == 1 else ''}"
      + "".join(f"\n({i + 1}) {m}" for i, m in enumerate(machines) if len(machines) > 1) + ".\n")


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
  p.add_argument("--merge", action="store_true",
                 help="keep the rows of the existing shapes_ablations.json that were not run")
  args = p.parse_args(argv)
  demo.show_training_progress()
  start = time.time()
  info = machine()
  args.machine = f"{info['cpu']}, {info['cpu_count']} cores, {info['date']}"
  out = run(args)
  out["machine"] = args.machine
  path = os.path.join(args.out, "shapes_ablations.json")
  if args.merge and os.path.exists(path):
    with open(path) as f:
      out["rows"] = merge_rows(json.load(f), out["rows"])
  out["seconds"] = time.time() - start
  os.makedirs(args.out, exist_ok=True)
  md = table(out, args)
  with open(os.path.join(args.out, "shapes_ablations.md"), "w") as f:
    f.write("# Shapes-world ablations\n\n" + md)
  with open(path, "w") as f:
    json.dump(out, f, indent=1)
  print("\n" + md)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
