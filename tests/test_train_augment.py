"""Training augmentation (spec 4, timm 0.4.12 semantics) and multi-label prompts (spec 3.3)."""

import math

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from groupvit_jax.class_embeddings import FULL_TEMPLATES
from groupvit_jax.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from input_pipeline import augment, multilabel_prompts as prompts, rand_augment


def image(seed=0, size=(57, 43)):
  return Image.fromarray(np.random.default_rng(seed).integers(0, 255, size[::-1] + (3,), np.uint8))


class FixedRng:
  """A generator whose ``random()`` returns preset values (to pin the sign of an op)."""

  def __init__(self, values):
    self.values = list(values)

  def random(self):
    return self.values.pop(0)


@pytest.mark.parametrize("name,magnitude,expected", [
    ("Rotate", 9, (27.0,)), ("PosterizeIncreasing", 9, (1,)), ("SolarizeIncreasing", 9, (26,)),
    ("SolarizeAdd", 9, (99,)), ("ColorIncreasing", 9, (1.81,)), ("ContrastIncreasing", 5, (1.45,)),
    ("ShearX", 9, (0.27,)), ("TranslateYRel", 10, (0.45,)), ("Posterize", 10, (4,)),
    ("Brightness", 10, (1.9,)), ("Equalize", 9, ()),
])
def test_level_arguments_match_timm(name, magnitude, expected):
  got = rand_augment.level_args(name, magnitude, FixedRng([0.4]))  # 0.4 <= 0.5: keep the sign
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  if expected and name not in ("PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
                               "Posterize", "Brightness"):
    negated = rand_augment.level_args(name, magnitude, FixedRng([0.6]))[0]
    want = (2 - expected[0]) if name.endswith("Increasing") else -expected[0]
    assert negated == pytest.approx(want)


def test_ops_are_the_pil_operations():
  img = image()
  rng = lambda: FixedRng([0.4])  # noqa: E731
  fill = (124, 116, 104)
  cases = {
      "Rotate": img.rotate(27.0, resample=Image.BILINEAR, fillcolor=fill),
      "ShearX": img.transform(img.size, Image.AFFINE, (1, 0.27, 0, 0, 1, 0), Image.BILINEAR,
                              fillcolor=fill),
      "TranslateXRel": img.transform(img.size, Image.AFFINE, (1, 0, 0.405 * 57, 0, 1, 0),
                                     Image.BILINEAR, fillcolor=fill),
      "SolarizeIncreasing": ImageOps.solarize(img, 26),
      "PosterizeIncreasing": ImageOps.posterize(img, 1),
      "SharpnessIncreasing": ImageEnhance.Sharpness(img).enhance(1.81),
      "AutoContrast": ImageOps.autocontrast(img), "Invert": ImageOps.invert(img),
  }
  for name, want in cases.items():
    got = rand_augment.apply_op(img, name, 9.0, rng())
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=name)
  black = rand_augment.apply_op(img, "PosterizeIncreasing", 10.0, rng())  # 0 bits kept
  assert black.size == img.size and not np.asarray(black).any()
  lut = np.asarray(rand_augment.apply_op(img, "SolarizeAdd", 9.0, rng()), np.int32)
  x = np.asarray(img, np.int32)
  np.testing.assert_array_equal(lut, np.where(x < 128, np.minimum(x + 99, 255), x))


def test_randaugment_config_string():
  ra = rand_augment.RandAugment.from_string("rand-m9-mstd0.5-inc1")
  assert (ra.magnitude, ra.magnitude_std, ra.num_layers, ra.prob) == (9.0, 0.5, 2, 0.5)
  assert ra.names == rand_augment.INCREASING_TRANSFORMS and len(ra.names) == 15
  assert rand_augment.RandAugment.from_string("rand-m7-n3").names == rand_augment.TRANSFORMS
  with pytest.raises(ValueError, match="x5"):
    rand_augment.RandAugment.from_string("rand-m9-x5")
  img = image()
  a = ra(img, np.random.default_rng(5))
  b = ra(img, np.random.default_rng(5))
  assert a.size == img.size and np.array_equal(np.asarray(a), np.asarray(b))
  strong = rand_augment.RandAugment.from_string("rand-m10-n6-inc1")  # every op at the top level
  for seed in range(40):
    assert strong(img, np.random.default_rng(seed)).size == img.size


def test_random_resized_crop_params():
  rng = np.random.default_rng(0)
  for _ in range(300):
    top, left, h, w = augment.random_resized_crop_params(640, 480, rng)
    assert 0 <= top <= 480 - h and 0 <= left <= 640 - w
    assert 0.08 * 640 * 480 * 0.9 <= h * w <= 640 * 480 and 0.7 <= w / h <= 1.4
  # no admissible box in 10 tries (extreme aspect): central crop clamped to ratio 3/4..4/3
  assert augment.random_resized_crop_params(1000, 10, np.random.default_rng(0),
                                            scale=(0.99, 1.0)) == (0, 493, 10, 13)


def test_random_erasing():
  x = np.zeros((32, 32, 3), np.float32)
  hits = 0
  for seed in range(200):
    y = augment.random_erasing(x, np.random.default_rng(seed), prob=0.25)
    erased = np.any(y != 0, axis=-1)
    if erased.any():
      hits += 1
      rows, cols = np.where(erased)
      box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
      assert erased.sum() == box and 0.02 * 1024 * 0.8 <= box <= 1024 / 3 * 1.2  # one box
  assert 30 <= hits <= 70  # p = 0.25 of 200
  assert np.all(x == 0)  # the input is not modified


def test_train_transform_output():
  t = augment.TrainTransform(image_size=32)
  img = image(1, (80, 60))
  a = t(img, np.random.default_rng(0))
  assert a.shape == (32, 32, 3) and a.dtype == np.float32
  np.testing.assert_array_equal(a, t(img, np.random.default_rng(0)))
  plain = augment.TrainTransform(image_size=32, crop_scale=(1, 1), crop_ratio=(1, 1), hflip=0,
                                 randaugment="", random_erasing=0)
  sq = image(2, (64, 64))
  want = (np.asarray(sq.resize((32, 32), Image.BILINEAR)) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
  np.testing.assert_allclose(plain(sq, np.random.default_rng(0)), want, atol=1e-6)


CAPTION = "A man riding a horse on the beach at sunset, dogs running"


def test_prompt_words_keep_the_spec_tags():
  assert prompts.prompt_words(CAPTION) == ["man", "riding", "horse", "beach", "sunset", "dogs",
                                           "running"]
  tags = dict(prompts.pos_tag("Tokyo Olympics runners are running"))
  assert tags["Olympics"] == "NNPS" and "Olympics" not in prompts.prompt_words(
      "Tokyo Olympics runners are running")  # NNPS is not kept
  assert prompts.prompt_words("") == [] and prompts.prompt_words("the of and") == []


def spec_prompts(caption, words, k, rng):
  """Spec 3.3 restated: min(k, n) words without replacement, a random template of the 80 for
  each, padded with the caption; order caption, p1..pk."""
  out = [caption]
  if words:
    for i in rng.choice(len(words), min(k, len(words)), replace=False):
      out.append(FULL_TEMPLATES[rng.integers(len(FULL_TEMPLATES))].format(words[i]))
  return out + [caption] * (k + 1 - len(out))


@pytest.mark.parametrize("words", [["dog"], ["man", "horse", "beach", "sunset"], [], ["a", "a"]])
def test_make_prompts(words):
  got = prompts.make_prompts(CAPTION, words, 3, np.random.default_rng(7))
  assert got == spec_prompts(CAPTION, words, 3, np.random.default_rng(7))
  assert len(got) == 4 and got[0] == CAPTION
  used = [p for p in got[1:] if p != CAPTION]
  assert len(used) == min(3, len(words))
  assert all(any(p == t.format(w) for t in FULL_TEMPLATES for w in words) for p in used)
  if len(set(words)) == len(words) and len(words) >= 3:
    hits = [w for w in words if any(p == t.format(w) for p in used for t in FULL_TEMPLATES)]
    assert len(hits) == 3  # without replacement
  assert math.isclose(len(FULL_TEMPLATES), 80)
