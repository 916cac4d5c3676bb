"""Zero-shot segmentation speed: our jitted pipeline against transformers' GroupViT, same run.

Measures, on whatever JAX backend is present (CPU here, GPU with one command elsewhere):
  1. per-window forward time at 448x448: our jitted window function (model + group/class
     tables of the official protocol) against transformers' ``GroupViTModel`` built with
     ``image_size=448`` (its vision forward with ``output_attentions=True`` + visual projection,
     the part a segmentation needs; and its ``output_segmentation=True`` forward with 20
     prompts at batch 1), in float32 and bfloat16, at several batch sizes, interleaved;
  2. end-to-end evaluation throughput (images/s, windows/s) on the shared VOC sample under the
     official ``groupvit`` protocol, after a warm-up pass that compiles every bucket.

Weights: a checkpoint if given, else a random init of the released architecture (timing does
not depend on the values); the transformers model is a random init of the same architecture.

  python experiments/benchmarks/bench_segmentation.py --output experiments/benchmarks/results/bench_segmentation_cpu.json
  # on a GPU machine (torch reference on CUDA when available):
  python experiments/benchmarks/bench_segmentation.py --dataset-repeats 40 --batches 1,8,32 \
      --images-per-batch 32 --window-chunk 64 --output experiments/benchmarks/results/bench_segmentation_gpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--checkpoint", default=None, help="default: random init of gcc_yfcc")
  p.add_argument("--voc-root", default=str(REPO.parent / "shared" / "data" / "VOCdevkit"))
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--batches", default="1,4", help="windows per forward for the per-window timing")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--dataset-repeats", type=int, default=1,
                 help="pass over the VOC sample this many times in the timed run")
  p.add_argument("--images-per-batch", type=int, default=None,
                 help="default: the Segmenter's (1 on CPU, 8 on accelerators)")
  p.add_argument("--window-chunk", type=int, default=8)
  p.add_argument("--skip-torch", action="store_true")
  p.add_argument("--torch-device", default="auto", help="auto (cuda if available), cpu, cuda")
  p.add_argument("--output", default=str(REPO / "experiments" / "benchmarks" / "results" / "bench_segmentation.json"))
  return p.parse_args()


def machine_info() -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return {"cpu": cpu, "cpu_count": os.cpu_count(), "jax": jax.__version__,
          "jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in jax.devices()],
          "load_average": os.getloadavg()}


def timed(fn, sync) -> float:
  start = time.perf_counter()
  sync(fn())
  return time.perf_counter() - start


def main() -> int:
  args = parse_args()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top

  from groupvit_jax import GroupViT, load_pretrained  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation import dense  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.datasets import SegDataset, open_dataset  # pylint: disable=g-import-not-at-top
  from groupvit_jax.class_embeddings import class_embeddings  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.protocols import GROUPVIT  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.benchmark import evaluate_segmentation  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.segmenter import Segmenter  # pylint: disable=g-import-not-at-top
  from groupvit_jax.model_config import gcc_yfcc  # pylint: disable=g-import-not-at-top

  dtypes = args.dtypes.split(",")
  batches = [int(b) for b in args.batches.split(",")]
  info = machine_info()
  print(f"machine: {info}", flush=True)

  def make_model(dtype):
    if args.checkpoint:
      return load_pretrained(args.checkpoint, dtype=dtype)
    return GroupViT(gcc_yfcc().replace(dtype=dtype), rngs=nnx.Rngs(0))

  models = {d: make_model(d) for d in dtypes}
  dataset = open_dataset("voc", args.voc_root)
  text = class_embeddings(models["float32" if "float32" in models else dtypes[0]],
                          dataset.prompt_classes)
  rng = np.random.default_rng(0)
  runs: dict[str, list[float]] = {}
  calls = {}

  # ---- our window function --------------------------------------------------------------------
  for dtype, model in models.items():
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda st, x, g=graphdef: dense.window_predict(
        nnx.merge(g, st), x, jnp.asarray(text), jnp.float32(0.95)))
    for b in batches:
      x = jnp.asarray(rng.normal(size=(b, 448, 448, 3)), jnp.float32)
      t0 = time.perf_counter()
      jax.block_until_ready(fn(state, x))
      print(f"jax {dtype} batch {b}: compiled in {time.perf_counter() - t0:.1f}s", flush=True)
      calls[f"jax {dtype} b{b}"] = (lambda fn=fn, st=state, x=x: fn(st, x), jax.block_until_ready, b)

  # ---- transformers reference -----------------------------------------------------------------
  torch_info = None
  if not args.skip_torch:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    device = args.torch_device
    if device == "auto":
      device = "cuda" if torch.cuda.is_available() else "cpu"
    hf = transformers.GroupViTModel(transformers.GroupViTConfig(
        vision_config=dict(image_size=448))).eval().to(device)
    sync = (lambda _: torch.cuda.synchronize()) if device == "cuda" else (lambda _: None)
    torch_info = {"torch": torch.__version__, "transformers": transformers.__version__,
                  "device": device, "threads": torch.get_num_threads()}

    def hf_vision(x, bf16):
      with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16,
                                           enabled=bf16):
        out = hf.vision_model(x, output_attentions=True)
        return hf.visual_projection(out.pooler_output)

    for b in batches:
      x = torch.randn(b, 3, 448, 448, device=device)
      for bf16 in (False, True):
        name = f"torch {'bfloat16' if bf16 else 'float32'} b{b}"
        if (not bf16 and "float32" not in dtypes) or (bf16 and "bfloat16" not in dtypes):
          continue
        hf_vision(x, bf16)  # warm-up
        calls[name] = (lambda x=x, bf16=bf16: hf_vision(x, bf16), sync, b)
    ids = torch.randint(0, 49406, (20, 77), device=device)
    ids[:, 10] = 49407
    x1 = torch.randn(1, 3, 448, 448, device=device)

    def hf_seg():
      with torch.no_grad():
        return hf(input_ids=ids, pixel_values=x1, output_segmentation=True).segmentation_logits

    hf_seg()
    calls["torch float32 output_segmentation b1"] = (hf_seg, sync, 1)

  for r in range(args.repeats):  # interleaved, so load from other processes hits all alike
    for name, (fn, sync, _) in calls.items():
      runs.setdefault(name, []).append(timed(fn, sync))
    print(f"repeat {r + 1}/{args.repeats} done", flush=True)
  per_window = {name: {"batch": calls[name][2],
                       "best_s": min(t) / calls[name][2],
                       "median_s": statistics.median(t) / calls[name][2]} for name, t in runs.items()}

  # ---- end to end on the VOC sample -------------------------------------------------------------
  end_to_end = {}
  sample = dataset
  if args.dataset_repeats > 1:
    repeated = [dataclasses.replace(s, key=f"{s.key}#{i}")  # keys must be unique
                for i, s in enumerate(dataset.samples * args.dataset_repeats)]
    sample = SegDataset(dataset.name, dataset.classes, dataset.root, repeated)
  labels_by_dtype = {}
  for dtype, model in models.items():
    seg = Segmenter.from_protocol(model, GROUPVIT, dataset.prompt_classes, 0.95,
                                  text_embeddings=text, images_per_batch=args.images_per_batch)
    num_windows = sum(len(seg.prepare(ex.image).windows) for ex in dataset) * args.dataset_repeats
    kw = dict(images_per_batch=args.images_per_batch, window_chunk=args.window_chunk,
              progress=False, text_embeddings=text)
    warm = evaluate_segmentation(model, dataset, GROUPVIT, **kw)  # compiles every bucket
    res = evaluate_segmentation(model, sample, GROUPVIT, **kw)
    end_to_end[dtype] = {"protocol": GROUPVIT.name, "images": res["num_images"],
                         "windows": num_windows, "seconds": res["seconds"],
                         "images_per_second": res["num_images"] / res["seconds"],
                         "windows_per_second": num_windows / res["seconds"],
                         "first_pass_seconds_with_compiles": warm["seconds"],
                         "images_per_batch": seg.images_per_batch, "mIoU": res["mIoU"]}
    labels_by_dtype[dtype] = {ex.key: seg.segment(ex.image) for ex in dataset.limit(5)}
  agreement = None
  if "float32" in labels_by_dtype and "bfloat16" in labels_by_dtype:
    a, b = labels_by_dtype["float32"], labels_by_dtype["bfloat16"]
    agreement = float(np.mean([np.mean(a[k] == b[k]) for k in a]))

  # ---- report ---------------------------------------------------------------------------------
  rows = []
  for name, r in per_window.items():
    rows.append((name, r["batch"], r["best_s"], r["median_s"]))
  ratios = {}
  for dtype in dtypes:
    for b in batches:
      ours = per_window.get(f"jax {dtype} b{b}")
      for ref_name in (f"torch {dtype} b{b}", "torch float32 b1", f"torch {dtype} b1"):
        ref = per_window.get(ref_name)
        if ours and ref:
          ratios[f"jax {dtype} b{b} vs {ref_name}"] = ref["best_s"] / ours["best_s"]
  print("\nper-window forward at 448x448 (seconds per window; best and median of "
        f"{args.repeats} interleaved runs)")
  print(f"{'configuration':<42} {'batch':>5} {'best':>8} {'median':>8}")
  for name, b, best, med in rows:
    print(f"{name:<42} {b:>5} {best:8.3f} {med:8.3f}")
  print("\nspeed-up (transformers time / ours, best times)")
  for k, v in ratios.items():
    print(f"  {k:<60} {v:5.2f}x")
  print(f"\nend to end, VOC sample, protocol {GROUPVIT.name} (after a warm-up pass)")
  for dtype, r in end_to_end.items():
    print(f"  {dtype:<9} {r['images']} images, {r['windows']} windows: "
          f"{r['images_per_second']:.2f} images/s, {r['windows_per_second']:.2f} windows/s "
          f"(first pass with compiles {r['first_pass_seconds_with_compiles']:.1f}s)")
  if agreement is not None:
    print(f"  bfloat16 vs float32 label agreement on 5 images: {100 * agreement:.2f}%")
  result = {"machine": info, "torch": torch_info, "weights": args.checkpoint or "random init (gcc_yfcc)",
            "per_window": per_window, "speedups": ratios, "end_to_end": end_to_end,
            "bf16_vs_f32_label_agreement": agreement,
            "settings": {"images_per_batch": args.images_per_batch, "window_chunk": args.window_chunk,
                         "dataset_repeats": args.dataset_repeats, "repeats": args.repeats}}
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  with open(args.output, "w") as f:
    json.dump(result, f, indent=2)
  print(f"\nwrote {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
