"""Benchmark readers: the shared VOC sample, generated official layouts of the other datasets
(label conversions checked value by value), layout errors, and the tfds builders."""

import os

import numpy as np
import pytest
from PIL import Image

from groupvit_jax.segmentation.datasets import DATASETS, DatasetLayoutError, classes, open_dataset
from groupvit_jax.image_io import ImageReadError


def _write(path, array, mode=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.asarray(array, np.uint8), mode).save(path)


def _image(h=4, w=6):
  return np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)


RAW = np.array([[0, 11, 12, 89, 90, 91], [181, 255, 1, 2, 3, 4]], np.uint8)  # 2x6


def test_voc_sample(voc_root):
  ds = open_dataset("voc", voc_root)
  assert len(ds) == 15 and ds.has_background
  assert ds.classes == classes.VOC and ds.classes[11] == "table" and ds.classes[20] == "monitor"
  assert ds.prompt_classes == classes.VOC[1:]
  ex = ds[0]
  assert ex.key == "2007_000033" and ex.image.shape == (513, 513, 3) and ex.label.shape == (513, 513)
  assert set(np.unique(ex.label)) <= set(range(21)) | {255}
  voc20 = open_dataset("voc20", voc_root)
  assert not voc20.has_background and voc20.prompt_classes == classes.VOC[1:]
  lab20 = voc20[0].label
  np.testing.assert_array_equal(lab20[ex.label == 0], 255)  # background ignored
  np.testing.assert_array_equal(lab20[ex.label == 1], 0)  # aeroplane -> 0
  np.testing.assert_array_equal(lab20[ex.label == 255], 255)


def test_class_lists_match_the_spec():
  assert len(classes.CONTEXT) == 60 and classes.CONTEXT[1] == "airplane"
  assert classes.CONTEXT[40] == "plant" and classes.CONTEXT[55] == "monitor"
  assert len(classes.COCO_OBJECT) == 81 and classes.COCO_OBJECT[:3] == ("background", "person", "bicycle")
  assert len(classes.COCO_STUFF) == 171 and classes.COCO_STUFF[80] == "banner"
  assert len(classes.CITYSCAPES) == 19 and len(classes.ADE20K) == 150 and classes.ADE20K[7] == "bed"
  for entry in DATASETS.values():
    assert len(set(entry.classes)) == len(entry.classes)


def test_context_layout(tmp_path):
  base = tmp_path / "VOC2010"
  os.makedirs(base / "ImageSets/SegmentationContext")
  (base / "ImageSets/SegmentationContext/val.txt").write_text("2008_000001\n")
  _write(base / "JPEGImages/2008_000001.jpg", _image(2, 6))
  _write(base / "SegmentationClassContext/2008_000001.png", [[0, 1, 59, 0, 2, 3]] * 2)
  ctx = open_dataset("context", tmp_path)[0].label
  np.testing.assert_array_equal(ctx[0], [0, 1, 59, 0, 2, 3])
  ctx59 = open_dataset("context59", tmp_path)[0].label
  np.testing.assert_array_equal(ctx59[0], [255, 0, 58, 255, 1, 2])


@pytest.mark.parametrize("converted", [False, True])
def test_coco_object_and_stuff_from_cocostuff164k(tmp_path, converted):
  _write(tmp_path / "images/val2017/000000000139.jpg", _image(2, 6))
  _write(tmp_path / "annotations/val2017/000000000139.png", RAW)
  if converted:  # the official converters' outputs win over the raw maps
    _write(tmp_path / "annotations/val2017/000000000139_instanceTrainIds.png", np.full((2, 6), 7))
    _write(tmp_path / "annotations/val2017/000000000139_labelTrainIds.png", np.full((2, 6), 9))
  obj = open_dataset("coco_object", tmp_path)[0].label
  stuff = open_dataset("coco_stuff", tmp_path)[0].label
  if converted:
    assert (obj == 7).all() and (stuff == 9).all()
    return
  # convert_coco_object.py: things 0..90 -> 1..80 (gaps unused), stuff and 255 -> 0.
  np.testing.assert_array_equal(obj, [[1, 0, 12, 80, 0, 0], [0, 0, 2, 3, 4, 5]])
  # mmseg coco_stuff164k: the 171 used ids -> 0..170, the rest -> 255.
  np.testing.assert_array_equal(stuff, [[0, 255, 11, 79, 255, 80], [170, 255, 1, 2, 3, 4]])
  assert classes.COCO_OBJECT[12] == "stop sign" and classes.COCO_STUFF[170] == "wood"


def test_cityscapes_layout(tmp_path):
  img = "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"
  _write(tmp_path / img, _image(1, 5))
  _write(tmp_path / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png",
         [[7, 26, 0, 33, 24]])
  ds = open_dataset("cityscapes", tmp_path)
  assert ds[0].key == "frankfurt/frankfurt_000000_000294"
  np.testing.assert_array_equal(ds[0].label, [[0, 13, 255, 18, 11]])


def test_ade20k_layout(tmp_path):
  base = tmp_path / "ADEChallengeData2016"
  _write(base / "images/validation/ADE_val_00000001.jpg", _image(1, 4))
  _write(base / "annotations/validation/ADE_val_00000001.png", [[0, 1, 150, 8]])
  np.testing.assert_array_equal(open_dataset("ade20k", tmp_path)[0].label, [[255, 0, 149, 7]])
  np.testing.assert_array_equal(open_dataset("ade20k", base)[0].label, [[255, 0, 149, 7]])


def test_wrong_layout_lists_expected_paths(tmp_path):
  with pytest.raises(DatasetLayoutError) as e:
    open_dataset("voc", tmp_path)
  msg = str(e.value)
  for part in ("VOC2012/ImageSets/Segmentation/val.txt", "VOC2012/JPEGImages",
               "VOC2012/SegmentationClass", "VOCdevkit/VOC2012"):
    assert part in msg
  with pytest.raises(DatasetLayoutError, match="leftImg8bit/val"):
    open_dataset("cityscapes", tmp_path)


def test_missing_and_mismatched_files_are_named(tmp_path):
  base = tmp_path / "VOC2012"
  os.makedirs(base / "ImageSets/Segmentation")
  (base / "ImageSets/Segmentation/val.txt").write_text("a\nb\n")
  _write(base / "JPEGImages/a.jpg", _image(4, 6))
  _write(base / "SegmentationClass/a.png", np.zeros((6, 4)))
  with pytest.raises(DatasetLayoutError, match=r"(?s)incomplete.*1 file\(s\).*b\.jpg"):
    open_dataset("voc", tmp_path)
  (base / "ImageSets/Segmentation/val.txt").write_text("a\n")
  with pytest.raises(ImageReadError, match=r"a\.png: label is 4x6 but its image .*a\.jpg is 6x4"):
    open_dataset("voc", tmp_path)[0]


def test_tfds_builder_matches_reader(voc_root, tmp_path):
  # Skip only when the tf extra is absent; an import error inside our module must fail.
  pytest.importorskip("tensorflow", reason="the tfds builders need the tf extra")
  pytest.importorskip("tensorflow_datasets", reason="the tfds builders need the tf extra")
  from groupvit_jax.segmentation.datasets import tfds_builders  # pylint: disable=g-import-not-at-top
  builder = tfds_builders.builder("voc", tmp_path / "tfds")
  builder.download_and_prepare(download_config=tfds_builders.manual(voc_root))
  assert builder.info.metadata["classes"] == list(classes.VOC)
  source = builder.as_data_source(split="validation")
  want = {ex.key: ex for ex in open_dataset("voc", voc_root)}
  assert len(source) == len(want)
  for ex in source:
    ref = want[ex["file_name"].decode()]
    np.testing.assert_array_equal(ex["image"], ref.image)
    np.testing.assert_array_equal(ex["segmentation"][..., 0], ref.label)
  # Every fixed-class benchmark has a builder; the generic folder layout has no class list.
  assert set(tfds_builders.BUILDERS) == {d for d, e in DATASETS.items() if e.classes}
  assert "folder" not in tfds_builders.BUILDERS
