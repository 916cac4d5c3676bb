"""experiments/shapes_ablations.py: merging newly measured rows into the committed table."""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments"))
import shapes_ablations as sa  # pylint: disable=g-import-not-at-top,wrong-import-position

GROUPVIT = sa.ROWS["two_stage_blocks"][0][0]
VIT, NO_BLOCKS = "ViT, pixel-wise", "ViT without blocks, pixel-wise"
KMEANS = sa.kmeans_name("two_stage_blocks")


def row(miou, machine=None):
  r = {"seeds": {"0": miou}, "train_seconds": {"0": 60.0}, "steps": 400}
  return r | ({"machine": machine} if machine else {})


def test_merge_keeps_old_rows_with_their_machine_and_the_table_order():
  old = {"machine": "old box", "rows": {VIT: row(0.15), GROUPVIT: row(0.16), KMEANS: row(0.17)}}
  merged = sa.merge_rows(old, {NO_BLOCKS: row(0.5, "new box"), GROUPVIT: row(0.2, "new box")},
                         "two_stage_blocks")
  assert list(merged) == [GROUPVIT, VIT, KMEANS, NO_BLOCKS]  # ROWS order, K-means after ViT
  assert merged[GROUPVIT]["seeds"]["0"] == 0.2 and merged[GROUPVIT]["machine"] == "new box"
  assert merged[VIT]["machine"] == "old box" and merged[VIT]["seeds"]["0"] == 0.15
  out = {"rows": merged, "chance_miou": 0.154, "machine": "new box"}
  md = sa.table(out, argparse.Namespace(test_images=500, world_seed=0, base="two_stage_blocks"))
  lines = md.splitlines()
  assert lines[0].endswith("measured |") and "(1) new box" in md and "(2) old box" in md
  assert all(line.count("|") == lines[0].count("|") for line in lines if line.startswith("|"))
  assert f"| {VIT} | Tab. 4 | 0: 0.150 | 0.150 | 1.0 | 2 |" in lines
  assert "preset 'two_stage_blocks' of groupvit_jax/shapes_config.py" in md


def test_every_base_is_a_demo_variant_with_a_reference_row_and_a_vit():
  from groupvit_jax import shapes_config  # pylint: disable=g-import-not-at-top
  for base, rows in sa.ROWS.items():
    assert base in shapes_config.PRESETS and rows[0][1] == "ref" and rows[0][2] == ""
    order = sa._row_order(base)  # pylint: disable=protected-access
    assert order[order.index(VIT) + 1] == sa.kmeans_name(base)
  assert sa.kmeans_name("demo").startswith("ViT + K-means (K=16")  # 16 segments
  assert sa.kmeans_k("two_stage_blocks") == 4  # 16 -> 4 groups
