"""A plain numpy statement of the official zero-shot segmentation protocol (spec 5.2 to 5.4),
written from the spec and independent of groupvit_jax.segmentation: it only calls the model's eager
``encode_image`` / ``project_groups`` on one window at a time, like the reference's batch-1 loop.
Float64 throughout."""

from __future__ import annotations

import cv2
import jax.numpy as jnp
import numpy as np

MEAN = np.array([123.675, 116.28, 103.53])  # mmseg img_norm_cfg (RGB order after to_rgb)
STD = np.array([58.395, 57.12, 57.375])


def torch_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """F.interpolate(mode='bilinear', align_corners=False) of [C, H, W], per its index rule."""

  def taps(n_in, n_out):
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    return i0, i1, 1.0 - lam, lam

  h0, h1, hl0, hl1 = taps(x.shape[1], out_h)
  w0, w1, wl0, wl1 = taps(x.shape[2], out_w)
  rows = x[:, h0, :] * hl0[None, :, None] + x[:, h1, :] * hl1[None, :, None]
  return rows[:, :, w0] * wl0[None, None, :] + rows[:, :, w1] * wl1[None, None, :]


def softmax(x: np.ndarray) -> np.ndarray:
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def official_grid(h: int, w: int, num_tokens: int) -> tuple[int, int]:
  """``resize_attn_map``'s grid recovery."""
  scale = (h * w // num_tokens)**0.5
  if h > w:
    wf = w // int(np.round(scale))
    hf = num_tokens // wf
  else:
    hf = h // int(np.round(scale))
    wf = num_tokens // hf
  assert hf * wf == num_tokens, (h, w, num_tokens)
  return hf, wf


def window_logits(model, crop: np.ndarray, text: np.ndarray, bg_thresh: float | None) -> np.ndarray:
  """``encode_decode`` of one normalised crop [h, w, 3] -> logits [C, h, w]."""
  h, w = crop.shape[:2]
  enc = model.encode_image(jnp.asarray(crop[None], jnp.float32))  # eager, eval mode
  soft = [np.asarray(s[0], np.float64) for s in enc["soft"]]  # [S_out, L_in]
  attn = soft[0].T
  for s in soft[1:]:
    attn = attn @ s.T  # [L0, G]
  hf, wf = official_grid(h, w, attn.shape[0])
  maps = torch_bilinear(attn.reshape(hf, wf, -1).transpose(2, 0, 1), h, w)  # [G, h, w]
  onehot = np.eye(maps.shape[0])[maps.argmax(0)]  # [h, w, G]
  feat = np.asarray(model.project_groups(enc["tokens"])[0], np.float64)
  feat /= np.linalg.norm(feat, axis=-1, keepdims=True)
  avg = np.asarray(enc["image_x"][0], np.float64)
  avg /= np.linalg.norm(avg)
  scale = min(np.exp(float(np.asarray(model.logit_scale.get_value()))), 100.0)
  affinity = feat @ text.T * scale
  pre = softmax(affinity)
  avg_aff = softmax(avg @ text.T * scale)
  top = np.argsort(-avg_aff, kind="stable")[:min(5, text.shape[0])]
  masked = np.full_like(affinity, -np.inf)
  masked[:, top] = affinity[:, top]
  affinity = softmax(masked) * pre
  fg = onehot @ affinity  # [h, w, N]
  offset = 0 if bg_thresh is None else 1
  out = np.zeros((text.shape[0] + offset, h, w))
  out[offset:] = fg.transpose(2, 0, 1)
  if bg_thresh is not None:
    thr = min(bg_thresh, affinity.max())
    out[0][fg.max(-1) < thr] = 1.0
  return out


def segment(model, image: np.ndarray, text: np.ndarray, bg_thresh: float | None,
            crop: int = 448, stride: int = 224, img_scale=(2048, 448)) -> np.ndarray:
  """uint8 RGB [h, w, 3] -> labels [h, w] by the official slide protocol."""
  h, w = image.shape[:2]
  f = min(max(img_scale) / max(h, w), min(img_scale) / min(h, w))
  nh, nw = int(h * f + 0.5), int(w * f + 0.5)
  x = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR).astype(np.float64)
  x = (x - MEAN) / STD
  c = text.shape[0] + (bg_thresh is not None)
  preds = np.zeros((c, nh, nw))
  count = np.zeros((nh, nw))
  h_grids = max(nh - crop + stride - 1, 0) // stride + 1
  w_grids = max(nw - crop + stride - 1, 0) // stride + 1
  for gy in range(h_grids):
    for gx in range(w_grids):
      y1, x1 = gy * stride, gx * stride
      y2, x2 = min(y1 + crop, nh), min(x1 + crop, nw)
      y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
      preds[:, y1:y2, x1:x2] += window_logits(model, x[y1:y2, x1:x2], text, bg_thresh)
      count[y1:y2, x1:x2] += 1
  preds /= count
  return torch_bilinear(preds, h, w).argmax(0)


def segment_whole(model, image: np.ndarray, text: np.ndarray, bg_thresh: float | None,
                  img_scale=(2048, 448)) -> np.ndarray:
  """mmseg ``whole_inference``: one pass on the whole resized image (the demo mode)."""
  h, w = image.shape[:2]
  f = min(max(img_scale) / max(h, w), min(img_scale) / min(h, w))
  nh, nw = int(h * f + 0.5), int(w * f + 0.5)
  x = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR).astype(np.float64)
  logits = window_logits(model, (x - MEAN) / STD, text, bg_thresh)
  return torch_bilinear(logits, h, w).argmax(0)


def make_grouping_model():
  """A tiny random GroupViT with 16-pixel patches (the real 448/224 geometry: 28x28 patch grids)
  whose assignment projections are scaled up, so that groups differ from pixel to pixel (a fresh
  init puts every pixel in one group, which any pipeline would reproduce)."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from groupvit_jax import GroupViT  # pylint: disable=g-import-not-at-top
  from groupvit_jax.model_config import tiny  # pylint: disable=g-import-not-at-top
  model = GroupViT(tiny(img_size=64, patch_size=16, num_group_tokens=(16, 8, 0),
                        num_output_groups=(16, 8)), rngs=nnx.Rngs(0))
  rng = np.random.default_rng(1)
  for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    name = "/".join(map(str, path))
    if "assign" in name and ("q_proj" in name or "k_proj" in name) and name.endswith("kernel"):
      var.set_value(jnp.asarray(rng.normal(size=var.get_value().shape), jnp.float32))
  return model
