"""``experiments/benchmarks/profile_cpu.py`` classifies XLA's executed instructions and counts
their matmul FLOPs as written by hand here, and its trace covers what ran."""

import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "benchmarks" / "profile_cpu.py"
DENSE, BATCHED = "matmul, dense (linear layers)", "matmul, batched (attention, grouping)"


def test_selftest_program_is_classified_and_counted():
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  proc = subprocess.run([sys.executable, str(SCRIPT), "--selftest"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  # x[64,128] @ w[128,256], and einsum bqd,bkd->bqk over q,k [4,32,16].
  want = {DENSE: 2 * 64 * 128 * 256, BATCHED: 2 * 4 * 32 * 32 * 16}
  for cat, flops in want.items():
    assert out["hlo_flops"][cat] == flops, (cat, out["hlo_flops"])
    assert out["profile"]["flops"][cat] == flops, (cat, out["profile"])  # once per call
    assert out["profile"]["ms"][cat] > 0
  assert sum(out["hlo_flops"].values()) == sum(want.values())
  assert out["torch"] == {"aten::addmm": DENSE, "aten::bmm": BATCHED,
                          "aten::_softmax": "reductions (softmax, LayerNorm, losses)",
                          "aten::native_layer_norm": "reductions (softmax, LayerNorm, losses)",
                          "aten::gelu": "elementwise (GELU, scales, adds, optimizer)",
                          "aten::copy_": "layout (transpose, copy, slice)",
                          "aten::mkldnn_convolution": "convolution (patch embedding)"}
