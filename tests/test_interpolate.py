"""PyTorch-semantics interpolation matrices against torch.nn.functional.interpolate."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from groupvit_jax import interpolate


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
@pytest.mark.parametrize("src,dst", [((14, 14), (28, 28)), ((14, 14), (28, 37)), ((28, 37), (448, 597)),
                                     ((448, 597), (375, 500)), ((7, 5), (3, 2)), ((14, 14), (14, 14))])
def test_matches_torch(mode, src, dst):
  rng = np.random.RandomState(0)
  x = rng.randn(1, src[0], src[1], 3).astype(np.float32)
  want = F.interpolate(torch.tensor(x).permute(0, 3, 1, 2), size=dst, mode=mode,
                       align_corners=False).permute(0, 2, 3, 1).numpy()
  got_jax = np.asarray(interpolate.resize_hw(x, dst, mode))
  got_np = interpolate.resize_hw_numpy(x, dst, mode)
  assert got_jax.shape == want.shape
  np.testing.assert_allclose(got_jax, want, atol=2e-5)
  np.testing.assert_allclose(got_np, want, atol=2e-5)


def test_bicubic_differs_from_jax_image_resize():
  """The reason this module exists: jax.image.resize('cubic') is a different kernel."""
  import jax
  x = np.random.RandomState(1).randn(1, 14, 14, 4).astype(np.float32)
  ours = np.asarray(interpolate.resize_hw(x, (28, 28), "bicubic"))
  theirs = np.asarray(jax.image.resize(x, (1, 28, 28, 4), "cubic"))
  assert np.abs(ours - theirs).max() > 0.01


def test_channels_first_axes():
  x = np.random.RandomState(2).randn(2, 5, 9, 11).astype(np.float32)  # [B, G, H, W]
  want = F.interpolate(torch.tensor(x), size=(20, 30), mode="bilinear", align_corners=False).numpy()
  got = np.asarray(interpolate.resize_hw(x, (20, 30), "bilinear", axes=(-2, -1)))
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_unknown_method():
  with pytest.raises(ValueError, match="bicubic"):
    interpolate.resize_hw(np.zeros((1, 2, 2, 1)), (3, 3), "nearest")
