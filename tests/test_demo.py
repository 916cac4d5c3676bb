"""``make demo`` end to end at toy scale: world -> both trainings -> zero-shot mIoU + pictures."""

import json
import os

import numpy as np
import pytest

from groupvit_jax import demo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_presets_select_their_world_and_model():
  from groupvit_jax import shapes_config  # pylint: disable=g-import-not-at-top
  from groupvit_jax.model_config import GroupViTConfig  # pylint: disable=g-import-not-at-top
  from input_pipeline import synthetic_world as sw  # pylint: disable=g-import-not-at-top

  def vision(arg):
    return GroupViTConfig.from_dict(shapes_config.get_config(arg).model.to_dict()).vision

  world, arg = demo.preset("two_stage_blocks", "lr=1e-3")
  assert world == sw.COLOURED_KINDS_WORLD and arg == "preset=two_stage_blocks,lr=1e-3"
  world, arg = demo.preset("two_stage_no_blocks", "assign_std=0.1")
  assert world.background_nouns and world.empty_scenes == 0.2 and world.describe_background == 0.8
  assert world.kind_colors == sw.COLOURED_KINDS_WORLD.kind_colors  # otherwise the same world
  assert vision(arg).depths == (0, 0, 0)
  assert vision(arg).assign_qk_init_std == 0.1  # the user's arguments come after the preset
  world_demo, arg = demo.preset(shapes_config.DEFAULT_PRESET)
  assert world_demo == world == sw.DEMO_WORLD
  assert vision(arg) == vision(None)  # the demo trains what configs/shapes.py builds by default
  gv = vision(arg)
  assert (gv.depths, gv.num_group_tokens, gv.num_output_groups) == ((0, 0), (16, 0), (16,))
  assert gv.patch_size == 4 and not gv.group_token_residual
  vit = vision(arg + ",vit=True")
  assert vit.depths == (2,) and vit.patch_size == 4  # the baseline: same patches, 2 blocks
  with pytest.raises(ValueError, match="two_stage_blocks"):
    demo.preset("round4")


def test_the_printed_expectation_is_the_readme_table():
  """The range `make demo` prints is the lowest, highest and mean GroupViT mIoU of the README's
  table of measured runs (a new row there needs the constant updated, and the other way)."""
  import re  # pylint: disable=g-import-not-at-top
  readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
  section = readme[readme.index("## The demo"):]
  head = "| run (2-core VM) | seed | GroupViT mIoU |"
  rows = section[section.index(head):].split("\n\n")[0].splitlines()[2:]
  mious = [float(r.split("|")[3]) for r in rows]
  low, high, mean, runs = demo.EXPECTED_MIOU
  assert len(mious) >= 4 and runs.startswith(f"{len(mious)} runs")
  assert (low, high) == (round(min(mious), 3), round(max(mious), 3))
  assert abs(mean - sum(mious) / len(mious)) < 5e-4
  assert re.search(rf"Mean {mean:.3f}, worst {low:.3f}, best {high:.3f} over these runs", section)
