"""experiments/shapes_ablations.py, run as a script: merging measured rows into the committed
table (``--merge`` with no row to train keeps the old rows, in table order, with their machines)."""

import json
import os
import re
import subprocess
import sys

import pytest

from groupvit_jax import shapes_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "experiments", "shapes_ablations.py")
GROUPVIT = "GroupViT (2-stage, hard, multi-label)"  # the reference row of base two_stage_blocks
VIT = "ViT, pixel-wise"
KMEANS = "ViT + K-means (K=4, as many groups as GroupViT ends with)"  # 16 -> 4 groups


def row(miou, machine=None):
  r = {"seeds": {"0": miou}, "train_seconds": {"0": 60.0}, "steps": 400}
  return r | ({"machine": machine} if machine else {})


@pytest.mark.slow
def test_merge_keeps_old_rows_with_their_machine_and_the_table_order(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  old = {"machine": "box A", "rows": {VIT: row(0.15), KMEANS: row(0.17),
                                      GROUPVIT: row(0.2, "box B")}}
  (out / "shapes_ablations_two_stage_blocks.json").write_text(json.dumps(old))
  proc = subprocess.run(
      [sys.executable, SCRIPT, "--base", "two_stage_blocks", "--only", "no such row", "--merge",
       "--seeds", "0", "--train-images", "16", "--test-images", "4", "--data",
       str(tmp_path / "data"), "--runs", str(tmp_path / "runs"), "--out", str(out)],
      cwd=tmp_path, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  merged = json.loads((out / "shapes_ablations_two_stage_blocks.json").read_text())
  assert list(merged["rows"]) == [GROUPVIT, VIT, KMEANS]  # ROWS order, K-means after the ViT
  assert merged["rows"][GROUPVIT]["machine"] == "box B"
  assert merged["rows"][VIT]["machine"] == "box A" and merged["rows"][VIT]["seeds"]["0"] == 0.15
  assert merged["base"] == "two_stage_blocks" and 0 <= merged["chance_miou"] <= 1
  md = (out / "shapes_ablations_two_stage_blocks.md").read_text()
  lines = [line for line in md.splitlines() if line.startswith("|")]
  assert lines[0].endswith("measured |") and "(1) box A" in md and "(2) box B" in md
  assert all(line.count("|") == lines[0].count("|") for line in lines)
  assert f"| {VIT} | Tab. 4 | 0: 0.150 | 0.150 | 1.0 | 1 |" in lines
  assert "preset 'two_stage_blocks' of groupvit_jax/shapes_config.py" in md


@pytest.mark.slow
def test_every_base_is_a_preset():
  proc = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  bases = re.search(r"--base \{([^}]*)\}", proc.stdout).group(1).split(",")
  assert set(bases) == {"demo", "two_stage_blocks", "reference_any_colour"}
  assert set(bases) <= set(shapes_config.PRESETS)
