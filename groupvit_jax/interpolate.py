"""PyTorch ``F.interpolate`` semantics as per-axis interpolation matrices.

``jax.image.resize`` differs from PyTorch: its cubic kernel uses A=-0.5 with renormalised borders
and it antialiases when downsampling (spec section 8). GroupViT's weights were made with PyTorch
bicubic (A=-0.75, clamped taps) for position embeddings and bilinear ``align_corners=False``
without antialias for attention maps, so we build those operators explicitly. The matrices depend
only on static sizes; they are built in numpy at trace time and applied with one einsum per axis.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

_CUBIC_A = -0.75


def _cubic1(x):  # |x| <= 1
  a = _CUBIC_A
  return ((a + 2) * x - (a + 3)) * x * x + 1


def _cubic2(x):  # 1 < |x| < 2
  a = _CUBIC_A
  return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a


def source_coords(in_size: int, out_size: int) -> np.ndarray:
  """Source coordinates as PyTorch's CPU kernels compute them: ``scale`` in float32, then
  ``scale * (d + 0.5) - 0.5`` rounded once to float32 (a fused multiply-add). Plain float64 or
  twice-rounded float32 coordinates move 600-px resizes by up to 1e-4."""
  scale = np.float32(in_size) / np.float32(out_size)
  d = np.arange(out_size, dtype=np.float64)
  return (np.float64(scale) * (d + 0.5) - 0.5).astype(np.float32)


@functools.lru_cache(maxsize=256)
def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
  """``[out, in]`` float64 matrix of PyTorch ``mode='bicubic', align_corners=False``."""
  w = np.zeros((out_size, in_size), np.float64)
  if in_size == out_size:
    return np.eye(in_size)
  for d, s in enumerate(source_coords(in_size, out_size)):  # not clamped for cubic
    s = float(s)
    i0 = int(np.floor(s))
    t = s - i0
    coeffs = (_cubic2(t + 1.0), _cubic1(t), _cubic1(1.0 - t), _cubic2(2.0 - t))
    for k, c in zip(range(i0 - 1, i0 + 3), coeffs):
      w[d, min(max(k, 0), in_size - 1)] += c
  return w


@functools.lru_cache(maxsize=256)
def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """``[out, in]`` float64 matrix of PyTorch ``mode='bilinear', align_corners=False`` (no antialias)."""
  w = np.zeros((out_size, in_size), np.float64)
  if in_size == out_size:
    return np.eye(in_size)
  for d, s in enumerate(source_coords(in_size, out_size)):
    s = max(float(s), 0.0)
    i0 = int(s)  # floor for s >= 0
    i1 = i0 + 1 if i0 < in_size - 1 else i0
    lam = s - i0
    w[d, i0] += 1.0 - lam
    w[d, i1] += lam
  return w


_MATRICES = {"bicubic": bicubic_matrix, "bilinear": bilinear_matrix}


def resize_hw(x: jnp.ndarray, out_hw: tuple[int, int], method: str, *, axes=(-3, -2)) -> jnp.ndarray:
  """Resizes the two spatial ``axes`` of ``x`` (default ``[..., H, W, C]``) like PyTorch.

  Args:
    x: array whose ``axes`` are (H, W).
    out_hw: output (H', W').
    method: 'bicubic' or 'bilinear'.
  Returns:
    ``x`` with H, W replaced by H', W', computed in float32 (or x's dtype if wider).
  """
  if method not in _MATRICES:
    raise ValueError(f"method must be one of {sorted(_MATRICES)}, got {method!r}")
  ah, aw = (a % x.ndim for a in axes)
  h, w = x.shape[ah], x.shape[aw]
  oh, ow = out_hw
  dtype = jnp.promote_types(x.dtype, jnp.float32)
  mh = jnp.asarray(_MATRICES[method](h, oh), dtype)
  mw = jnp.asarray(_MATRICES[method](w, ow), dtype)
  x = x.astype(dtype)
  x = jnp.moveaxis(jnp.tensordot(mh, x, axes=([1], [ah])), 0, ah)
  x = jnp.moveaxis(jnp.tensordot(mw, x, axes=([1], [aw])), 0, aw)
  return x


def resize_hw_numpy(x: np.ndarray, out_hw: tuple[int, int], method: str, *, axes=(-3, -2)) -> np.ndarray:
  """Numpy twin of ``resize_hw`` (float64), for host-side code and reference tests."""
  ah, aw = (a % x.ndim for a in axes)
  mh = _MATRICES[method](x.shape[ah], out_hw[0])
  mw = _MATRICES[method](x.shape[aw], out_hw[1])
  x = np.moveaxis(np.tensordot(mh, x.astype(np.float64), axes=([1], [ah])), 0, ah)
  return np.moveaxis(np.tensordot(mw, x, axes=([1], [aw])), 0, aw)
