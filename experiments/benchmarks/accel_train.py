"""Training the released ``gcc_yfcc`` recipe (2 stages, multi-label K=3, text 77) in bf16 at the
largest global batch that fits, with and without rematerialisation: samples/s, MFU, peak memory;
and transformers' plain contrastive step (K=0, bf16 autocast) at the same batch for a ratio.

Largest batch: one probe compile at ``train_probe_batch`` gives XLA's memory analysis (arguments
= parameters + optimizer state + batch, temporaries); memory per sample is taken as linear in
the batch, the prediction is rounded down to ``train_batch_multiple`` and capped at
``train_max_batch``, compiled, and backed off by a quarter on an out-of-memory error.
MFU = FLOPs of one step (XLA cost analysis of the compiled program) x steps/s / the device's
dense bf16 peak (``groupvit_jax.train.metrics.PEAK_FLOPS``; unknown on CPU: no MFU there).
The two sides do not fit in device memory together at these batches, so they run one after
the other (each side repeated, min and median), not alternated.
"""

from __future__ import annotations

import gc

from bench_common import time_per_call

# memory the step may plan for, as a share of the device's limit (the rest: fragmentation, the
# runtime, other live buffers)
MEMORY_SHARE = 0.85


def _device_limit() -> int | None:
  import jax  # pylint: disable=g-import-not-at-top
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("bytes_limit")


def _footprint(compiled) -> dict | None:
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  # backends without memory analysis
    return None
  if m is None:
    return None
  keys = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
          "alias_size_in_bytes", "generated_code_size_in_bytes")
  return {k: int(getattr(m, k, 0) or 0) for k in keys}


def _planned_bytes(fp: dict) -> int:
  return fp["argument_size_in_bytes"] + fp["output_size_in_bytes"] - fp["alias_size_in_bytes"] \
      + fp["temp_size_in_bytes"]


def predict_batch(settings, probe_fp: dict | None, batch_bytes_per_sample: int) -> int:
  """Largest batch (multiple of ``train_batch_multiple``) predicted to fit the device."""
  limit = _device_limit()
  m = settings.train_batch_multiple
  b0 = settings.train_probe_batch
  # fixed: parameters, optimizer state (in and out, donated); per sample: batch + activations
  per_sample = probe_fp["temp_size_in_bytes"] / b0 + batch_bytes_per_sample
  fixed = _planned_bytes(probe_fp) - per_sample * b0
  b = int((MEMORY_SHARE * limit - fixed) / per_sample) // m * m
  return max(m, min(b, settings.train_max_batch))


def _is_oom(e: Exception) -> bool:
  text = str(e).lower()
  return "resource_exhausted" in text or "out of memory" in text or "oom" in text


def _ours(settings, remat: bool) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import bench_train  # pylint: disable=g-import-not-at-top
  cfg = bench_train.model_config(settings.train_model, 3, "bfloat16")
  cfg = cfg.replace(remat=remat, multi_label=3)
  length = cfg.text.context_length
  probe_fp = None
  if _device_limit() is not None:  # a device with a memory limit: probe, then extrapolate
    data = bench_train.batch_arrays(settings.train_probe_batch, cfg.vision.img_size, 3, length)
    _, probe = bench_train.build_ours(cfg, data)
    probe_fp = _footprint(probe["compiled"])
    per_sample_input = sum(v[0].nbytes for v in data.values())
    del probe, data
    gc.collect()
    batch = predict_batch(settings, probe_fp, per_sample_input)
  else:  # CPU: host memory, nothing to find
    batch = settings.train_max_batch
  tries = []
  while True:
    try:
      data = bench_train.batch_arrays(batch, cfg.vision.img_size, 3, length)
      run, info = bench_train.build_ours(cfg, data)
      for _ in range(2):  # warm-up (the first call allocates)
        run()
      break
    except Exception as e:  # pylint: disable=broad-except
      if not _is_oom(e) or batch <= settings.train_batch_multiple:
        raise
      tries.append({"batch": batch, "error": str(e).splitlines()[0][:200]})
      batch = max(settings.train_batch_multiple,
                  int(batch * 0.75) // settings.train_batch_multiple * settings.train_batch_multiple)
      gc.collect()
  times = time_per_call(run, warmup=0, iters=settings.train_steps)  # run() waits for its step
  stats = jax.devices()[0].memory_stats() or {}
  flops = info["compiled_flops"] or info["flops"]
  out = {"remat": remat, "batch": batch, "oom_tries": tries, "timing": times,
         "samples_per_s": batch / times["median_s"], "samples_per_s_best": batch / times["min_s"],
         "compile_s": info["compile_s"], "flops_per_step_compiled": info["compiled_flops"],
         "flops_per_step_lowered": info["flops"], "peak_flops_per_device": info["peak"],
         "device_kind": info["device_kind"], "memory_analysis": _footprint(info["compiled"]),
         "probe_memory_analysis": probe_fp, "device_bytes_limit": _device_limit(),
         "peak_bytes_in_use": stats.get("peak_bytes_in_use")}
  if flops and info["peak"]:
    out["mfu"] = flops / times["median_s"] / (info["peak"] * info["devices"])
    out["mfu_best"] = flops / times["min_s"] / (info["peak"] * info["devices"])
  del run, info, data
  gc.collect()
  return out


def _transformers(settings, batch: int) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  import bench_train  # pylint: disable=g-import-not-at-top
  cfg = bench_train.model_config(settings.train_model, 0, "bfloat16")
  while True:
    try:
      data = bench_train.batch_arrays(batch, cfg.vision.img_size, 0, cfg.text.context_length)
      run, info = bench_train.build_torch(cfg, data, multi_label=False)
      run()
      break
    except torch.cuda.OutOfMemoryError:
      gc.collect()
      torch.cuda.empty_cache()
      if batch <= settings.train_batch_multiple:
        return {"batch": batch, "error": "out of memory"}
      batch //= 2
  times = time_per_call(run, warmup=0, iters=settings.train_steps)  # run() waits for its step
  peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
  del run
  gc.collect()
  if torch.cuda.is_available():
    torch.cuda.empty_cache()
  return {"batch": batch, "loss": "plain contrastive (K=0), bf16 autocast", "timing": times,
          "samples_per_s": batch / times["median_s"], "device": info["device"],
          "peak_bytes_allocated": peak}


def run(settings) -> dict:
  rows = {"no_remat": _ours(settings, remat=False), "remat": _ours(settings, remat=True)}
  best = max(rows.values(), key=lambda r: r["samples_per_s"])
  ref = _transformers(settings, rows["no_remat"]["batch"])
  out = {"model": settings.train_model, "multi_label_K": 3, "dtype": "bfloat16", **rows,
         "transformers": ref, "goal": ">= 35% MFU (official run: about 10%)"}
  if "samples_per_s" in ref:
    out["ours_best_over_transformers_plain"] = best["samples_per_s"] / ref["samples_per_s"]
  return out

