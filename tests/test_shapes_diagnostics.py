"""experiments/shapes_diagnostics.py and shapes_probe.py, run as the scripts they are, on a random
shapes-config model and a small written world."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from groupvit_jax import save_pretrained, shapes_config
from groupvit_jax.model_config import GroupViTConfig
from groupvit_jax.models import groupvit as gv
from input_pipeline import synthetic_world as sw
from input_pipeline.world_files import write_world

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "experiments")


def _script(name, *args, timeout=600):
  proc = subprocess.run([sys.executable, os.path.join(SCRIPTS, name), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout)
  return proc


@pytest.mark.slow
def test_diagnostics_report_bounded_numbers_for_every_stage(tmp_path):
  write_world(str(tmp_path), sw.COLOURED_KINDS_WORLD, 0, 4, 6, 1)
  config = shapes_config.get_config("preset=two_stage_blocks,width=32,text_width=32,text_layers=1")
  model = gv.GroupViT(GroupViTConfig.from_dict(config.model.to_dict()), rngs=nnx.Rngs(0))
  save_pretrained(model, str(tmp_path / "model"))
  stuff = ",".join(sorted(sw.STUFF_NAMES.values()))
  proc = _script("shapes_diagnostics.py", "--checkpoint", str(tmp_path / "model"), "--eval-root",
                 str(tmp_path / "eval"), "--batch", "4", "--stuff-names", stuff, "--json",
                 str(tmp_path / "out.json"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert ("stage 2:" in proc.stdout and "stuff names" in proc.stdout
          and "cosine background" in proc.stdout)
  out = json.loads((tmp_path / "out.json").read_text())
  assert len(out["stages"]) == 2  # one row per grouping stage
  for row, groups in zip(out["stages"], (16, 4)):
    assert 1 <= row["groups_used"] <= groups
    assert 0 <= row["oracle_miou"] <= 1 and row["assign_logit_gap"] >= 0
  assert set(out["image_auc"]) == set(sw.SHAPES)
  assert 0 <= out["background_groups_named_as_present_class"] <= 1
  assert all(0 <= v <= 1 for v in out["miou_by_threshold"].values())
  assert len(out["miou_by_cosine_threshold"]) == 8
  assert all(0 <= v <= 1 for v in out["miou_by_cosine_threshold"].values())
  assert 0 <= out["stuff_vocabulary_miou"] <= 1
  assert np.isfinite(out["group_image_cosine"])


@pytest.mark.slow
def test_probe_runs_a_world_variant_end_to_end(tmp_path):
  world = '{"background_nouns": true, "empty_scenes": 0.3}'
  proc = _script("shapes_probe.py", "--name", "t", "--work", str(tmp_path), "--steps", "4",
                 "--config-arg", "batch=8,width=32,text_width=32,text_layers=1", "--world", world,
                 "--train-images", "40", "--val-images", "4", "--test-images", "4")
  assert proc.returncode == 0, proc.stderr[-3000:]
  row = json.loads((tmp_path / "probes.jsonl").read_text().splitlines()[-1])
  assert row["name"] == "t" and row["world"] == json.loads(world)
  assert 0 <= row["test_miou"] <= 1 and 0 <= row["diagnostics"]["stuff_vocabulary_miou"] <= 1
  written = json.loads(next(tmp_path.glob("world_*/world.json")).read_text())
  assert written["config"]["empty_scenes"] == 0.3 and written["config"]["background_nouns"]
  bad = _script("shapes_probe.py", "--name", "bad", "--work", str(tmp_path), "--world",
                '{"no_such": 1}')
  assert bad.returncode != 0
  assert "--world: expected a JSON object of WorldConfig fields" in bad.stderr
