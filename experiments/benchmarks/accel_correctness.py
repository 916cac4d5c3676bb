"""Correctness before speed: ours against transformers' GroupViT on the same device.

fp32 with TF32 off on both sides (torch's ``allow_tf32`` flags, JAX's ``highest`` matmul
precision): normalised image and text embeddings must agree within ``settings.parity_atol``.
bf16 (ours, bf16 compute from the same weights): its deviation from fp32 is reported, not gated.
Weights: transformers' model with every parameter and BatchNorm statistic perturbed (the tests'
``reference_models.make_hf_model``), so no mapping error hides behind an init of ones and zeros.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def reference_model(preset: str, device: str):
  """transformers' GroupViT (eval), perturbed weights; ``preset`` 'released' or 'tiny'."""
  sys.path.insert(0, os.path.join(REPO, "tests"))
  from reference_models import TINY_HF, make_hf_model  # pylint: disable=g-import-not-at-top
  return make_hf_model(TINY_HF if preset == "tiny" else {}, seed=0).to(device)


def load_ours(hf, dtype: str):
  """Ours from transformers' ``save_pretrained`` directory (the user's loading path)."""
  import groupvit_jax as gv  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as d:
    hf.save_pretrained(d)
    return gv.load_pretrained(d, dtype=dtype)


def run(settings, device: str, hf) -> dict:
  """``hf``: ``reference_model(settings.hf_preset, device)``."""
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import groupvit_jax as gv  # pylint: disable=g-import-not-at-top
  torch.backends.cuda.matmul.allow_tf32 = False
  torch.backends.cudnn.allow_tf32 = False
  ctx = hf.config.text_config.max_position_embeddings
  b, size = settings.parity_batch, settings.parity_image
  x = np.random.RandomState(0).randn(b, size, size, 3).astype(np.float32)
  texts = [f"a photo of {n} cats on a red sofa" for n in range(b)]
  ids = gv.tokenize(texts, context_length=ctx)
  with torch.no_grad():
    ref = hf(input_ids=torch.tensor(ids, dtype=torch.long, device=device),
             pixel_values=torch.tensor(x).permute(0, 3, 1, 2).to(device))
  ref_img = ref.image_embeds.float().cpu().numpy()
  ref_txt = ref.text_embeds.float().cpu().numpy()
  out = {}
  for dtype in ("float32", "bfloat16"):
    model = load_ours(hf.cpu(), dtype)
    hf.to(device)
    with jax.default_matmul_precision("highest" if dtype == "float32" else "default"):
      o = model(pixel_values=x, input_ids=ids)
    img = np.asarray(o.image_embeds, np.float32)
    txt = np.asarray(o.text_embeds, np.float32)
    out[dtype] = {"image_embeds_max_abs_diff": float(np.abs(img - ref_img).max()),
                  "text_embeds_max_abs_diff": float(np.abs(txt - ref_txt).max()),
                  "image_cosine_min": float(np.min(np.sum(img * ref_img, -1))),
                  "text_cosine_min": float(np.min(np.sum(txt * ref_txt, -1)))}
  f32 = out["float32"]
  passed = max(f32["image_embeds_max_abs_diff"], f32["text_embeds_max_abs_diff"]) <= settings.parity_atol
  return {"device": device, "preset": settings.hf_preset, "batch": b, "image_size": size,
          "tf32": False, "atol": settings.parity_atol, "fp32_within_atol": bool(passed),
          "reference_embeds_spread": float(np.ptp(ref_img)), **out}
