"""Model speed against transformers' GroupViT (torch), same machine, same run, same weights.

Times (default released 2-stage config, fp32, random weights shared by both):
  1. image-encoder forward to the projected embedding, batch 8, 224x224;
  2. a full training step: image + text forward (train mode: gumbel assignment, BatchNorm batch
     statistics), the symmetric contrastive loss, backward, AdamW; batch 8, text length 77.
transformers has no stochastic depth, so ours runs with drop_path_rate=0 here (same compute).
The sides alternate call by call (``bench_common.alternate``): min and median of each.

    python experiments/benchmarks/bench_model.py [--batch 8] [--iters 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import alternate, machine, print_table, write_json  # noqa: E402


def _models():
  """transformers' model with random weights and ours loaded from its save_pretrained."""
  import dataclasses
  import torch
  import transformers
  import groupvit_jax as gv
  from groupvit_jax.convert.hf_config import from_hf
  torch.manual_seed(0)
  hf = transformers.GroupViTModel(transformers.GroupViTConfig())
  cfg = from_hf(hf.config.to_dict())
  cfg = cfg.replace(vision=dataclasses.replace(cfg.vision, drop_path_rate=0.0))  # as transformers
  with tempfile.TemporaryDirectory() as d:
    hf.save_pretrained(d)
    ours = gv.load_pretrained(d, config=cfg)
  return hf, ours


def torch_runners(hf, x, ids) -> dict:
  """transformers' forward and train step as zero-argument callables (each waits for its result)."""
  import torch
  pixels = torch.tensor(x).permute(0, 3, 1, 2).contiguous()
  tokens = torch.tensor(ids, dtype=torch.long)
  opt = torch.optim.AdamW(hf.parameters(), lr=1e-5, weight_decay=0.05)

  def forward():
    hf.eval()
    with torch.no_grad():
      return hf.get_image_features(pixels)

  def step():
    hf.train()
    out = hf(input_ids=tokens, pixel_values=pixels, return_loss=True)
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(out.loss)

  return {"forward": forward, "train": step}


def jax_runners(model, x, ids) -> dict:
  """Our jitted forward and train step as zero-argument callables (each waits for its result)."""
  import jax
  import optax
  from flax import nnx
  from groupvit_jax import losses
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  xj, idj = jax.device_put(x), jax.device_put(ids)

  @jax.jit
  def forward(params, rest, x):
    return nnx.merge(graphdef, params, rest).encode_image(x)["image_x"]

  tx = optax.adamw(1e-5, weight_decay=0.05)
  opt_state = tx.init(params)

  def loss_fn(params, rest, x, ids, key):
    m = nnx.merge(graphdef, params, rest, copy=True)
    k1, k2 = jax.random.split(key)
    enc = m.encode_image(x, train=True, rngs=nnx.Rngs(gumbel=k1, drop_path=k2))
    loss = losses.contrastive_loss(enc["image_x"], m.encode_text(ids, train=True), m.scale())
    return loss, nnx.state(m, nnx.BatchStat)

  @jax.jit
  def step(params, rest, opt_state, x, ids, key):
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, x, ids, key)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), stats, opt_state, loss

  state = {"params": params, "rest": rest, "opt": opt_state, "i": 0}

  def run_step():
    key = jax.random.key(state["i"])
    state["params"], stats, state["opt"], loss = step(state["params"], state["rest"], state["opt"],
                                                      xj, idj, key)
    nnx.update(state["rest"], stats)
    state["i"] += 1
    return float(loss)

  return {"forward": lambda: jax.block_until_ready(forward(params, rest, xj)), "train": run_step}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--iters", type=int, default=5)
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                    "model_speed.json"))
  args = parser.parse_args(argv)
  import torch
  torch.set_num_threads(os.cpu_count())
  import groupvit_jax as gv
  rng = np.random.RandomState(0)
  x = rng.randn(args.batch, 224, 224, 3).astype(np.float32)
  ids = gv.tokenize([f"a photo of {i} red squares" for i in range(args.batch)])
  hf, ours = _models()
  runners = {"transformers": torch_runners(hf, x, ids), "ours": jax_runners(ours, x, ids)}
  b = args.batch
  rows, results = [], {}
  for key, name in (("forward", "image encoder forward (224)"),
                    ("train", "train step (fwd+bwd+AdamW, text 77)")):
    times = alternate({side: r[key] for side, r in runners.items()}, warmup=2, repeats=args.iters)
    t, j = times["transformers"], times["ours"]
    t_ips, j_ips = b / t["median_s"], b / j["median_s"]
    rows.append([name, b, f"{t_ips:.2f}", f"{j_ips:.2f}", f"{j_ips / t_ips:.2f}x"])
    results[name] = {"batch": b, "torch_transformers_img_per_s": t_ips,
                     "groupvit_jax_img_per_s": j_ips, "ratio": j_ips / t_ips,
                     "ratio_best": t["min_s"] / j["min_s"], "torch": t, "jax": j}
  print_table(rows, ["what", "batch", "transformers (torch) img/s", "groupvit_jax img/s", "ratio"])
  write_json(args.out, {"machine": machine(), "results": results,
                        "config": "released 2-stage (GroupViTConfig()), fp32, random weights"})


if __name__ == "__main__":
  main()
