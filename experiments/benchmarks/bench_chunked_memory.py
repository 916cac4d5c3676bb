"""Peak memory per device of the train step for the released ``gcc_yfcc`` recipe at global batch
4096, with and without ``microbatch_size`` chunks, from the compiled program's memory analysis.

Nothing is allocated: the state and batch are ``jax.ShapeDtypeStruct``s (``eval_shape``), the step
is lowered and compiled ahead of time, and XLA's buffer assignment reports, per device,
arguments + outputs - aliased (donated) + temporaries. The 8-device column uses 8 simulated CPU
devices (``--xla_force_host_platform_device_count=8``) with the recipe's mesh (data 8); the
1-device column the same program on one of them. XLA:CPU's buffer assignment stands in for the
accelerator's: fusion decisions differ per backend, so read the numbers as estimates. Its default
instruction order does not minimise live memory (the accelerator compilers' schedulers do);
``--scheduler memory`` asks XLA:CPU for a memory-minimising order, the closer estimate.

  PYTHONPATH=. python experiments/benchmarks/bench_chunked_memory.py            # the full table
  PYTHONPATH=. python experiments/benchmarks/bench_chunked_memory.py --cells 8:256:bf16-remat
  PYTHONPATH=. python experiments/benchmarks/bench_chunked_memory.py --scheduler memory

Each finished cell is written at once to the JSON (a long run can stop and resume); ``--md``
renders the table from the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

# Buffer assignment (what the memory analysis reports) is decided on the optimized HLO, before
# LLVM emits code, so the code generator's optimizations are switched off: the cell 8:256:bf16
# gave the same bytes, to the byte, in 33 s instead of 6 min.
FAST_CODEGEN = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {FAST_CODEGEN}")

RESULTS = pathlib.Path(__file__).parent / "results"
REPO = pathlib.Path(__file__).resolve().parents[2]
BATCH = 4096
CHUNKS = (64, 256, 1024, 0)  # 0 = no chunking
PRECISIONS = {"bf16": dict(dtype="bfloat16", remat=False),
              "bf16-remat": dict(dtype="bfloat16", remat=True)}
DEVICES = (1, 8)
# --scheduler -> (XLA:CPU scheduler type, result-file suffix)
SCHEDULERS = {"default": ("", ""),
              "memory": ("CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED", "_memory_scheduler")}
GIB = 1024**3


def cell_name(devices: int, chunk: int, precision: str) -> str:
  return f"{devices}:{chunk}:{precision}"


def measure(devices: int, chunk: int, precision: str) -> dict:
  """Compiles the recipe's step on ``devices`` devices; returns the memory analysis in bytes."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from groupvit_jax import optim  # pylint: disable=g-import-not-at-top
  from groupvit_jax.train import config_lib, state as state_lib, step as step_lib  # pylint: disable=g-import-not-at-top
  from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top

  config = config_lib.load_config(str(REPO / "configs" / "groupvit_gcc_yfcc.py"))
  config.model.update(PRECISIONS[precision])
  config.input.batch_size = BATCH
  cfg = state_lib.model_config(config)
  tx, schedule = optim.make_optimizer(config.optim, global_batch=BATCH,
                                      total_steps=int(config.total_steps))
  mesh = state_lib.make_mesh(config.mesh, devices=jax.devices()[:devices])
  rules = state_lib.rules_from_config(config.sharding_rules)
  graphdef, abstract = state_lib.abstract_state(cfg, tx)
  shardings = state_lib.state_shardings(abstract, tx, mesh, rules)
  bsh = pipeline.batch_shardings(mesh, rules, config.input)
  size, k, length = int(config.input.image_size), cfg.multi_label, cfg.text.context_length
  batch = {"image": jax.ShapeDtypeStruct((BATCH, size, size, 3), np.float32, sharding=bsh["image"]),
           "text": jax.ShapeDtypeStruct((BATCH, 1 + k, length), np.int32, sharding=bsh["text"])}
  step = step_lib.make_train_step(graphdef=graphdef, tx=tx, schedule=schedule, shardings=shardings,
                                  batch_shardings=bsh, mesh=mesh, rules=rules, multi_label=k,
                                  multi_label_weight=cfg.multi_label_loss_weight,
                                  microbatch_size=chunk)
  t0 = time.perf_counter()
  compiled = step.lower(state_lib.with_shardings(abstract, shardings), batch).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  out = {k: int(getattr(mem, f"{k}_size_in_bytes")) for k in ("argument", "output", "alias",
                                                              "temp")}
  out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
  return dict(devices=devices, microbatch_size=chunk, precision=precision, bytes=out,
              peak_gib=round(out["peak"] / GIB, 2), compile_s=round(compile_s, 1))


def markdown(results: dict) -> str:
  """Peak GiB per device: rows = chunk size, columns = devices x precision."""
  cols = [(d, p) for d in DEVICES for p in PRECISIONS]
  head = "| microbatch_size | " + " | ".join(f"{d} device{'s' if d > 1 else ''}, {p}"
                                              for d, p in cols) + " |"
  lines = [head, "|" + " --- |" * (len(cols) + 1)]
  for chunk in CHUNKS:
    cells = []
    for d, p in cols:
      r = results["cells"].get(cell_name(d, chunk, p))
      cells.append(f"{r['peak_gib']:.1f}" if r else "not measured")
    lines.append(f"| {chunk or 'off (4096)'} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cells", default="", help="comma list of devices:chunk:precision "
                      "(default: the full table, cheapest first)")
  parser.add_argument("--scheduler", choices=sorted(SCHEDULERS), default="default",
                      help="XLA:CPU's instruction scheduler: 'memory' orders the program to "
                      "minimise live memory, as accelerator compilers do (default out file: "
                      "chunked_memory_memory_scheduler.json)")
  parser.add_argument("--out", default=None,
                      help="JSON of the cells (default results/chunked_memory.json)")
  parser.add_argument("--md", action="store_true", help="only render the markdown table")
  args = parser.parse_args()
  out = pathlib.Path(args.out or RESULTS / f"chunked_memory{SCHEDULERS[args.scheduler][1]}.json")
  if SCHEDULERS[args.scheduler][0]:  # before JAX reads XLA_FLAGS
    os.environ["XLA_FLAGS"] += f" --xla_cpu_scheduler_type={SCHEDULERS[args.scheduler][0]}"
  results = json.loads(out.read_text()) if out.exists() else {
      "what": "peak memory per device of the gcc_yfcc train step at global batch 4096 "
              "(compiled memory analysis, XLA:CPU buffer assignment)",
      "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                 "shared with other work (compile times are contended)",
      "cells": {}, "scheduler": args.scheduler}
  if not args.md:
    import jax  # pylint: disable=g-import-not-at-top
    results["jax"] = jax.__version__
    cells = args.cells.split(",") if args.cells else [
        cell_name(d, c, p) for p in reversed(PRECISIONS) for c in CHUNKS for d in reversed(DEVICES)]
    for name in cells:
      if name in results["cells"]:
        continue
      d, c, p = name.split(":")
      print(f"compiling {name} ...", flush=True)
      results["cells"][name] = measure(int(d), int(c), p)
      print(json.dumps(results["cells"][name]), flush=True)
      out.write_text(json.dumps(results, indent=1) + "\n")
  md = markdown(results)
  out.with_suffix(".md").write_text(md)
  print(md)


if __name__ == "__main__":
  main()
