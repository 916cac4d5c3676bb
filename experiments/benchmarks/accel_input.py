"""Training input pipeline throughput: samples/s of the ``gcc_yfcc`` pipeline (webdataset shards
of JPEGs, the official augmentation with RandAugment and random erasing, K=3 prompts from the
caption, CLIP tokenisation) with 1, 4 and 16 worker processes, and the rate per worker.

Shards: JPEGs of ``input_shard_image`` px (cut from the shared VOC sample) with captions, written
by the package's ``ShardWriter``. Each worker count reads for ``input_seconds`` after its first
batch (so process start-up is not counted; it is reported).
"""

from __future__ import annotations

import io
import os
import time

import numpy as np

CAPTIONS = ("a dog and a cat sitting on a sofa in the living room",
            "two people riding bicycles along a river at sunset",
            "a red car parked next to a tall building",
            "a bird standing on a wooden fence in the garden",
            "a plate of food with bread and a glass of wine on a table")


def write_shards(root: str, settings) -> list[str]:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from input_pipeline.shard_writer import ShardWriter  # pylint: disable=g-import-not-at-top
  from accel_segmentation import VOC_ROOT  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.datasets import open_dataset  # pylint: disable=g-import-not-at-top
  s = settings.input_shard_image
  jpegs = []
  for ex in open_dataset("voc", VOC_ROOT):
    buf = io.BytesIO()
    Image.fromarray(ex.image).resize((s, s), Image.BILINEAR).save(buf, format="JPEG", quality=90)
    jpegs.append(buf.getvalue())
  num_shards = max(8, 2 * max(settings.input_workers))  # every worker needs its own shards
  per_shard = -(-settings.input_samples // num_shards)
  paths = []
  for k in range(num_shards):
    path = os.path.join(root, f"{k:05d}.tar")
    with ShardWriter(path) as w:
      for i in range(per_shard):
        n = k * per_shard + i
        w.write(f"{n:08d}", {"jpg": jpegs[n % len(jpegs)], "txt": CAPTIONS[n % len(CAPTIONS)]})
    paths.append(path)
  return paths


def _input_config(settings, shards: list[str], workers: int):
  from configs import groupvit_gcc_yfcc  # pylint: disable=g-import-not-at-top
  c = groupvit_gcc_yfcc.get_config().input
  c.train_shards = ",".join(shards)
  c.batch_size = settings.input_batch
  c.num_workers = workers
  c.shuffle_buffer = 256
  c.image_size = settings.input_image_size
  return c


def rate(settings, shards: list[str], workers: int) -> dict:
  from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top
  config = _input_config(settings, shards, workers)
  start = time.perf_counter()
  it = iter(pipeline.make_host_dataset(config, seed=0, process_index=0, process_count=1))
  first = next(it)
  first_s = time.perf_counter() - start
  assert first["image"].shape[1:] == (settings.input_image_size, settings.input_image_size, 3)
  assert first["text"].shape[1] == 4, first["text"].shape  # caption + K=3 prompts
  n, t0 = 0, time.perf_counter()
  while time.perf_counter() - t0 < settings.input_seconds:
    try:
      batch = next(it)
    except StopIteration:
      break
    n += len(batch["image"])
  seconds = time.perf_counter() - t0
  del it
  per_s = n / seconds if seconds else float("nan")
  return {"workers": workers, "samples": n, "seconds": seconds, "samples_per_s": per_s,
          "samples_per_s_per_worker": per_s / max(1, workers), "first_batch_s": first_s,
          "image_std": float(np.std(first["image"]))}


def run(settings, tmp_root: str) -> dict:
  shards = write_shards(tmp_root, settings)
  rows = [rate(settings, shards, w) for w in settings.input_workers]
  return {"image_size": settings.input_image_size, "shard_image": settings.input_shard_image,
          "batch": settings.input_batch, "multi_label_K": 3, "host_cpus": os.cpu_count(),
          "by_workers": rows,
          "goal": "feeds the train step with at most the host's cores (per-worker rate recorded)"}
