"""ImageNet validation layouts: labels from class folders, flat folders with labels files and tfds;
wrong layouts stop with an error that shows what was expected."""

import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from groupvit_jax.classification import image_batches, imagenet_data
from groupvit_jax.classification.imagenet_classes import imagenet_synsets, synset_to_index
from groupvit_jax.image_io import ImageReadError, load_image
from imagenet_testdata import make_folders, write_image

DatasetLayoutError = imagenet_data.DatasetLayoutError


def _labels(data):
  return [(os.path.relpath(p, data.root), label) for p, label in data.items()]


def test_folders_layout_labels_and_order(tmp_path):
  make_folders(tmp_path, {999: 2, 0: 1, 65: 3}, ext=".JPEG")
  write_image(tmp_path / "n01751748" / "nested" / "deep.jpg")  # sub-folders are searched
  (tmp_path / "n01751748" / "readme.txt").write_text("x")
  (tmp_path / ".cache").mkdir()
  (tmp_path / "LOC_synset_mapping.txt").write_text("n01440764 tench")
  data = imagenet_data.open_imagenet(tmp_path)
  assert data.layout == "folders" and len(data) == 7 and data.num_classes_present == 3
  assert _labels(data) == [("n01440764/img0.JPEG", 0),
                           ("n01751748/img0.JPEG", 65), ("n01751748/img1.JPEG", 65),
                           ("n01751748/img2.JPEG", 65), ("n01751748/nested/deep.jpg", 65),
                           ("n15075141/img0.JPEG", 999), ("n15075141/img1.JPEG", 999)]
  assert data.notes == ["ignored 1 non-image file(s) inside class folders"]
  assert data.read(next(iter(data.items()))[0]).dtype == np.uint8


@pytest.mark.parametrize("make, message", [
    (lambda r: (r / "n01440764").mkdir() or (r / "cats").mkdir(), "not ImageNet WordNet ids"),
    (lambda r: make_folders(r / "val", {3: 1}) and (r / "train").mkdir(), "did you mean"),
    (lambda r: write_image(r / "ILSVRC2012_val_00000001.JPEG"), "needs --ground-truth"),
    (lambda r: (r / "ILSVRC2012_img_val.tar").write_bytes(b""), "--layout tfds"),
    (lambda r: (r / "n01440764").mkdir(), "no images in them"),
    (lambda r: None, "no ImageNet class folders"),
])
def test_wrong_folder_layouts_show_what_is_expected(tmp_path, make, message):
  make(tmp_path)
  with pytest.raises(DatasetLayoutError) as err:
    imagenet_data.open_imagenet(tmp_path)
  text = str(err.value)
  assert message in text and str(tmp_path) in text
  assert "ROOT/n01440764/*.JPEG" in text and "--ground-truth" in text and "Found " in text
  if message == "did you mean":
    assert os.path.join(str(tmp_path), "val") in text


def _flat(root, n=4):
  return [write_image(root / f"ILSVRC2012_val_{i:08d}.JPEG", seed=i) for i in range(1, n + 1)]


def test_flat_layout_two_columns(tmp_path):
  _flat(tmp_path)
  labels = tmp_path / "LOC_val_solution.csv"
  labels.write_text("ImageId,PredictionString\n"
                    "ILSVRC2012_val_00000003,n01751748 10 20 30 40 n01751748 1 2 3 4\n"
                    "# a comment\n\n"
                    "ILSVRC2012_val_00000001.JPEG 999\n"
                    "ILSVRC2012_val_00000002.JPEG,0\n")
  data = imagenet_data.open_imagenet(tmp_path, labels_file=labels)
  assert data.layout == "flat" and len(data) == 3 and data.num_classes_present == 3
  assert _labels(data) == [("ILSVRC2012_val_00000003.JPEG", 65),
                           ("ILSVRC2012_val_00000001.JPEG", 999),
                           ("ILSVRC2012_val_00000002.JPEG", 0)]
  assert data.notes == [f"1 image(s) in {tmp_path} are not in the labels file and were skipped"]


def test_flat_layout_one_synset_per_line_in_sorted_name_order(tmp_path):
  _flat(tmp_path, 3)
  labels = tmp_path / "validation_labels.txt"
  labels.write_text("n01751748\nn09193705\nn02105855\n")
  data = imagenet_data.open_imagenet(tmp_path, "flat", labels_file=labels)
  index = synset_to_index()
  assert [label for _, label in data.items()] == [index["n01751748"], index["n09193705"],
                                                  index["n02105855"]]
  assert [os.path.basename(p) for p, _ in data.items()] == sorted(os.listdir(tmp_path))[:3]


@pytest.mark.parametrize("text, message", [
    ("1\n2\n3\n4\n", "one integer per line is ambiguous"),
    ("n01751748\nn09193705\n", "2 labels for 4 images"),
    ("ILSVRC2012_val_00000001.JPEG n99999999\n", ":1: 'n99999999' is not one of the 1000"),
    ("ILSVRC2012_val_00000001.JPEG 0\nILSVRC2012_val_00000002.JPEG 1000\n",
     ":2: class index 1000 is outside 0-999"),
    ("ILSVRC2012_val_00000009.JPEG 3\n", "ILSVRC2012_val_00000009.JPEG: no such image"),
    ("ILSVRC2012_val_00000001.JPEG 3\nILSVRC2012_val_00000002.JPEG\n", ":2: expected 'FILE LABEL'"),
    ("ImageId,Label\nILSVRC2012_val_00000001.JPEG tench\n",
     ":2: label 'tench' is neither a WordNet"),
    ("# only a comment\n", "no labels in the file"),
    ("ILSVRC2012_val_00000001.JPEG 3\nILSVRC2012_val_00000001 4\n", "already labelled on line 1"),
])
def test_bad_labels_files_name_the_line(tmp_path, text, message):
  _flat(tmp_path)
  labels = tmp_path / "labels.txt"
  labels.write_text(text)
  with pytest.raises(DatasetLayoutError) as err:
    imagenet_data.open_imagenet(tmp_path, labels_file=labels)
  assert message in str(err.value)


def test_other_layout_errors(tmp_path):
  with pytest.raises(DatasetLayoutError, match="no such directory"):
    imagenet_data.open_imagenet(tmp_path / "missing")
  _flat(tmp_path)
  with pytest.raises(DatasetLayoutError, match="needs a labels file"):
    imagenet_data.open_imagenet(tmp_path, "flat")
  with pytest.raises(DatasetLayoutError, match="no such labels file"):
    imagenet_data.open_imagenet(tmp_path, labels_file=tmp_path / "nope.txt")
  with pytest.raises(ValueError, match="unknown layout"):
    imagenet_data.open_imagenet(tmp_path, "zip")


def test_unreadable_image_stops_with_its_name(tmp_path):
  good = write_image(tmp_path / "n01440764" / "a.png")
  bad = tmp_path / "n01440764" / "b.JPEG"
  bad.write_bytes(b"not a jpeg")
  batches = image_batches.iter_batches([(good, 0), (str(bad), 0)], load_image, batch_size=2,
                                       image_size=32)
  with pytest.raises(ImageReadError, match="b.JPEG"):
    list(batches)


def _jpeg(seed):
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(seed).integers(0, 256, (30, 40, 3), np.uint8)).save(
      buf, "JPEG")
  return buf.getvalue()


def test_tfds_imagenet2012_from_manual_dir(tmp_path):
  pytest.importorskip("tensorflow_datasets", reason="the tfds layout needs the tf extra")
  manual = tmp_path / "manual"
  manual.mkdir()
  with pytest.raises(DatasetLayoutError, match="ILSVRC2012_img_val.tar"):
    imagenet_data.open_imagenet(manual, "tfds", tfds_data_dir=str(tmp_path / "tfds"))
  jpegs = {f"ILSVRC2012_val_{i:08d}.JPEG": _jpeg(i) for i in (1, 2, 3)}
  with tarfile.open(manual / "ILSVRC2012_img_val.tar", "w") as tar:
    for name, data in jpegs.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  data = imagenet_data.open_imagenet(manual, "tfds", tfds_data_dir=str(tmp_path / "tfds"))
  assert data.layout == "tfds" and len(data) == 3
  got = {source[1]: (source, label) for source, label in data.items()}
  # tfds' own validation labels are n01751748, n09193705, n02105855 for images 1-3.
  index = synset_to_index()
  assert {name: label for name, (_, label) in got.items()} == {
      "ILSVRC2012_val_00000001.JPEG": index["n01751748"],
      "ILSVRC2012_val_00000002.JPEG": index["n09193705"],
      "ILSVRC2012_val_00000003.JPEG": index["n02105855"]}
  assert imagenet_synsets()[65] == "n01751748"
  for name, (source, _) in got.items():  # the stored JPEG bytes, decoded like a file
    np.testing.assert_array_equal(data.read(source),
                                  np.asarray(Image.open(io.BytesIO(jpegs[name])).convert("RGB")))
  # Prepared once: the tar is no longer needed.
  os.remove(manual / "ILSVRC2012_img_val.tar")
  again = imagenet_data.open_imagenet(manual, "tfds", tfds_data_dir=str(tmp_path / "tfds"))
  assert len(again) == 3
