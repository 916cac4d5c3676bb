"""Shape, layout and range checks for the public model API, with messages that say what to do."""

from __future__ import annotations

import jax
import numpy as np

from groupvit_jax.model_config import TextConfig, VisionConfig


def check_pixel_values(x, cfg: VisionConfig) -> None:
  """pixel_values must be a float [B, H, W, C] (NHWC) array with H, W >= patch size."""
  shape = getattr(x, "shape", None)
  if shape is None:
    raise TypeError(f"pixel_values must be an array of shape [batch, height, width, {cfg.in_chans}]"
                    f", got {type(x).__name__}")
  c = cfg.in_chans
  if len(shape) != 4:
    hint = " (add a batch axis: x[None])" if len(shape) == 3 else ""
    raise ValueError(f"pixel_values must be [batch, height, width, {c}] (NHWC), got shape "
                     f"{tuple(shape)}{hint}")
  if shape[-1] != c:
    if shape[1] == c:
      raise ValueError(
          f"pixel_values has shape {tuple(shape)}, which looks channels-first (NCHW); "
          f"groupvit_jax takes NHWC [batch, height, width, {c}]: use x.transpose(0, 2, 3, 1)")
    raise ValueError(f"pixel_values must have {c} channels last (NHWC), got shape {tuple(shape)}")
  if shape[1] < cfg.patch_size or shape[2] < cfg.patch_size:
    raise ValueError(f"pixel_values {tuple(shape)} is smaller than one {cfg.patch_size}x"
                     f"{cfg.patch_size} patch")
  if not np.issubdtype(np.dtype(x.dtype), np.floating):
    raise TypeError(f"pixel_values must be float and normalised (ImageNet mean/std), got dtype "
                    f"{x.dtype}; use groupvit_jax.preprocess_images for uint8 images")


def check_input_ids(ids, cfg: TextConfig) -> None:
  """input_ids must be integer [N, T] (or [B, n, T]) with T <= context_length and ids in vocab."""
  shape = getattr(ids, "shape", None)
  if shape is None:
    raise TypeError(f"input_ids must be an integer array [batch, {cfg.context_length}] (use "
                    f"groupvit_jax.tokenize), got {type(ids).__name__}")
  if len(shape) not in (2, 3):
    hint = " (add a batch axis: ids[None])" if len(shape) == 1 else ""
    raise ValueError(f"input_ids must be [batch, length] (or [batch, n_texts, length]), got shape "
                     f"{tuple(shape)}{hint}")
  if shape[-1] > cfg.context_length:
    raise ValueError(f"input_ids length {shape[-1]} exceeds the context length "
                     f"{cfg.context_length}; tokenize with context_length={cfg.context_length}")
  if not np.issubdtype(np.dtype(ids.dtype), np.integer):
    raise TypeError(f"input_ids must be integers, got dtype {ids.dtype}")
  if isinstance(ids, jax.core.Tracer) or ids.size == 0:
    return
  lo, hi = int(np.min(ids)), int(np.max(ids))
  if lo < 0 or hi >= cfg.vocab_size:
    raise ValueError(f"input_ids must lie in [0, {cfg.vocab_size}), got values in [{lo}, {hi}]")
