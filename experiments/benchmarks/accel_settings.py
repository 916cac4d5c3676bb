"""Sizes of the accelerator benchmark: the full run (one H200-class GPU, under 8 minutes) and the
``--smoke`` run (CPU, tiny model, seconds). One place, so both modes run the same code."""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class Settings:
  smoke: bool
  # correctness
  hf_preset: str  # 'released' (transformers' default config) or 'tiny' (tests' TINY_HF)
  parity_batch: int
  parity_image: int
  parity_atol: float  # fp32 embeddings, TF32 off on both sides
  # image encoder
  encoder_batch: int
  repeats: int
  # segmentation: JPEGs generated from the shared VOC sample, protocol geometry
  seg_images: int
  seg_sizes: tuple[tuple[int, int], ...]  # (width, height) of the generated images
  seg_img_scale: tuple[int, int]
  seg_crop: int
  seg_stride: int
  seg_images_per_batch: int
  seg_window_chunk: int
  seg_agreement_images: int  # images segmented in fp32 too (label agreement with bf16)
  # training: model preset, batch search
  train_model: str
  train_probe_batch: int
  train_max_batch: int
  train_batch_multiple: int
  train_steps: int
  # input pipeline
  input_workers: tuple[int, ...]
  input_image_size: int
  input_shard_image: int  # side of the JPEGs in the shards
  input_samples: int
  input_batch: int
  input_seconds: float  # time-boxed reading per worker count (after the first batch)
  host_workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)


# VOC 2012 val images are at most 500 px a side; these are its common shapes (landscape, portrait,
# wide, square). Few distinct shapes keep the number of compiled buckets (and the run) short.
VOC_SIZES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 500), (500, 281))

FULL = Settings(
    smoke=False, hf_preset="released", parity_batch=8, parity_image=224, parity_atol=1e-4,
    encoder_batch=256, repeats=5,
    seg_images=1024, seg_sizes=VOC_SIZES, seg_img_scale=(2048, 448), seg_crop=448, seg_stride=224,
    seg_images_per_batch=32, seg_window_chunk=96, seg_agreement_images=64,
    train_model="gcc_yfcc", train_probe_batch=64, train_max_batch=8192, train_batch_multiple=64,
    train_steps=5,
    input_workers=(1, 4, 16), input_image_size=224, input_shard_image=512, input_samples=4096,
    input_batch=64, input_seconds=12.0)

SMOKE = Settings(
    smoke=True, hf_preset="tiny", parity_batch=2, parity_image=32, parity_atol=1e-4,
    encoder_batch=4, repeats=3,
    seg_images=6, seg_sizes=((50, 38), (38, 50)), seg_img_scale=(256, 64), seg_crop=64,
    seg_stride=32, seg_images_per_batch=2, seg_window_chunk=8, seg_agreement_images=2,
    train_model="tiny", train_probe_batch=4, train_max_batch=8, train_batch_multiple=4,
    train_steps=2,
    input_workers=(0, 1), input_image_size=32, input_shard_image=64, input_samples=64,
    input_batch=8, input_seconds=2.0, host_workers=2)
