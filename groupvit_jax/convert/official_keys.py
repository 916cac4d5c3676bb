"""Our parameter paths <-> the official GroupViT state-dict keys (spec 6.2, official column).

Module attribute names already follow the official code, so the map is a short rule table on the
leaf name plus a layout transform: ``a/b/kernel`` <-> ``a.b.weight`` (transposed), LayerNorm and
BatchNorm ``scale`` <-> ``weight``, BatchNorm ``mean``/``var`` <-> ``running_mean``/``running_var``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import numpy as np

from groupvit_jax.interpolate import resize_hw_numpy

# Layout transforms: ours -> official, official -> ours.
_T = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]
IDENTITY: _T = (lambda a: a, lambda a: a)
LINEAR: _T = (lambda a: a.T, lambda a: a.T)  # [in, out] <-> torch [out, in]
CONV2D: _T = (lambda a: a.transpose(3, 2, 0, 1), lambda a: a.transpose(2, 3, 1, 0))  # HWIO <-> OIHW
CONV1D: _T = (lambda a: a.T[..., None], lambda a: a[..., 0].T)  # [in, out] <-> [out, in, 1]

# (regex on our '/'-joined path, official key template with '/' separators, transform).
RULES: list[tuple[str, str, _T]] = [
    (r"^(.*)/patch_embed/proj/kernel$", r"\1/patch_embed/proj/weight", CONV2D),
    (r"^(.*_projector)/(linear_hidden/\d+|linear_out)/kernel$", r"\1/\2/weight", CONV1D),
    (r"^(.*)/attn/in_proj/kernel$", r"\1/attn/in_proj_weight", LINEAR),
    (r"^(.*)/attn/in_proj/bias$", r"\1/attn/in_proj_bias", IDENTITY),
    (r"^(.*)/token_embedding/embedding$", r"\1/token_embedding/weight", IDENTITY),
    (r"^(.*)/kernel$", r"\1/weight", LINEAR),
    (r"^(.*)/scale$", r"\1/weight", IDENTITY),
    (r"^(.*)/mean$", r"\1/running_mean", IDENTITY),
    (r"^(.*)/var$", r"\1/running_var", IDENTITY),
    (r"^(.*)$", r"\1", IDENTITY),  # biases, pos_embed, group_token, positional_embedding, scales
]
_COMPILED = [(re.compile(p), t, f) for p, t, f in RULES]

# Official keys that carry no weights we use.
IGNORED_OFFICIAL = re.compile(r"(num_batches_tracked|text_encoder\.attn_mask)$")


def official_key(path: str) -> tuple[str, _T]:
  """Our '/'-joined path -> (official '.'-joined key, transform)."""
  for pat, template, transform in _COMPILED:
    if pat.match(path):
      return pat.sub(template, path).replace("/", "."), transform
  raise KeyError(path)  # unreachable: the last rule matches everything


def to_official(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Our flat ``{path: array}`` -> official state dict (numpy), with BatchNorm counters."""
  out = {}
  for path, value in flat.items():
    key, (fwd, _) = official_key(path)
    out[key] = np.asarray(fwd(np.asarray(value)), order="C")
    if key.endswith(".running_mean"):
      out[key[:-len("running_mean")] + "num_batches_tracked"] = np.asarray(0, np.int64)
  return out


def _official_shape(path: str, shape: tuple) -> tuple:
  _, (fwd, _) = official_key(path)
  return tuple(fwd(np.broadcast_to(np.zeros((), np.float32), shape)).shape)


def resize_pos_embed(pos_embed: np.ndarray, shape: tuple) -> np.ndarray:
  """[1, g*g, C] -> [1, n*n, C] square-to-square with PyTorch bicubic, as the reference loader
  does for a checkpoint trained at another resolution; other shapes are returned unchanged."""
  if pos_embed.ndim != 3 or len(shape) != 3 or pos_embed.shape[2] != shape[2]:
    return pos_embed
  g, n = int(round(np.sqrt(pos_embed.shape[1]))), int(round(np.sqrt(shape[1])))
  if g * g != pos_embed.shape[1] or n * n != shape[1]:
    return pos_embed
  grid = pos_embed.reshape(1, g, g, -1)
  return resize_hw_numpy(grid, (n, n), "bicubic").reshape(shape).astype(pos_embed.dtype)


def from_official(state_dict: Mapping[str, np.ndarray], expected: Mapping[str, tuple]):
  """Official state dict -> our flat dict for the paths (and shapes) in ``expected``.

  Returns:
    (flat, missing, unexpected, mismatched): ``flat`` holds every path found with the right
    shape; ``missing`` lists official keys absent from ``state_dict``; ``unexpected`` lists keys
    of ``state_dict`` that map to nothing; ``mismatched`` lists ``(key, got, want)`` shapes.
  """
  flat, missing, mismatched = {}, [], []
  used = set()
  for path, shape in expected.items():
    key, (_, inv) = official_key(path)
    if key not in state_dict:
      missing.append(key)
      continue
    used.add(key)
    value = inv(np.asarray(state_dict[key]))
    if path.endswith("pos_embed") and value.shape != tuple(shape):
      value = resize_pos_embed(value, tuple(shape))
    if tuple(value.shape) != tuple(shape):
      want = _official_shape(path, shape)
      mismatched.append((key, tuple(np.shape(state_dict[key])), want))
      continue
    flat[path] = value
  unexpected = sorted(k for k in state_dict if k not in used and not IGNORED_OFFICIAL.search(k))
  return flat, sorted(missing), unexpected, mismatched
