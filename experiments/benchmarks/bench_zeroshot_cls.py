"""Zero-shot classification speed, side by side with references in the same run.

1. Image reading: ``iter_batches`` (PIL decode + resize 256 + crop 224 + normalise) with N reader
   threads vs the same work in one thread; synthetic 500x375 JPEGs (the typical ImageNet val size).
2. Classifier: ``ZeroShotClassifier.logits`` (jit, 1000 classes) vs transformers' GroupViT
   ``get_image_features`` + normalise + matmul in torch, on the same random weights (transformers'
   default config = the released 2-stage architecture), fp32, 224x224.

    PYTHONPATH=. python experiments/benchmarks/bench_zeroshot_cls.py [--batch 8] [--steps 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image


def _write_jpegs(folder: str, n: int) -> list[str]:
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0:375, 0:500]
  paths = []
  for i in range(n):
    base = (np.stack([xx * (i % 7 + 1), yy * 2, xx + yy], -1) % 256).astype(np.uint8)
    noise = rng.integers(0, 40, base.shape, dtype=np.uint8)
    path = os.path.join(folder, f"{i:05d}.JPEG")
    Image.fromarray(base + noise).save(path, quality=90)
    paths.append(path)
  return paths


def bench_reading(num_images: int, batch: int, workers: int) -> None:
  from groupvit_jax.classification.image_batches import iter_batches
  from groupvit_jax.image_io import load_image
  with tempfile.TemporaryDirectory() as tmp:
    items = [(p, 0) for p in _write_jpegs(tmp, num_images)]
    rates = {}
    for w in (1, workers):
      start = time.perf_counter()
      n = sum(b.num_valid for b in iter_batches(items, load_image, batch_size=batch,
                                                image_size=224, num_workers=w))
      rates[w] = n / (time.perf_counter() - start)
  print(f"reading+preprocessing, {num_images} JPEGs 500x375 -> 224: 1 thread "
        f"{rates[1]:.1f} img/s, {workers} threads {rates[workers]:.1f} img/s "
        f"(ratio {rates[workers] / rates[1]:.2f}x)")


def bench_classifier(batch: int, steps: int) -> None:
  import jax
  import torch
  import torch.nn.functional as F
  import transformers
  import groupvit_jax as gv
  from groupvit_jax.classification.zeroshot import ZeroShotClassifier
  from groupvit_jax.sharding import data_mesh
  torch.manual_seed(0)
  hf = transformers.GroupViTModel(transformers.GroupViTConfig()).eval()
  with tempfile.TemporaryDirectory() as tmp:
    hf.save_pretrained(tmp)
    model = gv.load_pretrained(tmp)
  emb = np.random.default_rng(0).standard_normal((1000, model.config.proj_dim)).astype(np.float32)
  emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
  mesh = data_mesh(jax.devices()[:1])
  clf = ZeroShotClassifier(model, emb, batch_size=batch, mesh=mesh)
  x = np.random.default_rng(1).standard_normal((clf.batch_size, 224, 224, 3)).astype(np.float32)
  ours = np.asarray(clf.logits(x))  # compile
  start = time.perf_counter()
  for _ in range(steps):
    ours = np.asarray(clf.logits(x))
  jax_rate = steps * clf.batch_size / (time.perf_counter() - start)

  xt, et = torch.tensor(x).permute(0, 3, 1, 2).contiguous(), torch.tensor(emb)
  with torch.no_grad():
    def ref():
      f = hf.get_image_features(pixel_values=xt)
      f = getattr(f, "pooler_output", f)
      return F.normalize(f, dim=-1) @ et.T
    theirs = ref().numpy()
    start = time.perf_counter()
    for _ in range(steps):
      ref()
    torch_rate = steps * clf.batch_size / (time.perf_counter() - start)
  print(f"classifier (224, batch {clf.batch_size}, 1000 classes): max |logit diff| "
        f"{np.abs(ours - theirs).max():.2e}; groupvit_jax {jax_rate:.1f} img/s, transformers "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads) {torch_rate:.1f} img/s "
        f"(ratio {jax_rate / torch_rate:.2f}x)")


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--images", type=int, default=96)
  p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
  args = p.parse_args()
  print(f"machine: {os.cpu_count()} CPU cores")
  bench_reading(args.images, args.batch, args.workers)
  bench_classifier(args.batch, args.steps)


if __name__ == "__main__":
  main()
