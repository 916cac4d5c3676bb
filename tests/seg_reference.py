"""A plain numpy statement of the official zero-shot segmentation protocol (spec 5.2 to 5.4),
written from the spec and independent of groupvit_jax: each window goes through transformers'
GroupViT (soft assignment maps, final segment tokens, visual projection, logit scale) one at a
time, like the reference's batch-1 loop; everything after the network is float64 numpy."""

from __future__ import annotations

import cv2
import numpy as np
import torch

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


def window_logits(hf_model, crop: np.ndarray, text: np.ndarray, bg_thresh: float | None
                  ) -> np.ndarray:
  """``encode_decode`` of one normalised crop [h, w, 3] -> logits [C, h, w], the network run by
  transformers' GroupViT (position embeddings interpolated to the crop, PyTorch bicubic)."""
  h, w = crop.shape[:2]
  pixels = torch.tensor(crop, dtype=torch.float32).permute(2, 0, 1)[None]
  with torch.no_grad():
    vm = hf_model.vision_model  # its forward() does not pass interpolate_pos_encoding on
    enc = vm.encoder(hidden_states=vm.embeddings(pixels, interpolate_pos_encoding=True),
                     output_attentions=True, return_dict=True)
    tokens = vm.layernorm(enc.last_hidden_state)[0]  # [S, C] after the final LayerNorm
    feat = hf_model.visual_projection(tokens).numpy().astype(np.float64)  # [S, D]
    avg = hf_model.visual_projection(tokens.mean(0, keepdim=True)).numpy()[0].astype(np.float64)
    scale = float(hf_model.logit_scale.exp().clamp(max=100))
  soft = [a[0].numpy().astype(np.float64) for a in enc.attentions]  # [S_out, L_in]
  attn = soft[0].T
  for s in soft[1:]:
    attn = attn @ s.T  # [L0, G]
  hf, wf = official_grid(h, w, attn.shape[0])
  maps = torch_bilinear(attn.reshape(hf, wf, -1).transpose(2, 0, 1), h, w)  # [G, h, w]
  onehot = np.eye(maps.shape[0])[maps.argmax(0)]  # [h, w, G]
  feat /= np.linalg.norm(feat, axis=-1, keepdims=True)
  avg /= np.linalg.norm(avg)
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


def segment(hf_model, image: np.ndarray, text: np.ndarray, bg_thresh: float | None,
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
      preds[:, y1:y2, x1:x2] += window_logits(hf_model, x[y1:y2, x1:x2], text, bg_thresh)
      count[y1:y2, x1:x2] += 1
  preds /= count
  return torch_bilinear(preds, h, w).argmax(0)


def segment_whole(hf_model, image: np.ndarray, text: np.ndarray, bg_thresh: float | None,
                  img_scale=(2048, 448)) -> np.ndarray:
  """mmseg ``whole_inference``: one pass on the whole resized image (the demo mode)."""
  h, w = image.shape[:2]
  f = min(max(img_scale) / max(h, w), min(img_scale) / min(h, w))
  nh, nw = int(h * f + 0.5), int(w * f + 0.5)
  x = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR).astype(np.float64)
  logits = window_logits(hf_model, (x - MEAN) / STD, text, bg_thresh)
  return torch_bilinear(logits, h, w).argmax(0)


GROUPING_HF = dict(
    vision_config=dict(hidden_size=32, intermediate_size=128, depths=[1, 1, 1],
                       num_hidden_layers=3, num_group_tokens=[16, 8, 0],
                       num_output_groups=[16, 8, 8], num_attention_heads=2, image_size=64,
                       patch_size=16),
    text_config=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=1,
                     num_attention_heads=2, max_position_embeddings=16),
    projection_dim=16, projection_intermediate_dim=64)


def make_grouping_models(tmp_dir):
  """A tiny random transformers GroupViT with 16-pixel patches (the real 448/224 geometry: 28x28
  patch grids) whose assignment q/k projections are scaled up, so that groups differ from pixel
  to pixel (a fresh init puts every pixel in one group, which any pipeline would reproduce), and
  the same model loaded by groupvit_jax from its saved directory. Returns (ours, transformers')."""
  import groupvit_jax as gv  # pylint: disable=g-import-not-at-top
  from reference_models import make_hf_model  # pylint: disable=g-import-not-at-top
  hf = make_hf_model(GROUPING_HF, seed=1)
  gen = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for name, p in hf.named_parameters():
      if ".assign." in name and ("q_proj.weight" in name or "k_proj.weight" in name):
        p.copy_(torch.randn(p.shape, generator=gen))
    hf.logit_scale.fill_(float(np.log(50.0)))  # sharp class scores: several classes win groups
  hf.save_pretrained(str(tmp_dir))
  return gv.load_pretrained(str(tmp_dir)), hf.eval()


def make_grouping_model(tmp_dir):
  """The groupvit_jax model of ``make_grouping_models``."""
  return make_grouping_models(tmp_dir)[0]
