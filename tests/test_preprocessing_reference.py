"""Classification and segmentation preprocessing against an independent statement of the
reference transforms (spec 4 and 5.2), on several image sizes and random content (so a different
interpolation kernel or an off-by-one crop shows in many pixels).

ImageNet eval (torchvision): ``Resize(256)`` resizes the shorter side to 256 and the longer one
to ``int(256 * long / short)`` with PIL bilinear; ``CenterCrop(224)`` starts at
``int(round((side - 224) / 2))``; ``ToTensor`` divides by 255; ``Normalize`` with the ImageNet
mean and std written out below. Segmentation (mmseg): keep-ratio resize by
``f = min(2048 / long, 448 / short)`` to ``int(side * f + 0.5)`` with OpenCV INTER_LINEAR on uint8.
"""

import cv2
import numpy as np
import pytest
from PIL import Image

from groupvit_jax import preprocess_images
from groupvit_jax.segmentation import windows

MEAN = np.array([0.485, 0.456, 0.406])  # torchvision ImageNet statistics (spec 7.2.4)
STD = np.array([0.229, 0.224, 0.225])
SIZES = [(300, 600), (600, 300), (257, 999), (224, 224), (375, 500), (512, 256)]  # (h, w)


def _image(h, w, seed):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def reference_imagenet_eval(img: np.ndarray, resize: int = 256, crop: int = 224) -> np.ndarray:
  h, w = img.shape[:2]
  short, long = min(h, w), max(h, w)
  new_long = int(resize * long / short)
  nh, nw = (resize, new_long) if h <= w else (new_long, resize)
  x = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BILINEAR), np.float64)
  top, left = int(round((nh - crop) / 2.0)), int(round((nw - crop) / 2.0))
  x = x[top:top + crop, left:left + crop] / 255.0
  return (x - MEAN) / STD


@pytest.mark.parametrize("hw", SIZES)
def test_imagenet_eval_transform(hw):
  img = _image(*hw, seed=sum(hw))
  got = preprocess_images(img, image_size=224, resize=256)[0]
  want = reference_imagenet_eval(img)
  assert got.shape == want.shape == (224, 224, 3)
  # float32 normalisation of the same uint8 pixels: 1 ulp-level differences only.
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_imagenet_eval_at_448_with_resize_512():
  img = _image(480, 640, seed=3)
  np.testing.assert_allclose(preprocess_images(img, image_size=448, resize=512)[0],
                             reference_imagenet_eval(img, 512, 448), atol=1e-5)


@pytest.mark.parametrize("hw", [(375, 500), (500, 375), (513, 513), (48, 600), (9, 7), (2000, 300)])
def test_segmentation_keep_ratio_resize(hw):
  h, w = hw
  f = min(2048 / max(h, w), 448 / min(h, w))
  want_hw = (int(h * f + 0.5), int(w * f + 0.5))
  assert windows.rescale_size(h, w) == want_hw
  img = _image(h, w, seed=h + w)
  np.testing.assert_array_equal(
      windows.resize_image(img, want_hw),
      cv2.resize(img, (want_hw[1], want_hw[0]), interpolation=cv2.INTER_LINEAR))
