"""experiments/shapes_diagnostics.py on a random shapes-config model and a small written world."""

import os
import sys

import numpy as np
import pytest
from flax import nnx

from groupvit_jax.segmentation.datasets import open_dataset
from groupvit_jax.model_config import GroupViTConfig
from groupvit_jax.models import groupvit as gv
from groupvit_jax.train import config_lib
from input_pipeline import synthetic_world as sw
from input_pipeline.world_files import write_world

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments"))
import shapes_diagnostics  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_diagnostics_report_bounded_numbers_for_every_stage(tmp_path, capsys):
  write_world(str(tmp_path), sw.COLOURED_KINDS_WORLD, 0, 4, 6, 1)
  dataset = open_dataset("folder", str(tmp_path / "eval"), "val")
  config = config_lib.load_config(os.path.join(REPO, "configs", "shapes.py"),
                                  "preset=two_stage_blocks,width=32,text_width=32,text_layers=1")
  model = gv.GroupViT(GroupViTConfig.from_dict(config.model.to_dict()), rngs=nnx.Rngs(0))
  out = shapes_diagnostics.diagnose(model, dataset, batch=4)
  assert len(out["stages"]) == 2  # one row per grouping stage
  for row, groups in zip(out["stages"], (16, 4)):
    assert 1 <= row["groups_used"] <= groups
    assert 0 <= row["oracle_miou"] <= 1 and row["assign_logit_gap"] >= 0
  assert set(out["image_auc"]) == set(sw.SHAPES)
  assert 0 <= out["background_groups_named_as_present_class"] <= 1
  assert all(0 <= v <= 1 for v in out["miou_by_threshold"].values())
  assert tuple(out["miou_by_cosine_threshold"]) == shapes_diagnostics.COSINE_THRESHOLDS
  assert all(0 <= v <= 1 for v in out["miou_by_cosine_threshold"].values())
  stuff = shapes_diagnostics.stuff_vocabulary_miou(model, dataset, sorted(sw.STUFF_NAMES.values()))
  assert 0 <= stuff <= 1
  out["stuff_vocabulary_miou"] = stuff
  shapes_diagnostics.report(out)
  printed = capsys.readouterr().out
  assert "stage 2:" in printed and "stuff names" in printed and "cosine background" in printed
  assert np.isfinite(out["group_image_cosine"])


def test_probe_runs_a_world_variant_end_to_end(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  import shapes_probe  # pylint: disable=g-import-not-at-top
  world = '{"background_nouns": true, "empty_scenes": 0.3}'
  rc = shapes_probe.main(["--name", "t", "--work", str(tmp_path), "--steps", "4",
                          "--config-arg", "batch=8,width=32,text_width=32,text_layers=1",
                          "--world", world, "--train-images", "40", "--val-images", "4",
                          "--test-images", "4"])
  assert rc == 0
  row = json.loads((tmp_path / "probes.jsonl").read_text().splitlines()[-1])
  assert row["name"] == "t" and row["world"] == json.loads(world)
  assert 0 <= row["test_miou"] <= 1 and 0 <= row["diagnostics"]["stuff_vocabulary_miou"] <= 1
  written = json.loads(next(tmp_path.glob("world_*/world.json")).read_text())
  assert written["config"]["empty_scenes"] == 0.3 and written["config"]["background_nouns"]
  with pytest.raises(SystemExit, match="--world: expected a JSON object of WorldConfig fields"):
    shapes_probe.main(["--name", "bad", "--work", str(tmp_path), "--world", '{"no_such": 1}'])
