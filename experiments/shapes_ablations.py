"""The paper's ablations in miniature, on the synthetic shapes world of ``make demo``.

Trains every variant of a base configuration (a preset of groupvit_jax/shapes_config.py: its
world and arguments) for each seed on one world, evaluates
zero-shot segmentation of the held-out test split exactly like ``make demo`` (background threshold
chosen on val, protocol ``shapes``), and writes a markdown table plus the raw numbers to
shapes_ablations_{base}.md / .json. Base ``demo`` (the default, make demo's model):

  variant                      paper table   arguments after the base's
  GroupViT (1 stage, ...)      (reference)   -
  soft assignment              Table 1       hard=False
  no multi-label loss          Table 3       multi_label=0
  2 stages                     Table 2       stages=2,groups=16/8
  the reference's residual     (round 6)     group_residual=True
  ViT, pixel-wise              Table 4       vit=True (2 blocks: as many parameters)
  ViT + K-means (K=16)         Table 4       the same ViT checkpoints, patch tokens clustered
  ViT without blocks           (round 5)     vit=True,vit_depth=0

Base ``two_stage_blocks`` has the rows of ``ROWS["two_stage_blocks"]``.
``--only NAME ... --merge`` runs some variants and keeps the other rows of the existing json
(each row records the machine and date it was measured on).

    python experiments/shapes_ablations.py [--base demo] [--seeds 0 1] [--steps N]
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
from groupvit_jax import demo, shapes_config  # noqa: E402  pylint: disable=g-import-not-at-top

ROWS = {  # base -> (name, paper table, configs/shapes.py arguments after the base's)
    "demo": (
        ("GroupViT (1 stage, no blocks, 4 px patches, 16 segments)", "ref", ""),
        ("soft assignment", "Tab. 1", "hard=False"),
        ("no multi-label loss", "Tab. 3", "multi_label=0"),
        ("2 stages (16 then 8 segments)", "Tab. 2", "stages=2,groups=16/8"),
        ("with the reference's segment residual (z = out + p)", "", "group_residual=True"),
        ("ViT, pixel-wise", "Tab. 4", "vit=True"),  # 2 blocks: the GroupViT's parameter count
        ("ViT without blocks, pixel-wise", "", "vit=True,vit_depth=0"),
    ),
    "two_stage_blocks": (
        ("GroupViT (2-stage, hard, multi-label)", "ref", ""),
        ("soft assignment", "Tab. 1", "hard=False"),
        ("no multi-label loss", "Tab. 3", "multi_label=0"),
        ("1 stage", "Tab. 2", "stages=1"),
        # the patch embedding and the two GroupingBlocks only (preset two_stage_no_blocks)
        ("without Transformer blocks (depths=0/0/0, assign_std=0.2)", "",
         "depths=0/0/0,assign_std=0.2"),
        ("ViT, pixel-wise", "Tab. 4", "vit=True"),  # 4 blocks
        # patch embedding + linear head: labels every patch from its own pixels only
        ("ViT without blocks, pixel-wise", "", "vit=True,vit_depth=0"),
    ),
    # Prepared for one GPU (docs/shapes_demo.md): where colour no longer names the kind, does the
    # released design's grouping beat a same-size ViT and a purely local labeller?
    "reference_any_colour": (
        ("GroupViT, the released design (2 stages, blocks, segment residual)", "ref", ""),
        ("ViT, pixel-wise", "Tab. 4", "vit=True"),  # 9 blocks: the GroupViT's parameter count
        ("ViT without blocks, pixel-wise", "", "vit=True,vit_depth=0"),
    ),
}
def kmeans_k(base: str) -> int:
  """As many clusters as the base GroupViT has final groups (read from its config)."""
  from groupvit_jax.model_config import GroupViTConfig  # pylint: disable=g-import-not-at-top
  config = shapes_config.get_config(demo.preset(base)[1])
  return GroupViTConfig.from_dict(config.model.to_dict()).vision.num_output_groups[-1]


def kmeans_name(base: str) -> str:
  return f"ViT + K-means (K={kmeans_k(base)}, as many groups as GroupViT ends with)"


def _row_order(base: str) -> list[str]:
  names = []
  for name, _, arg in ROWS[base]:
    names.append(name)
    if arg == "vit=True":
      names.append(kmeans_name(base))
  return names


def merge_rows(old: dict, rows: dict, base: str) -> dict:
  """The rows of an earlier ``shapes_ablations_{base}.json`` (``old``) updated with newly measured
  ``rows``, in table order; old rows keep the machine they were measured on."""
  kept = {n: {"machine": old.get("machine", "unknown"), **r} for n, r in old["rows"].items()}
  merged = {**kept, **rows}
  return {n: merged[n] for n in _row_order(base) if n in merged}


def run(args) -> dict:
  world, base_arg = demo.preset(args.base)
  _, shards, eval_root = demo.make_world(args.data, args.world_seed, args.train_images, 200,
                                         args.test_images, cfg=world)
  from groupvit_jax import load_pretrained  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.baselines import KMeansGrouping  # pylint: disable=g-import-not-at-top
  rows: dict[str, dict] = {}
  for seed in args.seeds:
    for name, _, arg in ROWS[args.base]:
      if args.only and name not in args.only:
        continue
      tag = (arg or "groupvit").replace("=", "-").replace("/", "-").replace(",", "_")
      workdir = os.path.join(args.runs, args.base, f"{tag}_seed{seed}")
      demo.banner(f"{name}, seed {seed}")
      secs, config = demo.train(
          ",".join(filter(None, [base_arg, arg, f"seed={seed}", args.config_arg])), shards,
          workdir, args.steps)
      model = load_pretrained(workdir)
      evals = {name: model}
      if arg == "vit=True":
        evals[kmeans_name(args.base)] = KMeansGrouping(model, k=kmeans_k(args.base))
      for eval_name, m in evals.items():
        result = demo.evaluate(m, eval_root)
        entry = rows.setdefault(eval_name, {"seeds": {}, "train_seconds": {}})
        entry["seeds"][str(seed)] = result["mIoU"]
        entry["train_seconds"][str(seed)] = secs
        entry["steps"] = int(config.total_steps)
        entry["batch"] = int(config.input.batch_size)
        entry["machine"] = args.machine
        print(f"{eval_name} seed {seed}: mIoU {result['mIoU']:.3f} "
              f"(bg threshold {result['bg_threshold']}, trained {secs / 60:.1f} min)", flush=True)
  return {"rows": rows, "chance_miou": demo.chance_miou(eval_root)}


def table(out: dict, args) -> str:
  tables = {n: t or "-" for n, t, _ in ROWS[args.base]} | {kmeans_name(args.base): "Tab. 4"}
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
  first = next(iter(out["rows"].values()), {})
  steps, batch = first.get("steps", 0), first.get("batch", 64)  # tables before 'batch': 64
  about = shapes_config.PRESETS[args.base].about
  return "\n".join(lines) + (
      f"\n\nmIoU (fraction, background included) on {args.test_images} held-out test images of "
      f"world seed {args.world_seed}, {steps} steps x batch {batch} per run, base: preset "
      f"{args.base!r} of groupvit_jax/shapes_config.py ({about})"
      f"; K-means reuses the ViT checkpoints. Machine: {machines[0] if len(machines) == 1 else ''}"
      + "".join(f"\n({i + 1}) {m}" for i, m in enumerate(machines) if len(machines) > 1) + ".\n")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--base", default=shapes_config.DEFAULT_PRESET, choices=sorted(ROWS),
                 help="the demo variant whose model is ablated (default: the demo's)")
  p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
  p.add_argument("--steps", type=int, default=None, help="steps per run (default: the config's)")
  p.add_argument("--world-seed", type=int, default=0)
  p.add_argument("--train-images", type=int, default=30000)
  p.add_argument("--test-images", type=int, default=500)
  p.add_argument("--data", default=os.path.join(REPO, "data", "shapes"))
  p.add_argument("--runs", default=os.path.join(REPO, "runs", "shapes_ablations"))
  p.add_argument("--out", default=os.path.join(REPO, "experiments", "results"))
  p.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
  p.add_argument("--config-arg", default="",
                 help="shapes_config arguments appended to every run's, e.g. 'batch=16' for a "
                 "small rehearsal of a GPU-sized base")
  p.add_argument("--merge", action="store_true",
                 help="keep the rows not run from the existing shapes_ablations_{base}.json")
  args = p.parse_args(argv)
  demo.show_training_progress()
  start = time.time()
  info = machine()
  args.machine = f"{info['cpu']}, {info['cpu_count']} cores, {info['date']}"
  out = run(args)
  out["machine"] = args.machine
  out["base"] = args.base
  path = os.path.join(args.out, f"shapes_ablations_{args.base}.json")
  if args.merge and os.path.exists(path):
    with open(path) as f:
      out["rows"] = merge_rows(json.load(f), out["rows"], args.base)
  out["seconds"] = time.time() - start
  os.makedirs(args.out, exist_ok=True)
  md = table(out, args)
  with open(os.path.join(args.out, f"shapes_ablations_{args.base}.md"), "w") as f:
    f.write(f"# Shapes-world ablations (base: {args.base})\n\n" + md)
  with open(path, "w") as f:
    json.dump(out, f, indent=1)
  print("\n" + md)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
