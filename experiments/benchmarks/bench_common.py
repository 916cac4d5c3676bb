"""Shared helpers of the benchmark scripts: timing, machine description, result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable


def time_per_call(fn: Callable[[], object], *, warmup: int = 2, iters: int = 5,
                  block: Callable[[object], object] = lambda x: x) -> dict:
  """Runs ``fn`` ``warmup`` times, then ``iters`` timed times (``block`` waits for the result).

  Returns seconds per call: median, min and all samples.
  """
  for _ in range(warmup):
    block(fn())
  samples = []
  for _ in range(iters):
    start = time.perf_counter()
    block(fn())
    samples.append(time.perf_counter() - start)
  return {"median_s": statistics.median(samples), "min_s": min(samples), "samples_s": samples}


def machine() -> dict:
  """Where the numbers came from."""
  info = {"platform": platform.platform(), "python": platform.python_version(),
          "cpu_count": os.cpu_count(), "date": datetime.date.today().isoformat()}
  try:
    with open("/proc/cpuinfo") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    info["cpu"] = names[0] if names else platform.processor()
  except OSError:
    info["cpu"] = platform.processor()
  try:
    import jax
    info["jax"] = jax.__version__
    info["jax_devices"] = [str(d) for d in jax.devices()]
  except ImportError:
    pass
  try:
    import torch
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
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
