"""One command for a short accelerator window: correctness, image encoder, segmentation end to
end, training at the largest batch, and the input pipeline, each beside transformers' GroupViT
(torch) on the same device in the same run. Writes JSON + markdown under
``experiments/benchmarks/results/`` with the machine and the library versions.

Parts (``--parts``, comma separated; all by default, in this order):
  correctness  released 2-stage model, perturbed weights, ours vs transformers: fp32 embeddings
               within 1e-4 with TF32 off on both; bf16 deviation reported   (accel_correctness)
  encoder      image-encoder forward at 224, batch 256: img/s fp32 and bf16 vs transformers
               fp32 and bf16 autocast                                         (accel_encoder)
  segmentation 1,024 VOC-sized JPEGs of six aspect ratios made from the shared VOC sample, the
               official protocol, host decode + resize + window preparation on one thread per
               core: images/s, windows/s, device-waits-for-host share, bf16 vs fp32 labels
                                                                              (accel_segmentation)
  train        gcc_yfcc recipe (K=3, text 77) bf16 at the largest batch that fits, with and
               without remat: samples/s, MFU, peak memory; transformers' plain step at the same
               batch                                                          (accel_train)
  input        the training input pipeline with 1, 4 and 16 workers            (accel_input)
Designed to finish in under 8 minutes on one H200 (most of it compiles). ``--smoke`` runs every
part on CPU with the tiny model and small sizes in seconds (``make test`` runs it).

Here (CPU):
  .venv/bin/python experiments/benchmarks/accelerator.py --smoke

On the GPU machine (Python 3.12 with jax[cuda], flax, optax, orbax, chex, torch, transformers,
opencv, tensorboard installed). Prepare here once, in the repo root (both folders are ignored):
  echo /.whl/ >> .git/info/exclude; echo /.bench_data/ >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl ml_collections==1.1.0 grain==0.2.18 array-record==0.8.6 portpicker==1.6.0 \
    ftfy==6.3.1 wcwidth==0.9.4 textblob==0.20.1 nltk==3.10.4
  mkdir -p .bench_data && cp -r ../shared/data/VOCdevkit .bench_data/
then run there (carry: .whl, .bench_data; timeout 600 s):
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 &&
  python3 experiments/benchmarks/accelerator.py --voc_root .bench_data/VOCdevkit \
    --out_dir $OUT && cp $OUT/accelerator_*.json $OUT/accelerator_*.md .
and commit the two result files under experiments/benchmarks/results/. A part that fails is
recorded with its error and the others still run; ``--parts`` reruns a subset.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PARTS = ("correctness", "encoder", "segmentation", "train", "input")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--smoke", action="store_true", help="CPU, tiny model, seconds")
  p.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {PARTS}")
  p.add_argument("--voc_root", default=None,
                 help="VOC sample (default: ../shared/data/VOCdevkit, else .bench_data/VOCdevkit)")
  p.add_argument("--out_dir", default=os.path.join(HERE, "results"))
  p.add_argument("--tag", default=None, help="result file suffix (default: smoke or the device)")
  args = p.parse_args(argv)
  parts = [x.strip() for x in args.parts.split(",") if x.strip()]
  unknown = sorted(set(parts) - set(PARTS))
  if unknown:
    p.error(f"--parts: unknown {unknown}; expected names from {list(PARTS)}")
  args.parts = parts
  return args


def _voc_root(arg: str | None) -> str:
  candidates = [arg] if arg else [os.path.join(os.path.dirname(REPO), "shared", "data", "VOCdevkit"),
                                  os.path.join(REPO, ".bench_data", "VOCdevkit")]
  for c in candidates:
    if c and os.path.isdir(os.path.join(c, "VOC2012")):
      return os.path.abspath(c)
  raise SystemExit(f"error: no VOC sample (a folder holding VOC2012/) at {candidates}; pass "
                   "--voc_root")


def main(argv=None) -> int:
  args = parse_args(argv)
  if args.smoke:  # compiles dominate a smoke run: XLA's cheapest pipeline is enough there
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the device
  sys.path[:0] = [HERE, REPO]
  import accel_segmentation  # pylint: disable=g-import-not-at-top
  accel_segmentation.VOC_ROOT = _voc_root(args.voc_root)
  import torch  # pylint: disable=g-import-not-at-top
  import accel_settings  # pylint: disable=g-import-not-at-top
  from bench_common import machine, write_json  # pylint: disable=g-import-not-at-top
  import accel_report as report  # pylint: disable=g-import-not-at-top
  settings = accel_settings.SMOKE if args.smoke else accel_settings.FULL
  if args.smoke:  # torch's spinning OpenMP threads stall for seconds on a shared small CPU
    torch.set_num_threads(1)
  device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
  results = {"machine": machine(), "smoke": args.smoke, "torch_device": device,
             "settings": {k: v for k, v in vars(settings).items()}, "seconds": {}}
  start = time.perf_counter()
  hf = None
  with tempfile.TemporaryDirectory() as tmp:
    for part in args.parts:
      t = time.perf_counter()
      print(f"== {part}", flush=True)
      try:
        if hf is None:
          import accel_correctness  # pylint: disable=g-import-not-at-top
          hf = accel_correctness.reference_model(settings.hf_preset, device)
        results[part] = _run_part(part, settings, device, hf, os.path.join(tmp, part))
      except Exception as e:  # pylint: disable=broad-except  # record it, run the other parts
        traceback.print_exc()
        results[part] = {"error": f"{type(e).__name__}: {e}"}
      results["seconds"][part] = time.perf_counter() - t
      print(f"== {part}: {results['seconds'][part]:.1f}s", flush=True)
  results["seconds"]["total"] = time.perf_counter() - start
  tag = args.tag or ("smoke" if args.smoke else report.device_tag(results["machine"]))
  path = os.path.join(args.out_dir, f"accelerator_{tag}")
  write_json(path + ".json", results)
  with open(path + ".md", "w") as f:
    f.write(report.markdown(results))
  print(report.markdown(results))
  failed = [p for p in args.parts if "error" in results[p]]
  return 1 if failed else 0


def _run_part(part: str, settings, device: str, hf, tmp: str) -> dict:
  os.makedirs(tmp, exist_ok=True)
  if part == "correctness":
    import accel_correctness  # pylint: disable=g-import-not-at-top
    return accel_correctness.run(settings, device, hf)
  if part == "encoder":
    import accel_encoder  # pylint: disable=g-import-not-at-top
    return accel_encoder.run(settings, device, hf)
  if part == "segmentation":
    import accel_segmentation  # pylint: disable=g-import-not-at-top
    return accel_segmentation.run(settings, hf.cpu(), tmp)
  if part == "train":
    import accel_train  # pylint: disable=g-import-not-at-top
    hf.cpu()  # the train part builds its own models; free the device
    return accel_train.run(settings)
  import accel_input  # pylint: disable=g-import-not-at-top
  return accel_input.run(settings, tmp)


if __name__ == "__main__":
  sys.exit(main())
