"""Host-side geometry of the segmentation protocol (spec 5.2, 5.3) and the traceable stitching
against direct numpy statements."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seg_reference as ref
from groupvit_jax.segmentation import dense, stitch, windows
from groupvit_jax.segmentation.protocols import BENCHMARK8, GROUPVIT, get_protocol
from groupvit_jax.interpolate import bilinear_matrix


@pytest.mark.parametrize("hw, want", [
    ((375, 500), (448, 597)),  # spec 5.3 example: VOC 500x375 -> 597x448
    ((500, 375), (597, 448)),
    ((513, 513), (448, 448)),
    ((100, 1000), (205, 2048)),  # aspect > 4.57: the long side hits 2048
    ((7, 9), (448, 576)),  # tiny images are upscaled
    ((1024, 2048), (448, 896)),  # Cityscapes
])
def test_rescale_size(hw, want):
  assert windows.rescale_size(*hw) == want


def test_slide_windows_match_spec_example():
  # VOC 500x375 -> 597x448: two crops x in [0, 448) and [149, 597).
  np.testing.assert_array_equal(windows.slide_windows(448, 597, 448, 224),
                                [[0, 448, 0, 448], [0, 448, 149, 597]])


@pytest.mark.parametrize("h, w", [(448, 448), (448, 673), (1000, 448), (205, 2048), (900, 900),
                                  (40, 50)])
def test_slide_windows_cover_and_snap(h, w):
  wins = windows.slide_windows(h, w, 448, 224)
  count = np.zeros((h, w), int)
  for y1, y2, x1, x2 in wins:
    assert (y2 - y1, x2 - x1) == (min(448, h), min(448, w))
    assert 0 <= y1 < y2 <= h and 0 <= x1 < x2 <= w
    count[y1:y2, x1:x2] += 1
  assert count.min() >= 1
  assert wins[:, 1].max() == h and wins[:, 3].max() == w  # last window snapped to the border
  assert len(wins) == windows.num_grids(h, 448, 224) * windows.num_grids(w, 448, 224)
  gh, gw = windows.num_grids(h, 448, 224), windows.num_grids(w, 448, 224)
  assert windows.canvas_size(gh, min(448, h), 224) >= h
  assert windows.canvas_size(gw, min(448, w), 224) >= w


@pytest.mark.parametrize("n_in, n_out", [(448, 375), (597, 500), (28, 448), (5, 5), (1, 7),
                                         (2048, 4000)])
def test_bilinear_taps_equal_the_interpolation_matrix(n_in, n_out):
  idx, wts = windows.bilinear_taps(n_in, n_out)
  dense_m = np.zeros((n_out, n_in))
  np.add.at(dense_m, (np.arange(n_out)[:, None], idx), wts)
  np.testing.assert_allclose(dense_m, bilinear_matrix(n_in, n_out), atol=1e-6)


def test_size_bucket_ladder():
  assert [windows.size_bucket(n) for n in (1, 64, 65, 96, 97, 375, 500, 513, 2048, 2049)] == \
      [64, 64, 96, 96, 128, 384, 512, 768, 2048, 3072]


def test_resize_image_is_opencv_linear_on_uint8():
  img = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
  out = windows.resize_image(img, (448, 597))
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, cv2.resize(img, (597, 448), interpolation=cv2.INTER_LINEAR))


def test_official_grid_heuristic_equals_patch_grid_for_protocol_sizes():
  sizes = [(h, 448) for h in range(16, 449)] + [(448, h) for h in range(16, 449)]
  sizes += [(448, w) for w in range(448, 2049, 7)] + [(h, 2048) for h in range(16, 449, 5)]
  for h, w in sizes:
    tokens = (h // 16) * (w // 16)
    assert ref.official_grid(h, w, tokens) == dense.attention_grid(h, w, tokens, 16), (h, w)


def test_average_windows_and_resize_argmax_match_numpy():
  rng = np.random.default_rng(0)
  h, w, k, g, c = 12, 12, 4, 4, 5
  offsets = np.array([[0, 0], [0, 9], [4, 0], [4, 9]], np.int32)  # a 2x2 grid on 16x21
  index = rng.integers(0, g, (k, h, w)).astype(np.int32)
  table = rng.random((k, g, c)).astype(np.float32)
  canvas_hw = (20, 24)  # padded
  got = np.asarray(stitch.average_windows(jnp.asarray(index), jnp.asarray(table),
                                          jnp.asarray(offsets), canvas_hw))
  want = np.zeros((16, 21, c))
  count = np.zeros((16, 21))
  for (y, x), ix, tb in zip(offsets, index, table):
    want[y:y + h, x:x + w] += tb[ix]
    count[y:y + h, x:x + w] += 1
  want /= count[..., None]
  np.testing.assert_allclose(got[:16, :21], want, rtol=1e-6)
  assert np.all(got[16:] == 0) and np.all(got[:, 21:] == 0)
  ho, wo = 32, 32  # bucket for a 30x25 output
  ri, rw = windows.padded_taps(16, 30, ho)
  ci, cw = windows.padded_taps(21, 25, wo)
  labels = np.asarray(stitch.resize_argmax(jnp.asarray(got), ri, rw, ci, cw))
  want_labels = ref.torch_bilinear(want.transpose(2, 0, 1), 30, 25).argmax(0)
  np.testing.assert_array_equal(labels[:30, :25], want_labels)


def test_protocols():
  assert GROUPVIT.settings("voc").bg_threshold == 0.95
  assert GROUPVIT.settings("context").bg_threshold == 0.35
  assert GROUPVIT.settings("coco_object").bg_threshold == 0.95
  assert (GROUPVIT.img_scale, GROUPVIT.crop, GROUPVIT.stride, GROUPVIT.mode) == \
      ((2048, 448), 448, 224, "slide")
  assert BENCHMARK8.dataset_names() == ["voc", "voc20", "context", "context59", "coco_object",
                                        "coco_stuff", "cityscapes", "ade20k"]
  assert [BENCHMARK8.settings(d).with_bg for d in BENCHMARK8.dataset_names()] == \
      [True, False, True, False, True, False, False, False]
  assert (BENCHMARK8.img_scale, BENCHMARK8.crop, BENCHMARK8.stride) == ((2048, 448), 448, 224)
  assert get_protocol("groupvit").to_config().datasets.context.bg_threshold == 0.35
  with pytest.raises(ValueError, match="does not cover dataset 'ade20k'"):
    GROUPVIT.settings("ade20k")
  with pytest.raises(ValueError, match="unknown protocol"):
    get_protocol("nope")


def test_active_channels_keep_the_argmax_exact():
  rng = np.random.default_rng(3)
  b, k, g, c, top = 3, 2, 4, 30, 5
  table = np.zeros((b, k, g, c), np.float32)
  for i in range(b):
    for j in range(k):
      cols = rng.choice(c, top, replace=False)
      table[i, j][:, cols] = rng.random((g, top)).astype(np.float32)
  table[0, :, 0] = 0.0  # a group whose pixels are all-zero (ties everywhere -> channel 0)
  table[1, 0, 1, 7] = table[1, 0, 1].max() + 1.0  # a clear winner
  table[1, 0, 1, 9] = table[1, 0, 1, 7]  # and an exact tie with a later channel
  channels, compact = stitch.active_channels(jnp.asarray(table), num_active=k * top + 1)
  channels, compact = np.asarray(channels), np.asarray(compact)
  assert compact.shape == (b, k, g, k * top + 1)
  index = rng.integers(0, g, (b, k, 6, 6)).astype(np.int32)
  index[1, 0, 0, 0] = 1
  offsets = jnp.asarray([[0, 0], [0, 3]], jnp.int32)
  ri, rw = windows.padded_taps(6, 11, 32)
  ci, cw = windows.padded_taps(9, 13, 32)
  for i in range(b):
    real = channels[i][channels[i] > 0]
    assert channels[i][0] == 0 and np.all(np.diff(real) > 0)  # 0 first, then ascending
    full = stitch.average_windows(jnp.asarray(index[i]), jnp.asarray(table[i]), offsets, (6, 9))
    want = np.asarray(stitch.resize_argmax(full, ri, rw, ci, cw))
    part = stitch.average_windows(jnp.asarray(index[i]), jnp.asarray(compact[i]), offsets, (6, 9))
    got = channels[i][np.asarray(stitch.resize_argmax(part, ri, rw, ci, cw))]
    np.testing.assert_array_equal(got[:11, :13], want[:11, :13])


def test_voc_sized_images_fall_into_few_buckets(tiny_model):
  from groupvit_jax.segmentation.segmenter import Segmenter  # pylint: disable=g-import-not-at-top
  seg = Segmenter(tiny_model, ["a", "b"], text_embeddings=np.eye(2, 16))
  buckets = set()
  for side in range(200, 501, 3):  # one side 500 (as in VOC), either orientation
    for hw in ((side, 500), (500, side)):
      buckets.add(seg.prepare(np.zeros(hw + (3,), np.uint8)).bucket)
  assert len(buckets) <= 11
  assert {b.window_hw for b in buckets} == {(448, 448)}


@pytest.mark.parametrize("n,k", [(3, 5), (5, 5), (20, 5), (459, 5)])
def test_top_k_mask_picks_what_lax_top_k_picks(n, k):
  """The top-5 class filter, written as ranks for the SavedModel export, keeps the same classes
  as ``lax.top_k``, ties (frequent here: scores drawn from 4 values) to the lower index."""
  scores = np.random.default_rng(n).integers(0, 4, (16, n)).astype(np.float32)
  _, top = jax.lax.top_k(scores, min(k, n))
  want = np.zeros((16, n), bool)
  np.put_along_axis(want, np.asarray(top), True, axis=1)
  np.testing.assert_array_equal(np.asarray(dense.top_k_mask(jnp.asarray(scores), min(k, n))), want)
