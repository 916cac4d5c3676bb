"""Image-encoder forward to the projected embedding at the model's resolution: img/s of ours
(jit, fp32 and bf16 compute) against transformers' ``get_image_features`` (fp32, and bf16
autocast), same weights, same device, sides alternated (``bench_common.alternate``)."""

from __future__ import annotations

import numpy as np

from bench_common import alternate, ratio


def run(settings, device: str, hf) -> dict:
  """``hf``: transformers' model on ``device`` (eval); ours loads its weights."""
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from accel_correctness import load_ours  # pylint: disable=g-import-not-at-top
  b = settings.encoder_batch
  size = hf.config.vision_config.image_size
  x = np.random.RandomState(1).randn(b, size, size, 3).astype(np.float32)
  xj = jax.device_put(x)
  pixels = torch.tensor(x).permute(0, 3, 1, 2).contiguous().to(device)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  runners = {}
  for dtype in ("float32", "bfloat16"):
    graphdef, state = nnx.split(load_ours(hf.cpu(), dtype))
    fwd = jax.jit(lambda st, x, g=graphdef: nnx.merge(g, st).encode_image(x)["image_x"])
    runners[f"ours {dtype}"] = (lambda f=fwd, st=state: jax.block_until_ready(f(st, xj)))
  hf.to(device)

  def torch_forward(bf16: bool):
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
      out = hf.get_image_features(pixels)
    sync()
    return out

  runners["transformers float32"] = lambda: torch_forward(False)
  runners["transformers bfloat16 autocast"] = lambda: torch_forward(True)
  times = alternate(runners, warmup=1, repeats=settings.repeats)
  img_s = {name: {"median": b / t["median_s"], "best": b / t["min_s"]} for name, t in times.items()}
  return {"batch": b, "image_size": size, "device": device, "timings": times, "img_per_s": img_s,
          "speedup_float32": ratio(times["transformers float32"], times["ours float32"]),
          "speedup_bfloat16": ratio(times["transformers bfloat16 autocast"], times["ours bfloat16"]),
          "goal": ">= 2x transformers at matched precision (accelerator)"}
