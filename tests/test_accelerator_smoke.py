"""``experiments/benchmarks/accelerator.py --smoke`` runs every part on CPU and writes a result
with every section filled with sane values (so the GPU script cannot rot between GPU runs)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "benchmarks" / "accelerator.py"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  out = tmp_path_factory.mktemp("accelerator")
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out_dir", str(out)],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return json.loads((out / "accelerator_smoke.json").read_text()), \
      (out / "accelerator_smoke.md").read_text()


pytestmark = pytest.mark.slow


def test_every_part_ran_without_error(smoke):
  result, md = smoke
  for part in ("correctness", "encoder", "segmentation", "train", "input"):
    assert part in result and "error" not in result[part], (part, result.get(part))
    assert f"## {part}" in md
  assert result["smoke"] is True and result["torch_device"] == "cpu"
  for key in ("jax", "torch", "transformers", "cpu", "device_kind"):
    assert result["machine"][key], key


def test_correctness_within_tolerance_and_bf16_close(smoke):
  c = smoke[0]["correctness"]
  assert c["fp32_within_atol"]
  assert c["float32"]["image_embeds_max_abs_diff"] <= 1e-4
  assert c["float32"]["text_embeds_max_abs_diff"] <= 1e-4
  assert c["reference_embeds_spread"] > 1e-2  # the comparison is not of two constants
  assert 0 < c["bfloat16"]["image_embeds_max_abs_diff"] < 0.1
  assert c["bfloat16"]["image_cosine_min"] > 0.99


def test_encoder_and_train_rates(smoke):
  r = smoke[0]
  e = r["encoder"]
  assert set(e["img_per_s"]) == {"ours float32", "ours bfloat16", "transformers float32",
                                 "transformers bfloat16 autocast"}
  for name, t in e["timings"].items():
    assert t["repeats"] == 3 and 0 < t["min_s"] <= t["median_s"], name
  assert e["speedup_float32"]["min"] > 0
  t = r["train"]
  for key in ("no_remat", "remat"):
    assert t[key]["batch"] == 8 and t[key]["samples_per_s"] > 0
    assert t[key]["flops_per_step_compiled"] > 1e6
    assert t[key]["memory_analysis"]["temp_size_in_bytes"] > 0
    assert "mfu" not in t[key]  # no peak FLOP/s on CPU: no invented MFU
  assert t["remat"]["remat"] and not t["no_remat"]["remat"]
  assert t["transformers"]["batch"] == 8 and t["transformers"]["samples_per_s"] > 0


def test_segmentation_from_jpeg_files(smoke):
  s = smoke[0]["segmentation"]
  assert s["images"] == 6 and s["windows"] >= s["images"]
  assert s["buckets"] >= 2  # the aspect ratios differ
  assert s["images_per_s"] > 0 and 0 <= s["device_waits_for_host_share"] <= 1
  assert 0.5 <= s["bf16_vs_fp32_pixel_agreement_mean"] <= 1
  assert s["agreement_images"] == 2


def test_input_pipeline_rates(smoke):
  rows = smoke[0]["input"]["by_workers"]
  assert [x["workers"] for x in rows] == [0, 1]
  for x in rows:
    assert x["samples"] > 0 and x["samples_per_s"] > 0
    assert x["image_std"] > 0.1  # augmented, normalised images, not zeros
