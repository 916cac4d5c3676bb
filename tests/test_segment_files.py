"""`groupvit-jax segment` over folders and globs: the streamed batches, summary.json (sizes and
class shares, checked against the written masks), and bad files skipped by name."""

import json

import numpy as np
import pytest
from PIL import Image

from groupvit_jax.cli.main import main as cli_main
from groupvit_jax.image_files import expand_image_args



def test_expand_image_args(tmp_path):
  for name in ("b.png", "a.JPG", "notes.txt"):
    (tmp_path / name).write_bytes(b"x")
  (tmp_path / "sub").mkdir()
  (tmp_path / "sub" / "c.png").write_bytes(b"x")
  folder = expand_image_args([str(tmp_path)])
  assert folder == [str(tmp_path / "a.JPG"), str(tmp_path / "b.png")]  # sorted, not recursive
  assert expand_image_args([str(tmp_path / "**" / "*.png")]) == [
      str(tmp_path / "b.png"), str(tmp_path / "sub" / "c.png")]
  assert expand_image_args([str(tmp_path / "b.png"), str(tmp_path)]) == [
      str(tmp_path / "b.png"), str(tmp_path / "a.JPG")]  # duplicates dropped
  for bad, msg in ((tmp_path / "none.png", "no such file"), (tmp_path / "*.gif", "matches"),
                   (tmp_path / "sub" / "sub2", "no such")):
    with pytest.raises(FileNotFoundError, match=msg):
      expand_image_args([str(bad)])


def test_segment_folder_and_glob_with_a_bad_file(tiny_checkpoint, voc_root, tmp_path, capsys,
                                                 fast_compiles):
  folder = tmp_path / "in"
  folder.mkdir()
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(folder / "noise.png")
  (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
  voc = voc_root / "VOC2012" / "JPEGImages"
  pattern = str(voc / "2007_0000*.jpg")
  out = tmp_path / "out"
  rc = cli_main(["segment", "--checkpoint", str(tiny_checkpoint), "--image", str(folder),
                 pattern, "--classes", "cat,dog,sky", "--bg-threshold", "0.4", "--mode",
                 "whole", "--batch-size", "2", "--output", str(out)])
  stdout, err = capsys.readouterr()
  assert rc == 1  # written, but not every file
  assert "broken.jpg" in err and "Traceback" not in err
  summary = json.loads((out / "summary.json").read_text())
  voc_files = sorted(str(p) for p in voc.glob("2007_0000*.jpg"))
  assert [im["path"] for im in summary["images"]] == [str(folder / "noise.png")] + voc_files
  assert [s["path"] for s in summary["skipped"]] == [str(folder / "broken.jpg")]
  assert "cannot read image" in summary["skipped"][0]["error"]
  assert summary["labels"] == ["background", "cat", "dog", "sky"]
  for im in summary["images"]:
    assert (im["width"], im["height"]) == Image.open(im["path"]).size
    mask = np.asarray(Image.open(out / im["outputs"]["mask"]))
    assert mask.shape == (im["height"], im["width"])
    counts = np.bincount(mask.ravel(), minlength=4) / mask.size
    want = {summary["labels"][i]: c for i, c in enumerate(counts) if c > 0}
    assert im["shares"].keys() == want.keys()
    np.testing.assert_allclose([im["shares"][k] for k in want], list(want.values()), atol=1e-6)
    for kind in ("mask", "overlay", "groups"):
      assert (out / im["outputs"][kind]).is_file()
  assert summary["images_per_second"] > 0
  assert "images/s" in stdout and stdout.count("_{mask,overlay,groups}.png") == len(voc_files) + 1
