"""Evaluation faults (docs/reliability.md), through ``groupvit-jax evaluate`` on a 4-image split
of the shapes world: an unreadable image or label is named and stops the run (status 2, no
traceback); ``--skip-bad`` goes on and lists the files left out in the JSON; a checkpoint of
another architecture fails with the mismatched keys before any image is read."""

import json
import shutil

import pytest

from groupvit_jax.cli.main import main
from groupvit_jax.convert import native
from groupvit_jax.segmentation.datasets import base
from train_testlib import optimizations_off


@pytest.fixture(scope="module", autouse=True)
def fast_compiles():
  with optimizations_off():
    yield


@pytest.fixture(scope="module")
def bad_split(tmp_path_factory):
  """4 scenes; scene 1's image and scene 2's label are rotten files."""
  from input_pipeline.synthetic_world import WorldConfig
  from input_pipeline.world_files import write_split
  root = tmp_path_factory.mktemp("bad_world")
  write_split(str(root), WorldConfig(image_size=32), 0, "val", 4, progress=False)
  bad_image = root / "val" / "images" / "val_000001.png"
  bad_label = root / "val" / "labels" / "val_000002.png"
  bad_image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"rotten" * 10)  # a PNG header, then garbage
  bad_label.write_bytes(b"")
  return root, str(bad_image), str(bad_label)


def run(capsys, *argv):
  rc = main(list(map(str, argv)))
  out, err = capsys.readouterr()
  return rc, out, err


def evaluate_args(checkpoint, root, output):
  return ("evaluate", "--checkpoint", checkpoint, "--dataset", "folder", "--data-root", root,
          "--output", output)


def test_unreadable_image_is_named(bad_split, tiny_checkpoint, tmp_path, capsys):
  root, bad_image, _ = bad_split
  rc, _, err = run(capsys, *evaluate_args(tiny_checkpoint, root, tmp_path / "r.json"))
  assert rc == 2 and "Traceback" not in err
  assert f"error: {bad_image}: cannot read image" in err, err
  assert not (tmp_path / "r.json").exists()


def test_skip_bad_goes_on_and_lists_the_files(bad_split, tiny_checkpoint, tmp_path, capsys):
  root, bad_image, bad_label = bad_split
  rc, out, err = run(capsys, *evaluate_args(tiny_checkpoint, root, tmp_path / "r.json"),
                     "--skip-bad")
  assert rc == 0, err
  res = json.loads((tmp_path / "r.json").read_text())
  assert res["num_images"] == 2 and 0.0 <= res["mIoU"] <= 1.0
  skipped = {s["key"]: s for s in res["skipped"]}
  assert sorted(skipped) == ["val_000001", "val_000002"]
  assert skipped["val_000001"]["image"] == bad_image and bad_image in skipped["val_000001"]["error"]
  assert skipped["val_000002"]["label"] == bad_label and bad_label in skipped["val_000002"]["error"]
  assert "2 unreadable skipped" in out and "skipped val_000001:" in out


def test_checkpoint_of_another_architecture_fails_before_reading_images(
    bad_split, tiny_checkpoint, tmp_path, capsys, monkeypatch):
  root, _, _ = bad_split
  other = tmp_path / "other"
  shutil.copytree(tiny_checkpoint, other)
  cfg_path = other / native.CONFIG_FILE
  cfg = json.loads(cfg_path.read_text())
  cfg["model"]["text"]["width"] *= 2  # the weights stay those of the tiny model
  cfg_path.write_text(json.dumps(cfg))
  reads = []
  real = base.SegDataset.__getitem__
  monkeypatch.setattr(base.SegDataset, "__getitem__", lambda self, i: reads.append(i) or real(self, i))
  rc, _, err = run(capsys, *evaluate_args(other, root, tmp_path / "r.json"))
  assert rc == 2 and "Traceback" not in err
  assert f"checkpoint {other} does not match the model" in err
  assert "shape mismatch: text_encoder/" in err, err[:2000]
  assert reads == []  # refused before any image was read
