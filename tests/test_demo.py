"""``make demo`` end to end at toy scale: world -> both trainings -> zero-shot mIoU + pictures."""

import json
import os

import numpy as np

from groupvit_jax import demo


def logged_losses(workdir):
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return [r["loss"] for r in rows if "loss" in r]


def test_short_demo_lowers_the_loss_and_reports_miou(tmp_path):
  out, runs = tmp_path / "results", tmp_path / "runs"
  rc = demo.main(["--out", str(out), "--data", str(tmp_path / "data"), "--runs", str(runs),
                  "--train-images", "300", "--val-images", "6", "--test-images", "8",
                  "--steps", "40", "--config-arg", "batch=16"])
  assert rc == 0
  metrics = json.load(open(out / "metrics.json"))
  for key in ("miou", "baseline_miou", "chance_miou"):
    assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
  assert metrics["seed"] == 0 and "shapes" in metrics["protocol"]
  assert metrics["num_test_images"] == 8 and metrics["train_steps"] == 40
  assert set(metrics["per_class_iou"]["groupvit"]) == {
      "background", "circle", "square", "triangle", "star"}
  for name in ("groupvit", "vit"):
    losses = logged_losses(runs / name)
    assert len(losses) >= 5 and np.isfinite(losses).all()
    assert np.mean(losses[-2:]) < losses[0], (name, losses)
  assert os.path.getsize(out / "summary.png") > 1000
  key = metrics["pictures"][0]
  assert os.path.exists(out / f"{key}_groupvit_overlay.png")
  assert os.path.exists(out / f"{key}_groups.png")
