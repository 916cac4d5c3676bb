"""Reading images of every mode as RGB uint8, and the classification preprocessing."""

import numpy as np
import pytest
from PIL import Image

from groupvit_jax import preprocess_images
from groupvit_jax.image_io import ImageReadError, load_image
from groupvit_jax.preprocessing import IMAGENET_MEAN, IMAGENET_STD, normalize


def _save(tmp_path, name, img, **kw):
  path = tmp_path / name
  img.save(str(path), **kw)
  return path


def test_modes_become_rgb_uint8(tmp_path):
  rgb = np.random.RandomState(0).randint(0, 255, (20, 30, 3), np.uint8)
  cases = {
      "gray.png": Image.fromarray(rgb[..., 0]),
      "rgba.png": Image.fromarray(np.dstack([rgb, np.full((20, 30), 128, np.uint8)])),
      "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
      "palette.png": Image.fromarray(rgb).convert("P"),
      "gray16.png": Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)),
  }
  for name, img in cases.items():
    out = load_image(_save(tmp_path, name, img))
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3), name
  np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), rgb)  # alpha dropped
  np.testing.assert_array_equal(load_image(tmp_path / "gray16.png")[..., 0], rgb[..., 0])


def test_exif_orientation_is_applied(tmp_path):
  img = Image.fromarray(np.zeros((10, 40, 3), np.uint8))
  exif = Image.Exif()
  exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
  path = _save(tmp_path, "rot.jpg", img, exif=exif)
  assert load_image(path).shape == (40, 10, 3)


def test_unreadable_files_name_the_file(tmp_path):
  good = _save(tmp_path, "ok.jpg", Image.fromarray(np.zeros((64, 64, 3), np.uint8)))
  truncated = tmp_path / "truncated.jpg"
  truncated.write_bytes(good.read_bytes()[:200])
  (tmp_path / "text.png").write_text("not an image")
  for name in ("truncated.jpg", "text.png", "missing.jpg"):
    with pytest.raises(ImageReadError, match=name):
      load_image(tmp_path / name)


def test_preprocess_resize_crop_normalise():
  img = np.zeros((300, 600, 3), np.uint8)
  img[:, 200:400] = 255  # a white band exactly where the center crop lands
  x = preprocess_images(Image.fromarray(img), image_size=224, resize=256)
  assert x.shape == (1, 224, 224, 3) and x.dtype == np.float32
  white = (1.0 - IMAGENET_MEAN) / IMAGENET_STD
  np.testing.assert_allclose(x[0, 112, 112], white, atol=1e-5)
  np.testing.assert_allclose(normalize(np.zeros((1, 1, 3), np.uint8))[0, 0],
                             -IMAGENET_MEAN / IMAGENET_STD, atol=1e-6)
  with pytest.raises(ValueError, match="uint8"):
    preprocess_images(np.zeros((4, 4), np.float32))
