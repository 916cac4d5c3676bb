"""``groupvit-jax segment`` and ``groupvit-jax evaluate`` end to end on a tiny random checkpoint:
the shared VOC sample, odd image files and user errors."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from groupvit_jax.cli.main import main
from groupvit_jax.segmentation.datasets import classes
from train_testlib import optimizations_off


@pytest.fixture(scope="module", autouse=True)
def fast_compiles():
  # Semantics are covered by the parity test; here only compile time matters.
  with optimizations_off():
    yield


def _run(capsys, *argv):
  rc = main(list(map(str, argv)))
  out, err = capsys.readouterr()
  return rc, out, err


def test_evaluate_voc_sample(tiny_checkpoint, voc_root, tmp_path, capsys):
  out_json = tmp_path / "results.json"
  rc, out, err = _run(capsys, "evaluate", "--checkpoint", tiny_checkpoint, "--dataset", "voc",
                      "--data-root", voc_root, "--output", out_json, "--protocol", "groupvit")
  assert rc == 0, err
  res = json.loads(out_json.read_text())
  assert res["protocol"] == "groupvit" and res["dataset"] == "voc" and res["num_images"] == 15
  assert list(res["per_class_iou"]) == list(classes.VOC)  # every class, background included
  present = ["background", "aeroplane", "bicycle", "bird", "bottle", "bus", "car", "cow", "horse",
             "motorbike", "person", "sheep"]  # in the sample's ground truth (its README)
  for name in present:
    assert res["per_class_iou"][name] is not None and 0.0 <= res["per_class_iou"][name] <= 1.0
  values = [v for v in res["per_class_iou"].values() if v is not None]
  assert 0.0 <= res["mIoU"] <= 1.0 and res["mIoU"] == pytest.approx(np.mean(values))
  assert res["bg_threshold"] == 0.95
  assert "protocol groupvit" in out and "monitor" in out and "mean" in out  # per-class table
  assert "15/15" in err  # progress bar


def test_evaluate_refuses_bad_requests(tiny_checkpoint, voc_root, tmp_path, capsys):
  rc, _, err = _run(capsys, "evaluate", "--checkpoint", tiny_checkpoint, "--dataset", "ade20k",
                    "--data-root", voc_root, "--output", tmp_path / "r.json", "--protocol",
                    "groupvit")
  assert rc == 2 and "does not cover dataset 'ade20k'" in err and "Traceback" not in err
  rc, _, err = _run(capsys, "evaluate", "--checkpoint", tiny_checkpoint, "--dataset", "context",
                    "--data-root", tmp_path, "--output", tmp_path / "r.json")
  assert rc == 2 and "VOC2010/SegmentationClassContext" in err and "Traceback" not in err


def _odd_images(d):
  """Grayscale, RGBA, CMYK, 16-bit, EXIF-rotated, tiny and large files; all but the last two
  display as 40 wide x 60 high."""
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (60, 40, 3), dtype=np.uint8)
  paths = {}
  Image.fromarray(rgb[..., 0], "L").save(paths.setdefault("gray", d / "gray.png"))
  Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA").save(paths.setdefault("rgba", d / "rgba.png"))
  Image.fromarray(rgb).convert("CMYK").save(paths.setdefault("cmyk", d / "cmyk.jpg"))
  Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(paths.setdefault("deep", d / "deep.png"))
  exif = Image.Exif()
  exif[0x0112] = 6  # stored 60 wide x 40 high, displayed rotated by 90 degrees
  Image.fromarray(rgb.transpose(1, 0, 2).copy()).save(paths.setdefault("exif", d / "exif.jpg"),
                                                      exif=exif)
  Image.fromarray(rgb[:5, :4]).save(paths.setdefault("tiny", d / "tiny.png"))
  big = np.kron(rgb, np.ones((40, 40, 1), np.uint8))  # 2400 x 1600
  Image.fromarray(big).save(paths.setdefault("large", d / "large.jpg"))
  return paths


def test_segment_writes_masks_overlays_and_groups(tiny_checkpoint, voc_root, tmp_path, capsys):
  paths = _odd_images(tmp_path)
  voc = voc_root / "VOC2012" / "JPEGImages" / "2007_000033.jpg"
  out = tmp_path / "out"
  rc, stdout, err = _run(capsys, "segment", "--checkpoint", tiny_checkpoint, "--image", voc,
                         *paths.values(), "--classes", "aeroplane, sky,grass", "--bg-threshold",
                         "0.5", "--output", out)
  assert rc == 0, err
  sizes = {name: (40, 60) for name in paths}  # PIL sizes are (width, height)
  sizes.update(tiny=(4, 5), large=(1600, 2400), **{"2007_000033": (513, 513)})
  for stem, size in sizes.items():
    mask = Image.open(out / f"{stem}_mask.png")
    assert mask.mode == "P" and mask.size == size, stem
    assert set(np.unique(np.asarray(mask))) <= {0, 1, 2, 3}
    overlay = Image.open(out / f"{stem}_overlay.png")
    assert overlay.size[0] > size[0] and overlay.size[1] >= size[1]  # legend on the right
    assert Image.open(out / f"{stem}_groups.png").size[0] > 3 * 400  # input + 2 stages
  assert stdout.count("_{mask,overlay,groups}.png") == 8


@pytest.mark.parametrize("make, expect", [
    (lambda d: (d / "trunc.jpg").write_bytes(_jpeg_bytes()[:400]), "trunc.jpg"),
    (lambda d: (d / "text.png").write_text("not an image"), "text.png"),
    (lambda d: None, "missing.jpg"),
])
def test_segment_bad_file_is_named_without_traceback(tmp_path, capsys, make, expect, tiny_checkpoint):
  make(tmp_path)
  rc, _, err = _run(capsys, "segment", "--checkpoint", tiny_checkpoint, "--image",
                    tmp_path / expect, "--classes", "cat", "--output", tmp_path / "o")
  assert rc == 2 and expect in err and "Traceback" not in err
  assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("names, expect", [("cat,,dog", "must not be empty"),
                                           ("cat,dog,Cat", "duplicate class names"),
                                           (" , ", "must not be empty"),
                                           ("cat,background", "'background' is not a class")])
def test_segment_refuses_bad_class_names(tmp_path, capsys, names, expect, voc_root, tiny_checkpoint):
  img = voc_root / "VOC2012" / "JPEGImages" / "2007_000033.jpg"
  rc, _, err = _run(capsys, "segment", "--checkpoint", tiny_checkpoint, "--image", img,
                    "--classes", names, "--output", tmp_path / "o")
  assert rc == 2 and expect in err and "Traceback" not in err


def _jpeg_bytes():
  import io  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
      buf, "JPEG")
  return buf.getvalue()


def test_segment_refuses_clashing_outputs_and_impossible_shapes(tmp_path, capsys, tiny_checkpoint):
  for sub in ("a", "b"):
    os.makedirs(tmp_path / sub)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / sub / "x.png")
  rc, _, err = _run(capsys, "segment", "--checkpoint", tiny_checkpoint, "--image",
                    tmp_path / "a/x.png", tmp_path / "b/x.png", "--classes", "cat", "--output",
                    tmp_path / "o")
  assert rc == 2 and "x_mask.png" in err and "Traceback" not in err
  Image.fromarray(np.zeros((4, 3000, 3), np.uint8)).save(tmp_path / "thin.png")
  rc, _, err = _run(capsys, "segment", "--checkpoint", tiny_checkpoint, "--image",
                    tmp_path / "thin.png", "--classes", "cat", "--output", tmp_path / "o")
  assert rc == 2 and "thin.png" in err and "too elongated" in err and "Traceback" not in err
