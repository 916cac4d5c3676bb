"""Concept maps: region ranking and outlines on hand-made maps, and `groupvit-jax concepts` on the
shared VOC sample with a tiny checkpoint."""

import json

import numpy as np
from PIL import Image

from groupvit_jax import concepts
from groupvit_jax.cli.main import main as cli_main


def test_top_regions_ranks_by_soft_share_and_boxes_the_argmax():
  # 3 images 8x8, 2 groups. Group 1 takes a 2x3 block in image 0, a 4x4 block in image 2 and
  # nothing in image 1; its soft share (mean p_1) orders the images 2 > 0 > 1.
  soft = np.zeros((3, 8, 8, 2), np.float32)
  soft[..., 0] = 0.9
  soft[..., 1] = 0.1
  soft[0, 1:3, 4:7] = [0.2, 0.8]
  soft[2, 4:8, 0:4] = [0.3, 0.7]
  soft[1, :, :] = [0.6, 0.4]  # more soft mass than image 0, but never the argmax
  regions = concepts.top_regions(soft, top_k=5)
  g1 = regions[1]
  assert [r.image for r in g1] == [2, 0]  # image 1 has no pixel of group 1
  assert g1[0].box == (0, 4, 4, 8) and g1[1].box == (4, 1, 7, 3)  # (x0, y0, x1, y1)
  np.testing.assert_allclose(g1[0].score, (16 * 0.7 + 48 * 0.1) / 64, rtol=1e-6)
  assert g1[0].mask.sum() == 16
  g0 = regions[0]
  assert [r.image for r in g0] == [0, 2, 1]  # shares 0.834, 0.75, 0.6
  assert len(concepts.top_regions(soft, top_k=1)[0]) == 1


def test_outline_is_the_region_border():
  mask = np.zeros((7, 7), bool)
  mask[1:6, 2:5] = True
  edge = concepts.outline(mask)
  inner = np.zeros_like(mask)
  inner[2:5, 3:4] = True
  np.testing.assert_array_equal(edge, mask & ~inner)


def test_original_box_maps_back_through_the_centre_crop():
  image = np.zeros((100, 200, 3), np.uint8)  # landscape: scale 0.5 to 50x100, crop x 25..75
  crop, mapping = concepts.square_crop(image, 50)
  assert crop.shape == (50, 50, 3) and mapping == (0.5, 25, 0)
  assert concepts.original_box((0, 0, 50, 50), mapping, (100, 200)) == [50, 0, 150, 100]



def test_cli_concepts_on_voc_sample(tiny_checkpoint, voc_root, tmp_path, capsys, fast_compiles):
  images = voc_root / "VOC2012" / "JPEGImages"
  (tmp_path / "bad.jpg").write_text("not an image")
  out = tmp_path / "out"
  rc = cli_main(["concepts", "--checkpoint", str(tiny_checkpoint), "--images", str(images),
                 str(tmp_path / "bad.jpg"), "--output", str(out), "--top", "3",
                 "--image-size", "64", "--tile", "32"])
  stdout, err = capsys.readouterr()
  assert rc == 0, err
  index = json.loads((out / "concepts.json").read_text())
  n_images = len(list(images.glob("*.jpg")))
  assert len(index["images"]) == n_images and index["skipped"][0]["path"].endswith("bad.jpg")
  assert [s["stage"] for s in index["stages"]] == [0, 1]
  for stage, groups in zip(index["stages"], (4, 2)):  # the tiny model's output groups
    assert len(stage["groups"]) == groups
    grid = Image.open(out / stage["grid"])
    assert grid.size == (64 + 3 * (32 + 4) + 4, 24 + groups * (32 + 4) + 4)
    for g in stage["groups"]:
      scores = [r["score"] for r in g["regions"]]
      assert len(scores) <= 3 and scores == sorted(scores, reverse=True)
      for r in g["regions"]:
        w, h = Image.open(r["image"]).size
        x0, y0, x1, y1 = r["box"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
  # Every image's pixels are in exactly one group's region, so some group has regions.
  assert max(len(g["regions"]) for g in index["stages"][0]["groups"]) == 3

  rc = cli_main(["concepts", "--checkpoint", str(tiny_checkpoint), "--images", str(images),
                 "--output", str(out), "--stage", "5"])
  err = capsys.readouterr().err
  assert rc == 2 and "stages 0..1" in err and "Traceback" not in err
