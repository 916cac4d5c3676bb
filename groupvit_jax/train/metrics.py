"""Metric writers (TensorBoard + JSON lines), the plain log line, and the MFU estimate.

MFU = (FLOPs of one step of the global batch, from XLA's cost analysis of the lowered program) x
steps/s / (peak FLOP/s per device x devices). The peak comes from ``config.peak_flops_per_device`` or, for
known accelerators, from the table below (dense bf16); on CPU it is unknown and MFU is not shown.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from typing import Any, Mapping

import jax
import numpy as np

# Dense bf16 peak FLOP/s per device (vendor figures).
PEAK_FLOPS = {
    "h100": 989e12, "h200": 989e12, "a100": 312e12, "l4": 121e12, "v100": 125e12,  # v100: fp16
    "tpu v4": 275e12, "tpu v5 lite": 197e12, "tpu v5e": 197e12, "tpu v5p": 459e12,
    "tpu v5": 459e12, "tpu v6 lite": 918e12, "tpu v6e": 918e12,
}


def peak_flops_per_device(device=None, override: float | None = None) -> float | None:
  if override:
    return float(override)
  kind = (device or jax.devices()[0]).device_kind.lower()
  for name in sorted(PEAK_FLOPS, key=len, reverse=True):
    if name in kind:
      return PEAK_FLOPS[name]
  return None


def step_flops(lowered) -> float | None:
  """FLOPs of one step of the whole global batch (None if XLA gives none).

  Read from the *lowered* (not yet partitioned) program: its shapes are global, so the count
  does not include work that SPMD partitioning duplicates on every device (e.g. the update of
  replicated parameters), which a compiled per-device cost analysis times the device count would.
  """
  try:
    ca = lowered.cost_analysis()
  except Exception:  # pylint: disable=broad-except  # backends without cost analysis
    return None
  if isinstance(ca, (list, tuple)):
    ca = ca[0] if ca else None
  if not ca or "flops" not in ca:
    return None
  return float(ca["flops"])


class JsonlWriter:
  """CLU ``MetricWriter`` appending ``{"step": s, **scalars}`` lines to ``metrics.jsonl``."""

  def __init__(self, path: str):
    self._path = path
    self._file = open(path, "a")

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    row = {"step": int(step)}
    row.update({k: float(np.asarray(v)) for k, v in scalars.items()})
    self._file.write(json.dumps(row) + "\n")
    self._file.flush()  # readable while training runs (`tail -f`, notebooks)

  def write_summaries(self, step, values, metadata=None):
    del step, values, metadata

  def write_images(self, step, images):
    del step, images

  def write_videos(self, step, videos):
    del step, videos

  def write_audios(self, step, audios, *, sample_rate):
    del step, audios, sample_rate

  def write_texts(self, step, texts):
    del step, texts

  def write_histograms(self, step, arrays, num_buckets=None):
    del step, arrays, num_buckets

  def write_hparams(self, hparams):
    del hparams

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    self._file.close()


def create_writer(workdir: str):
  """Process 0: TensorBoard events in ``workdir`` (local or remote) + ``workdir/metrics.jsonl``
  (local workdirs; object stores cannot append), asynchronous; other processes: a writer that
  drops everything. Without TensorFlow (no ``tf`` extra) only ``metrics.jsonl`` is written."""
  try:
    from clu import metric_writers  # pylint: disable=g-import-not-at-top  # imports TensorFlow
  except ImportError as e:  # no `tf` extra (e.g. a GPU image with jax and torch only)
    local = jax.process_index() == 0 and "://" not in workdir
    logging.warning("no TensorBoard events (%s): metrics go to %s", e,
                    "metrics.jsonl only" if local else "nowhere on this process")
    return JsonlWriter(os.path.join(workdir, "metrics.jsonl") if local else os.devnull)
  if jax.process_index() > 0:
    return metric_writers.MultiWriter([])
  writers = [metric_writers.SummaryWriter(workdir)]
  if "://" not in workdir:
    writers.append(JsonlWriter(os.path.join(workdir, "metrics.jsonl")))
  return metric_writers.AsyncMultiWriter(writers)


class _NoProgressReport:
  """Stands in for CLU's ``ReportProgress`` without TensorFlow: times nothing, reports nothing."""

  def __call__(self, step: int) -> None:
    del step

  def timed(self, name: str, wait_jax_async_dispatch: bool = True):
    del name, wait_jax_async_dispatch
    return contextlib.nullcontext()


def progress_report(total_steps: int, writer, every_steps: int):
  """CLU's ``ReportProgress`` (steps/s, time shares of data, evals and checkpoints) and its
  ``ensure_flushes(writer)`` context; without TensorFlow (no ``tf`` extra) stand-ins that keep the
  loop running and ``metrics.jsonl`` written."""
  try:
    from clu import metric_writers, periodic_actions  # pylint: disable=g-import-not-at-top
  except ImportError:
    return _NoProgressReport(), contextlib.nullcontext()
  report = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                           every_steps=every_steps)
  return report, metric_writers.ensure_flushes(writer)


def log_line(step: int, total_steps: int, scalars: Mapping[str, float]) -> str:
  """``step 120/1000 | loss 4.213 (itc 2.1 ml 2.1) | lr 1.6e-03 | 3210 img/s | MFU 41.2% | ...``."""
  parts = [f"step {step}/{total_steps}", f"loss {scalars['loss']:.4f}"]
  sub = [f"{name} {scalars[key]:.4f}" for name, key in (("itc", "loss_itc"), ("ml", "loss_ml"))
         if key in scalars]
  if sub:
    parts[-1] += " (" + " ".join(sub) + ")"
  parts.append(f"lr {scalars['lr']:.3e}")
  if "images_per_sec" in scalars:
    parts.append(f"{scalars['images_per_sec']:.1f} img/s")
  if "mfu" in scalars:
    parts.append(f"MFU {100 * scalars['mfu']:.1f}%")
  elif "tflops_per_sec" in scalars:
    parts.append(f"{scalars['tflops_per_sec']:.3g} TFLOP/s (MFU n/a: unknown peak)")
  parts.append(f"skipped: {int(scalars.get('skipped_image_total', 0))} images, "
               f"{int(scalars.get('skipped_caption_total', 0))} captions")
  if scalars.get("skipped_shard_total"):
    parts[-1] += f", {int(scalars['skipped_shard_total'])} empty or unreadable shards"
  if scalars.get("nonfinite_skipped_total"):
    parts[-1] += f", {int(scalars['nonfinite_skipped_total'])} non-finite steps"
  return " | ".join(parts)


class Throughput:
  """Images/s, TFLOP/s and MFU between two log points."""

  def __init__(self, *, global_batch: int, step_flops: float | None, peak: float | None):
    self._batch = global_batch
    self._flops = step_flops
    self._peak_total = peak * jax.device_count() if peak else None
    self._t, self._step = time.perf_counter(), None

  def reset(self, step: int) -> None:
    self._t, self._step = time.perf_counter(), step

  def update(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    out = {}
    if self._step is not None and step > self._step and now > self._t:
      steps_per_sec = (step - self._step) / (now - self._t)
      out["images_per_sec"] = steps_per_sec * self._batch
      if self._flops:
        out["tflops_per_sec"] = steps_per_sec * self._flops / 1e12
        if self._peak_total:
          out["mfu"] = steps_per_sec * self._flops / self._peak_total
    self._t, self._step = now, step
    return out


def log_memory(compiled) -> None:
  try:
    mem = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    mem = None
  if mem is None:
    return
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
            "alias_size_in_bytes")
  sizes = {f: getattr(mem, f, None) for f in fields}
  logging.info("train step memory per device: %s", ", ".join(
      f"{k.replace('_size_in_bytes', '')} {v / 2**20:.1f} MiB" for k, v in sizes.items()
      if v is not None))
