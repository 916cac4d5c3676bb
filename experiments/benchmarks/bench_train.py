"""Training-step speed: ours (jax.jit, the trainer's step) vs transformers' GroupViT in torch,
same model config, same batch, same machine, same run.

Like with like. transformers' ``GroupViTModel(return_loss=True)`` computes only the plain
image-text contrastive loss, so two comparisons are made:
  K=0: ours without the multi-label loss  vs  transformers' forward with ``return_loss=True``;
  K=3: ours with the multi-label loss (caption + 3 prompts: 4x the text encoder load, one
       projector batch)  vs  transformers' vision + text towers called on the same 4x texts,
       with both losses written in torch from spec 3.1/3.2 (sharing ``logit_scale``).
Both sides then do backward, global-norm clipping at 5.0 and AdamW with weight decay. The model
is the released 2-stage config (``--model gcc_yfcc``) with stochastic depth off (transformers has
none); train mode (Gumbel hard assignment, BatchNorm batch statistics); text length 77.

The two sides alternate step by step (``bench_common.alternate``), so a drifting machine load
affects both alike.
Samples/s = batch / median step time. MFU = FLOPs of our step (XLA cost analysis of the lowered
global program; the same arithmetic serves for the torch row) x steps/s / peak FLOP/s; the peak is
known for common accelerators (see groupvit_jax/train/metrics.py) and unknown on CPU.

  PYTHONPATH=. python experiments/benchmarks/bench_train.py                 # CPU, batch 8, fp32
  PYTHONPATH=. python experiments/benchmarks/bench_train.py --batch 256 --dtype bfloat16  # GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import alternate  # noqa: E402  (sides alternated, busy machine flagged)



def batch_arrays(batch: int, image_size: int, k: int, length: int, seed: int = 0):
  from input_pipeline.synthetic import synthetic_batch
  return synthetic_batch(seed, 0, batch, image_size, 1 + k, length)


def model_config(name: str, k: int, dtype: str):
  from groupvit_jax import model_config as mc
  cfg = {"gcc_yfcc": mc.gcc_yfcc, "tiny": mc.tiny}[name]()
  vision = dataclasses.replace(cfg.vision, drop_path_rate=0.0)
  return cfg.replace(vision=vision, multi_label=k, dtype=dtype)


def build_ours(cfg, data):
  """Our compiled step on ``data``: returns (run, info); ``run()`` does one update and waits."""
  import jax
  import ml_collections
  from groupvit_jax import optim
  from groupvit_jax.sharding import DEFAULT_RULES
  from groupvit_jax.train import metrics as metrics_lib, state as state_lib, step as step_lib
  from input_pipeline import pipeline
  b = len(data["image"])
  oc = ml_collections.ConfigDict(dict(base_lr=1.6e-3, warmup_lr=4e-6, min_lr=4e-5,
                                      reference_batch=4096, warmup_steps=10, weight_decay=0.05,
                                      b1=0.9, b2=0.999, eps=1e-8, clip_norm=5.0))
  tx, schedule = optim.make_optimizer(oc, global_batch=b, total_steps=1000)
  mesh = state_lib.make_mesh((("data", -1),))
  graphdef, state, shardings = state_lib.create_train_state(cfg, tx, mesh, DEFAULT_RULES, 0)
  b_, s, _, _ = data["image"].shape
  _, texts, length = data["text"].shape
  ic = ml_collections.ConfigDict(dict(batch_size=b_, image_size=s, multi_label=texts - 1,
                                      context_length=length))  # what pipeline.batch_spec reads
  bsh = pipeline.batch_shardings(mesh, DEFAULT_RULES, ic)
  step = step_lib.make_train_step(graphdef=graphdef, tx=tx, schedule=schedule, shardings=shardings,
                                  batch_shardings=bsh, mesh=mesh, rules=DEFAULT_RULES,
                                  multi_label=cfg.multi_label, multi_label_weight=1.0)
  batch = {k: jax.device_put(v, bsh[k]) for k, v in data.items()}
  t0 = time.perf_counter()
  lowered = step.lower(state, batch)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  holder = {"state": state}

  def run():
    holder["state"], m = compiled(holder["state"], batch)
    jax.block_until_ready(m["loss"])

  return run, {"compile_s": compile_s, "flops": metrics_lib.step_flops(lowered),
               "compiled_flops": metrics_lib.step_flops(compiled), "compiled": compiled,
               "peak": metrics_lib.peak_flops_per_device(), "devices": jax.device_count(),
               "device_kind": jax.devices()[0].device_kind}


def build_torch(cfg, data, *, multi_label: bool):
  """transformers' GroupViT step on ``data``: returns (run, info)."""
  import torch
  import torch.nn.functional as F
  import transformers
  from groupvit_jax.convert.hf_config import to_hf
  torch.manual_seed(0)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  hf_cfg = to_hf(cfg.replace(dtype="float32"))
  hf = transformers.GroupViTModel(transformers.GroupViTConfig(**hf_cfg)).to(device).train()
  opt = torch.optim.AdamW(hf.parameters(), lr=1e-5, betas=(0.9, 0.999), eps=1e-8,
                          weight_decay=0.05)
  pixels = torch.tensor(data["image"]).permute(0, 3, 1, 2).contiguous().to(device)
  text = torch.tensor(data["text"], dtype=torch.long).to(device)  # [B, 1+K, L]
  b, n, length = text.shape
  autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda"
              and cfg.dtype == "bfloat16" else torch.autocast("cpu", enabled=False))

  def losses():
    if not multi_label:  # transformers' own loss
      return hf(input_ids=text[:, 0], pixel_values=pixels, return_loss=True).loss
    zi = F.normalize(hf.visual_projection(hf.vision_model(pixel_values=pixels).pooler_output), dim=-1)
    zt = hf.text_projection(hf.text_model(input_ids=text.reshape(b * n, length)).pooler_output)
    zt = F.normalize(zt, dim=-1).reshape(b, n, -1)
    s = hf.logit_scale.exp().clamp(max=100)
    labels = torch.arange(b, device=device)
    logits = s * zi @ zt[:, 0].T
    loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    k = n - 1
    prompts = zt[:, 1:].reshape(b * k, -1)
    owner = labels.repeat_interleave(k)
    li = s * zi @ prompts.T  # [B, B*K]
    target = (owner[None, :] == labels[:, None]).float() / k
    loss_img = torch.sum(-target * F.log_softmax(li, dim=-1), dim=-1).mean()
    return loss + 0.5 * (loss_img + F.cross_entropy(li.T, owner))

  def run():
    with autocast:
      loss = losses()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(hf.parameters(), 5.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if device == "cuda":
      torch.cuda.synchronize()

  return run, {"device": device, "threads": torch.get_num_threads()}


def set_threads(n: int) -> None:
  """Before JAX starts its CPU backend: both sides get ``n`` cores. The process is pinned to
  ``n`` of its allowed cores (XLA:CPU sizes its thread pool from the affinity mask) and torch
  uses ``n`` threads. ``--xla_cpu_multi_thread_eigen=false`` is not used: with JAX 0.10.2 it
  left XLA on every core (measured: a 2048^3 matmul took the same 62 ms with and without it,
  8.1 s of CPU time over 5.1 s of wall time), so a "1 thread" run compared two cores with one."""
  cores = sorted(os.sched_getaffinity(0))
  if n > len(cores):
    raise ValueError(f"--threads {n}: this process may use only {len(cores)} cores ({cores})")
  os.sched_setaffinity(0, set(cores[:n]))
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(n)


def machine() -> dict:
  import jax
  info = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
          "date": datetime.date.today().isoformat(), "jax": jax.__version__,
          "jax_devices": [str(d) for d in jax.devices()]}
  try:
    with open("/proc/cpuinfo") as f:
      info["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  try:
    with open("/proc/loadavg") as f:
      info["load_average_at_start"] = f.read().split()[:3]
  except OSError:
    pass
  return info


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="gcc_yfcc", choices=("gcc_yfcc", "tiny"))
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--warmup", type=int, default=1)
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  parser.add_argument("--skip_torch", action="store_true")
  parser.add_argument("--threads", type=int, default=0,
                      help="CPU threads for both sides (0: library defaults). On a shared, "
                           "oversubscribed CPU, torch's 2-thread OpenMP can stall for seconds "
                           "per step; 1 gives stable numbers.")
  parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    "results", "train_step_speed.json"))
  args = parser.parse_args(argv)
  if args.threads:
    set_threads(args.threads)
  rows = []
  for k in (0, 3):
    cfg = model_config(args.model, k, args.dtype)
    data = batch_arrays(args.batch, cfg.vision.img_size, k, cfg.text.context_length)
    runners = {}
    runners["ours"], ours = build_ours(cfg, data)
    if not args.skip_torch:
      runners["torch"], ref = build_torch(cfg, data, multi_label=k > 0)
    times = {name: t["samples_s"]
             for name, t in alternate(runners, warmup=args.warmup, repeats=args.steps).items()}
    med = statistics.median(times["ours"])
    row = {"multi_label_K": k, "texts_per_image": 1 + k, "ours_step_s": med,
           "ours_step_min_s": min(times["ours"]),
           "ours_step_samples_s": times["ours"], "ours_samples_per_s": args.batch / med,
           "ours_compile_s": ours["compile_s"], "flops_per_step": ours["flops"],
           "device_kind": ours["device_kind"]}
    if ours["flops"]:
      row["ours_tflops_per_s"] = ours["flops"] / med / 1e12
      if ours["peak"]:
        row["ours_mfu"] = ours["flops"] / med / (ours["peak"] * ours["devices"])
    if not args.skip_torch:
      tmed = statistics.median(times["torch"])
      row.update(torch_step_s=tmed, torch_step_min_s=min(times["torch"]),
                 torch_step_samples_s=times["torch"],
                 torch_samples_per_s=args.batch / tmed, torch_device=ref["device"],
                 torch_threads=ref["threads"], speedup_ours_over_torch=tmed / med,
                 speedup_ours_over_torch_min=min(times["torch"]) / min(times["ours"]))
      if ours["flops"] and ours["peak"]:
        row["torch_mfu"] = ours["flops"] / tmed / (ours["peak"] * ours["devices"])
    rows.append(row)
  print(f"\ntrain step, model {args.model}, batch {args.batch}, {args.dtype}, text length "
        f"{cfg.text.context_length}, {args.steps} alternating steps (median / min seconds)")
  print(f"{'K':>2} {'texts/img':>9} {'ours s/step':>13} {'torch s/step':>13} {'ours img/s':>10} "
        f"{'torch img/s':>11} {'ours/torch (median, min)':>25} {'ours MFU':>9}")
  for r in rows:
    mfu = f"{100 * r['ours_mfu']:.1f}%" if "ours_mfu" in r else "n/a"
    torch_s = (f"{r['torch_step_s']:.3f}/{r['torch_step_min_s']:.3f}" if "torch_step_s" in r
               else "-")
    ratio = (f"{r['speedup_ours_over_torch']:.2f}x, {r['speedup_ours_over_torch_min']:.2f}x"
             if "torch_step_s" in r else "-")
    print(f"{r['multi_label_K']:>2} {r['texts_per_image']:>9} "
          f"{r['ours_step_s']:>6.3f}/{r['ours_step_min_s']:.3f} {torch_s:>13} "
          f"{r['ours_samples_per_s']:>10.2f} {r.get('torch_samples_per_s', float('nan')):>11.2f} "
          f"{ratio:>25} {mfu:>9}")
  payload = {"args": vars(args), "machine": machine(), "rows": rows,
             "method": "K=0: ours without multi-label vs transformers return_loss=True; K=3: ours "
                       "with multi-label vs transformers towers on the same 4x texts + spec 3.1/3.2 "
                       "losses in torch; both: backward, clip 5.0, AdamW; drop-path off."}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
