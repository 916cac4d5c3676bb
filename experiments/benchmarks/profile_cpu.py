"""Where the CPU time goes, ours (XLA:CPU) beside transformers' GroupViT (torch, oneDNN): the
per-operation profile of the ``cpu_vs_torch.py`` parts, summed into the same categories on both
sides, with the matmuls' achieved GFLOP/s.

Ours: ``jax.profiler`` traces the compiled program; each executed HLO instruction (thunk) is
classified from the optimized HLO (``compiled.as_text()``): a fusion holding a dot is a matmul
(batched if the dot has batch dimensions: attention and grouping), one holding a reduction is a
reduction (softmax, LayerNorm, losses), one of only transposes/copies/slices is layout, the rest
elementwise. FLOPs per dot = 2 x output elements x contracted size.
transformers: ``torch.profiler`` self CPU time per aten operation (with its FLOP counts for
mm/addmm/bmm), classified by operation name.

  .venv/bin/python experiments/benchmarks/profile_cpu.py [--parts forward,train_k3] [--steps 3]
      [--threads 0] [--out experiments/benchmarks/results/profile_cpu.json]

The markdown table is printed and written next to the JSON (``.md``).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(os.path.dirname(HERE))]
from bench_common import machine, write_json  # noqa: E402

CATEGORIES = ("matmul, dense (linear layers)", "matmul, batched (attention, grouping)",
              "convolution (patch embedding)", "reductions (softmax, LayerNorm, losses)",
              "elementwise (GELU, scales, adds, optimizer)", "layout (transpose, copy, slice)",
              "other")
DENSE, BATCHED, CONV, REDUCE, ELEMENTWISE, LAYOUT, OTHER = CATEGORIES

_INSTR = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\S+?)(?:\{[^}]*\})? ([\w-]+)\((.*)$")
_SHAPE = re.compile(r"^[a-z]+\d*\[([\d,]*)\]")
_LAYOUT_OPS = {"transpose", "copy", "bitcast", "broadcast", "slice", "dynamic-slice",
               "concatenate", "pad", "reshape", "parameter", "constant", "tuple",
               "get-tuple-element", "iota", "dynamic-update-slice", "reverse", "gather"}


def _dims(shape: str) -> list[int]:
  m = _SHAPE.match(shape)
  return [int(d) for d in m.group(1).split(",") if d] if m else []


class HloIndex:
  """The optimized module's instructions: name -> (shape, opcode, rest of line), and each
  computation's instructions, to classify an executed instruction and count its dot FLOPs."""

  def __init__(self, text: str):
    self.instr: dict[str, tuple[str, str, str]] = {}
    self.computations: dict[str, list[str]] = {}
    self.entry = None
    current = None
    for line in text.splitlines():
      head = re.match(r"^(ENTRY )?%(\S+) \(", line)
      if head:
        current = head.group(2)
        self.computations[current] = []
        self.entry = current if head.group(1) else self.entry
        continue
      m = _INSTR.match(line)
      if m and current:
        self.instr[m.group(1)] = (m.group(2), m.group(3), m.group(4))
        self.computations[current].append(m.group(1))

  def _body(self, name: str, depth: int = 0) -> list[str]:
    """The instruction names executed by ``name`` (itself, or its called computations)."""
    if name not in self.instr or depth > 3:
      return []
    _, op, rest = self.instr[name]
    called = re.findall(r"(?:calls|to_apply|body|condition)=%([\w.-]+)", rest)
    if op in ("fusion", "call", "custom-call") and called:
      out = []
      for comp in called:
        for inner in self.computations.get(comp, []):
          out += self._body(inner, depth + 1) if self.instr[inner][1] in ("fusion", "call") \
              else [inner]
      return out
    return [name]

  def classify(self, name: str) -> tuple[str, float]:
    """(category, FLOPs of its dots) of the executed instruction ``name``."""
    body = self._body(name)
    if not body:
      return OTHER, 0.0
    ops = {self.instr[b][1] for b in body}
    flops, batched = 0.0, False
    for b in body:
      shape, op, rest = self.instr[b]
      if op != "dot":
        continue
      lhs = re.match(r"%([\w.-]+)", rest).group(1)
      lhs_dims = _dims(self.instr[lhs][0]) if lhs in self.instr else []
      contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
      k = 1
      for d in (contracting.group(1).split(",") if contracting and contracting.group(1) else []):
        k *= lhs_dims[int(d)] if int(d) < len(lhs_dims) else 1
      out = 1
      for d in _dims(shape):
        out *= d
      flops += 2.0 * out * k
      batched |= "lhs_batch_dims" in rest
    if "dot" in ops:
      return (BATCHED if batched else DENSE), flops
    if "convolution" in ops:
      return CONV, 0.0
    if ops & {"reduce", "reduce-window"}:
      return REDUCE, 0.0
    if ops <= _LAYOUT_OPS:
      return LAYOUT, 0.0
    if ops & {"all-reduce", "all-gather", "custom-call", "while", "conditional", "sort"}:
      return OTHER, 0.0
    return ELEMENTWISE, 0.0


def profile_ours(run, compiled, steps: int) -> dict:
  """Per-category ms per step from a jax.profiler trace of ``steps`` calls of ``run``."""
  import jax
  index = HloIndex(compiled.as_text())
  run()
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d, create_perfetto_trace=True):
      for _ in range(steps):
        run()
    trace = glob.glob(os.path.join(d, "**", "*.trace.json.gz"), recursive=True)[0]
    with gzip.open(trace) as f:
      events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  ms, flops = collections.Counter(), collections.Counter()
  for e in events:
    if e.get("ph") != "X" or e["name"] not in index.instr:
      continue
    cat, f = index.classify(e["name"])
    ms[cat] += e.get("dur", 0) / 1e3 / steps
    flops[cat] += f / steps
  return {"ms": dict(ms), "flops": dict(flops)}


_TORCH_RULES = (
    (BATCHED, ("bmm", "baddbmm")),
    (DENSE, ("mm", "addmm", "matmul", "linear", "_addmm_activation")),
    (CONV, ("convolution", "mkldnn_convolution", "convolution_backward", "_convolution")),
    (REDUCE, ("softmax", "_softmax", "log_softmax", "_log_softmax", "_softmax_backward_data",
              "_log_softmax_backward_data", "layer_norm", "native_layer_norm",
              "native_layer_norm_backward", "sum", "mean", "max", "min", "amax", "norm",
              "linalg_vector_norm", "cross_entropy_loss", "nll_loss", "nll_loss_forward",
              "nll_loss_backward", "argmax", "logsumexp", "native_batch_norm",
              "native_batch_norm_backward", "batch_norm", "_batch_norm_impl_index",
              "cumsum", "topk")),
    (LAYOUT, ("copy_", "contiguous", "clone", "transpose", "permute", "view", "reshape", "cat",
              "stack", "index", "slice", "expand", "select", "t", "narrow", "unsqueeze",
              "squeeze", "flatten", "split", "chunk", "unbind", "as_strided", "_unsafe_view",
              "empty_like", "empty", "zeros", "zeros_like", "resize_", "detach", "to", "_to_copy",
              "gather", "scatter", "index_select", "repeat_interleave", "fill_", "zero_",
              "new_zeros", "empty_strided", "expand_as", "repeat", "split_with_sizes",
              "masked_fill", "one_hot", "arange")),
)


def classify_torch(name: str) -> str:
  op = name.split("::")[-1]
  for cat, names in _TORCH_RULES:
    if op in names:
      return cat
  return ELEMENTWISE if name.startswith("aten::") else OTHER


def profile_torch(run, steps: int) -> dict:
  """Per-category self CPU ms per step (and mm/bmm FLOPs) from torch.profiler."""
  from torch.profiler import ProfilerActivity, profile
  run()
  with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
    for _ in range(steps):
      run()
  ms, flops = collections.Counter(), collections.Counter()
  for e in prof.key_averages():
    if not e.key.startswith("aten::"):
      continue  # module/optimizer wrappers: their time is in their aten children
    cat = classify_torch(e.key)
    ms[cat] += e.self_cpu_time_total / 1e3 / steps
    flops[cat] += (e.flops or 0) / steps
  return {"ms": dict(ms), "flops": dict(flops)}


def markdown(rows: list[dict]) -> str:
  lines = []
  for r in rows:
    o, t = r["ours"], r["transformers"]
    lines += [f"**{r['name']}** (ms per call, summed over operations; wall: ours "
              f"{r['wall_ms']['ours']:.0f} ms, transformers {r['wall_ms']['transformers']:.0f} ms)",
              "", "| category | ours ms | transformers ms | ours GFLOP/s | transformers GFLOP/s |",
              "|---|---|---|---|---|"]
    for cat in CATEGORIES:
      a, b = o["ms"].get(cat, 0.0), t["ms"].get(cat, 0.0)
      if a < 0.05 and b < 0.05:
        continue
      rate = lambda side, ms: (f"{side['flops'][cat] / ms / 1e6:.0f}"  # noqa: E731
                               if cat in (DENSE, BATCHED) and side["flops"].get(cat) and ms
                               else "")
      lines.append(f"| {cat} | {a:.1f} | {b:.1f} | {rate(o, a)} | {rate(t, b)} |")
    lines.append(f"| **sum** | {sum(o['ms'].values()):.1f} | {sum(t['ms'].values()):.1f} | | |")
    lines.append("")
  return "\n".join(lines)


def selftest() -> dict:
  """A small program with known matmul FLOPs, classified from its HLO and profiled: what
  ``tests/test_profile_cpu.py`` checks (dense 2*64*128*256, batched 2*4*32*32*16)."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  def f(x, w, q, k):
    h = jax.nn.gelu(x @ w)
    return h.T + 1.0, jax.nn.softmax(jnp.einsum("bqd,bkd->bqk", q, k), axis=-1)

  rng = np.random.RandomState(0)
  args = [rng.randn(*s).astype(np.float32) for s in ((64, 128), (128, 256), (4, 32, 16),
                                                      (4, 32, 16))]
  compiled = jax.jit(f).lower(*args).compile()
  index = HloIndex(compiled.as_text())
  flops = collections.Counter()
  for name in index.computations[index.entry]:
    cat, fl = index.classify(name)
    flops[cat] += fl
  run = lambda: jax.block_until_ready(compiled(*args))  # noqa: E731
  return {"hlo_flops": dict(flops), "profile": profile_ours(run, compiled, 2),
          "torch": {n: classify_torch(n) for n in ("aten::addmm", "aten::bmm", "aten::_softmax",
                                                   "aten::native_layer_norm", "aten::gelu",
                                                   "aten::copy_", "aten::mkldnn_convolution")}}


def main(argv=None) -> int:
  import time
  import cpu_vs_torch
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--parts", default=",".join(cpu_vs_torch.PARTS))
  p.add_argument("--dtype", default="float32")
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--threads", type=int, default=0, help="as in cpu_vs_torch.py")
  p.add_argument("--out", default=os.path.join(HERE, "results", "profile_cpu.json"))
  p.add_argument("--selftest", action="store_true",
                 help="print the classification of a small known program as JSON and exit")
  args = p.parse_args(argv)
  if args.selftest:
    print(json.dumps(selftest()))
    return 0
  if args.threads:
    import bench_train
    bench_train.set_threads(args.threads)
  rows = []
  for part in [x for x in args.parts.split(",") if x]:
    if part not in cpu_vs_torch.PARTS:
      p.error(f"--parts: unknown {part!r}; expected names from {list(cpu_vs_torch.PARTS)}")
    runners, compiled = cpu_vs_torch.build(part, args.dtype)
    wall = {}
    for side, fn in runners.items():
      fn()
      t0 = time.perf_counter()
      for _ in range(args.steps):
        fn()
      wall[side] = (time.perf_counter() - t0) / args.steps * 1e3
    rows.append({"part": part, "name": f"{cpu_vs_torch.NAMES[part]}, {args.dtype}",
                 "wall_ms": wall, "ours": profile_ours(runners["ours"], compiled, args.steps),
                 "transformers": profile_torch(runners["transformers"], args.steps)})
    print(markdown(rows[-1:]), flush=True)
  write_json(args.out, {"machine": machine(), "rows": rows, "args": vars(args),
                        "categories": list(CATEGORIES)})
  with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
    f.write(markdown(rows))
  return 0


if __name__ == "__main__":
  sys.exit(main())
