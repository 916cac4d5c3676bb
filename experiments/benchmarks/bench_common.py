"""Shared helpers of the benchmark scripts: alternating timing, busy-machine warnings, machine
description, result files.

On a shared machine one side of a comparison can lose its cores for a while (torch's OpenMP
threads collapse when a neighbour takes a core), so every comparison here alternates the sides
(ABBA order, round by round), repeats, and reports the min and the median of each side. A side
whose median is far above its min (``BUSY_SPREAD``) ran on a busy machine: the result says so.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

BUSY_SPREAD = 1.25  # median / min above this: the timings were disturbed by other load


def summarize(samples: list[float]) -> dict:
  """Seconds per call -> ``median_s``, ``min_s``, ``spread`` (median / min), ``busy`` and the samples."""
  lo, med = min(samples), statistics.median(samples)
  spread = med / lo if lo > 0 else float("inf")
  return {"median_s": med, "min_s": lo, "spread": spread, "busy": spread > BUSY_SPREAD,
          "samples_s": list(samples), "repeats": len(samples)}


def alternate(runners: dict[str, Callable[[], object]], *, warmup: int = 1, repeats: int = 5,
              block: Callable[[object], object] = lambda x: x) -> dict[str, dict]:
  """Times every runner ``repeats`` times, the sides alternating call by call.

  Odd rounds run the sides in reverse order (A B, B A, A B, ...), so neither side always follows
  the other (caches, thermal state, a neighbour's burst). ``block`` waits for a result (e.g.
  ``jax.block_until_ready``). Returns ``summarize(...)`` of each runner, plus a ``warning``
  string on a side whose spread says the machine was busy.
  """
  names = list(runners)
  for _ in range(warmup):
    for name in names:
      block(runners[name]())
  samples = {name: [] for name in names}
  for r in range(repeats):
    for name in (names if r % 2 == 0 else names[::-1]):
      start = time.perf_counter()
      block(runners[name]())
      samples[name].append(time.perf_counter() - start)
  out = {name: summarize(s) for name, s in samples.items()}
  for name, s in out.items():
    if s["busy"]:
      s["warning"] = (f"{name}: median {s['median_s']:.4g}s is {s['spread']:.2f}x its min "
                      f"{s['min_s']:.4g}s: the machine was busy, trust the min more")
      print(f"WARNING {s['warning']}", file=sys.stderr, flush=True)
  return out


def ratio(reference: dict, ours: dict) -> dict:
  """Speed-up of ours over the reference (> 1: ours faster) from two ``summarize`` results."""
  return {"min": reference["min_s"] / ours["min_s"],
          "median": reference["median_s"] / ours["median_s"],
          "busy": bool(reference["busy"] or ours["busy"])}


def time_per_call(fn: Callable[[], object], *, warmup: int = 2, iters: int = 5,
                  block: Callable[[object], object] = lambda x: x) -> dict:
  """One runner alone (no comparison): ``alternate`` with a single side."""
  return alternate({"run": fn}, warmup=warmup, repeats=iters, block=block)["run"]


def load_average() -> list[float] | None:
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:
    return None


def machine() -> dict:
  """Where the numbers came from: host, accelerator, library versions, load at the time."""
  info = {"platform": platform.platform(), "python": platform.python_version(),
          "cpu_count": os.cpu_count(), "date": datetime.date.today().isoformat(),
          "load_average": load_average(), "xla_flags": os.environ.get("XLA_FLAGS", "")}
  if hasattr(os, "sched_getaffinity"):  # the cores this process may run on (--threads pins it)
    info["cores_used"] = len(os.sched_getaffinity(0))
  try:
    with open("/proc/cpuinfo") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    info["cpu"] = names[0] if names else platform.processor()
  except OSError:
    info["cpu"] = platform.processor()
  try:
    import jax
    import jaxlib
    info["jax"] = jax.__version__
    info["jaxlib"] = jaxlib.__version__
    info["jax_backend"] = jax.default_backend()
    info["jax_devices"] = [str(d) for d in jax.devices()]
    info["device_kind"] = jax.devices()[0].device_kind
  except ImportError:
    pass
  for mod in ("flax", "optax", "torch", "transformers", "numpy"):
    try:
      info[mod] = __import__(mod).__version__
    except ImportError:
      pass
  try:
    import torch
    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
      info["torch_cuda_device"] = torch.cuda.get_device_name(0)
  except ImportError:
    pass
  return info


def write_json(path: str, payload: dict) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  print(f"wrote {path}")


def print_table(rows: list[list], header: list[str]) -> None:
  widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
  line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
  print(line(header))
  print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
  for r in rows:
    print(line(r))
