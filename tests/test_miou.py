"""mmseg's dataset-level mIoU (spec 5.5) on hand-computed cases."""

import numpy as np
import pytest

from groupvit_jax.segmentation.miou import ConfusionMatrix, per_class_table


def test_hand_computed_case_with_ignore():
  gt = np.array([[0, 0, 1], [1, 2, 255]])
  pred = np.array([[0, 1, 1], [1, 0, 2]])  # the 2 under the ignore pixel must not count
  cm = ConfusionMatrix(3)
  cm.update(pred, gt)
  m = cm.metrics()
  # class 0: I=1, U=2+2-1=3; class 1: I=2, U=2+3-2=3; class 2: I=0, U=1+0-0=1
  np.testing.assert_allclose(m["iou"], [1 / 3, 2 / 3, 0.0])
  np.testing.assert_allclose(m["acc"], [1 / 2, 1.0, 0.0])
  assert m["mIoU"] == pytest.approx(1 / 3)
  assert m["mAcc"] == pytest.approx(0.5)
  assert m["aAcc"] == pytest.approx(3 / 5)


def test_absent_classes_are_left_out_of_the_mean_but_false_positives_count():
  gt = np.array([[0, 0], [1, 1]])
  pred = np.array([[0, 2], [1, 1]])  # class 2 predicted but absent; class 3 absent everywhere
  cm = ConfusionMatrix(4)
  cm.update(pred, gt)
  iou = cm.metrics()["iou"]
  np.testing.assert_allclose(iou[:3], [1 / 2, 1.0, 0.0])
  assert np.isnan(iou[3])
  assert cm.metrics()["mIoU"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_accumulates_over_the_dataset_not_per_image():
  cm = ConfusionMatrix(2)
  cm.update(np.zeros((10, 10), int), np.zeros((10, 10), int))  # 100 px of class 0, all right
  gt = np.array([[1, 1]])
  cm.update(np.array([[0, 1]]), gt)  # one class-1 pixel predicted as 0
  iou = cm.metrics()["iou"]
  # class 0: I=100, U=100+101-100=101; class 1: I=1, U=2+1-1=2
  np.testing.assert_allclose(iou, [100 / 101, 1 / 2])
  assert cm.num_images == 2


def test_merge_equals_one_matrix():
  rng = np.random.default_rng(0)
  a, b, both = ConfusionMatrix(5), ConfusionMatrix(5), ConfusionMatrix(5)
  for target in (a, b):
    gt = rng.integers(0, 5, (7, 9))
    gt[0, :3] = 255
    pred = rng.integers(0, 5, (7, 9))
    target.update(pred, gt)
    both.update(pred, gt)
  a.merge(b)
  np.testing.assert_array_equal(a.matrix, both.matrix)


def test_bad_input_is_named():
  cm = ConfusionMatrix(3)
  with pytest.raises(ValueError, match="differ in shape.*img7"):
    cm.update(np.zeros((2, 2), int), np.zeros((2, 3), int), name="img7")
  with pytest.raises(ValueError, match=r"values \[7\] outside 0..2.*lab.png"):
    cm.update(np.zeros((2, 2), int), np.array([[0, 7], [255, 1]]), name="lab.png")


def test_table_lists_every_class():
  cm = ConfusionMatrix(3)
  cm.update(np.array([[0, 1]]), np.array([[0, 1]]))
  text = per_class_table(["background", "cat", "dog"], cm.metrics(), "voc, protocol groupvit")
  assert "protocol groupvit" in text
  assert "cat" in text and "100.00" in text and "nan" in text  # dog is absent
