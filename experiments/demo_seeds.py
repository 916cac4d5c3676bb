"""The demo's spread over seeds: for each seed, the world (its shards and splits), GroupViT's
training and the evaluation of `make demo`, with what decides the number beside it: the
background threshold chosen on val, the test mIoU at every threshold (was the choice the cause?),
per-class IoU, the last training loss. The ViT baseline is trained only with ``--baseline``
(it is 70% of the demo's time and scored 0.16-0.17 in every run so far).

  python experiments/demo_seeds.py --seeds 0 1 2 3 [--steps 350] [--baseline] [--tag NAME]

Writes experiments/results/demo_seeds_<tag>.json and .md (machine, per-seed rows, mean, worst).
Resumable: a seed already in the JSON with the same settings is not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "experiments", "benchmarks"))
from bench_common import machine  # pylint: disable=g-import-not-at-top,wrong-import-position


def _test_miou_by_threshold(model, eval_root: str, thresholds) -> dict[str, float]:
  from groupvit_jax.segmentation.benchmark import evaluate_segmentation  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.datasets import open_dataset  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.protocols import SHAPES, with_bg_threshold  # pylint: disable=g-import-not-at-top
  test = open_dataset("folder", eval_root, "test")
  return {str(t): evaluate_segmentation(model, test, with_bg_threshold(SHAPES, "folder", t),
                                        progress=False)["mIoU"] for t in thresholds}


def _last_loss(workdir: str) -> float | None:
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  losses = [r["loss"] for r in rows if "loss" in r]
  return losses[-1] if losses else None


def run_seed(seed: int, args, scratch: str) -> dict:
  from groupvit_jax import demo, load_pretrained  # pylint: disable=g-import-not-at-top
  world_cfg, config_arg = demo.preset(args.preset, args.config_arg)
  t0 = time.time()
  data = os.path.join(scratch, "data")
  _, shards, eval_root = demo.make_world(data, seed, args.train_images, args.val_images,
                                         args.test_images, cfg=world_cfg)
  world_secs = time.time() - t0
  row = {"seed": seed, "world_seconds": round(world_secs, 1)}
  extra = f",{config_arg}" if config_arg else ""
  names = ["groupvit"] + (["vit_pixelwise"] if args.baseline else [])
  for name in names:
    workdir = os.path.join(scratch, "runs", f"{name}_seed{seed}")
    shutil.rmtree(workdir, ignore_errors=True)
    arg = f"seed={seed}{extra}" if name == "groupvit" else f"vit=True,seed={seed}{extra}"
    secs, config = demo.train(arg, shards, workdir, args.steps)
    model = load_pretrained(workdir)
    result = demo.evaluate(model, eval_root)
    row[name] = {
        "miou": result["mIoU"], "bg_threshold": result["bg_threshold"],
        "per_class_iou": result["per_class_iou"],
        "val_miou_by_threshold": result["val_miou_by_threshold"],
        "test_miou_by_threshold": _test_miou_by_threshold(model, eval_root, demo.THRESHOLDS),
        "train_seconds": round(secs, 1), "train_steps": int(config.total_steps),
        "last_loss": _last_loss(workdir),
    }
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"seed {seed} {name}: mIoU {result['mIoU']:.3f} at threshold "
          f"{result['bg_threshold']} (best on test {max(row[name]['test_miou_by_threshold'].values()):.3f}); "
          f"{secs:.0f} s training", flush=True)
  row["seconds"] = round(time.time() - t0, 1)
  return row


def markdown(report: dict) -> str:
  rows = report["seeds"]
  lines = [f"# Demo over seeds: {report['tag']}", "",
           f"Settings: {json.dumps(report['settings'])}", "",
           f"Machine: {report['machine']['cpu']}, {report['machine']['cpu_count']} cores, "
           f"{report['machine']['date']}", "",
           "| seed | GroupViT mIoU | threshold (val) | best test mIoU (threshold) | circle | square "
           "| triangle | star | last loss | ViT mIoU | minutes |", "|---" * 11 + "|"]
  for r in rows:
    g = r["groupvit"]
    best_t = max(g["test_miou_by_threshold"], key=g["test_miou_by_threshold"].get)
    c = g["per_class_iou"]
    vit = f"{r['vit_pixelwise']['miou']:.3f}" if "vit_pixelwise" in r else "-"
    lines.append(f"| {r['seed']} | {g['miou']:.3f} | {g['bg_threshold']} | "
                 f"{g['test_miou_by_threshold'][best_t]:.3f} ({best_t}) | {c['circle']:.2f} | "
                 f"{c['square']:.2f} | {c['triangle']:.2f} | {c['star']:.2f} | "
                 f"{g['last_loss']:.3f} | {vit} | {r['seconds'] / 60:.1f} |")
  mious = [r["groupvit"]["miou"] for r in rows]
  if mious:
    lines += ["", f"GroupViT mIoU over {len(mious)} seeds: mean {sum(mious) / len(mious):.3f}, "
              f"worst {min(mious):.3f}, best {max(mious):.3f}."]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
  p.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
  p.add_argument("--preset", default="demo")
  p.add_argument("--config-arg", default="")
  p.add_argument("--baseline", action="store_true", help="also train and score the ViT")
  p.add_argument("--train-images", type=int, default=30000)
  p.add_argument("--val-images", type=int, default=200)
  p.add_argument("--test-images", type=int, default=500)
  p.add_argument("--scratch", default=os.path.join("/tmp", "groupvit_demo_seeds"))
  p.add_argument("--tag", default=None, help="result file name (default: preset and steps)")
  args = p.parse_args(argv)
  from groupvit_jax import demo  # pylint: disable=g-import-not-at-top
  demo.show_training_progress()
  settings = {k: getattr(args, k) for k in ("steps", "preset", "config_arg", "baseline",
                                            "train_images", "val_images", "test_images")}
  tag = args.tag or f"{args.preset}_steps{args.steps or 'default'}"
  out = os.path.join(REPO, "experiments", "results", f"demo_seeds_{tag}")
  report = {"tag": tag, "settings": settings, "machine": machine(), "seeds": []}
  if os.path.exists(out + ".json"):
    with open(out + ".json") as f:
      old = json.load(f)
    if old.get("settings") == settings:
      report["seeds"] = old["seeds"]
  done = {r["seed"] for r in report["seeds"]}
  for seed in args.seeds:
    if seed in done:
      print(f"seed {seed}: already in {out}.json", flush=True)
      continue
    report["seeds"].append(run_seed(seed, args, args.scratch))
    report["seeds"].sort(key=lambda r: r["seed"])
    report["machine"] = machine()
    with open(out + ".json", "w") as f:
      json.dump(report, f, indent=1)
    with open(out + ".md", "w") as f:
      f.write(markdown(report))
  print(markdown(report))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
