"""The CPU goals against transformers' GroupViT (torch, oneDNN), same weights, same process,
sides alternated and repeated (``bench_common.alternate``), min and median reported:

  forward    image-encoder forward to the projected embedding, batch 8 at 224 px;
  window     one 448x448 segmentation window: our jitted window function (model + the
             protocol's group/class tables) vs transformers' vision forward with attentions +
             projection (the part a segmentation needs), batch 1;
  train      train step, plain contrastive loss (K=0), batch 8, text 77;
  train_k3   train step with the multi-label loss (K=3: 4x the texts), batch 8.
fp32 by default (``--dtypes float32,bfloat16`` adds bf16 compute / torch bf16 autocast; the
train steps stay fp32). The released 2-stage configuration with drop-path off (transformers
has none).

  .venv/bin/python experiments/benchmarks/cpu_vs_torch.py [--parts forward,window,train,train_k3]
      [--repeats 5] [--threads 0] [--out experiments/benchmarks/results/cpu_vs_torch.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(os.path.dirname(HERE))]
from bench_common import alternate, machine, ratio, write_json  # noqa: E402

PARTS = ("forward", "window", "train", "train_k3")


def _pair(image_size: int, dtype: str):
  """transformers' model (eval) and ours loaded from its weights."""
  import dataclasses
  import torch
  import transformers
  import groupvit_jax as gv
  from groupvit_jax.convert.hf_config import from_hf
  torch.manual_seed(0)
  hf = transformers.GroupViTModel(transformers.GroupViTConfig(
      vision_config=dict(image_size=image_size))).eval()
  cfg = from_hf(hf.config.to_dict())
  cfg = cfg.replace(vision=dataclasses.replace(cfg.vision, drop_path_rate=0.0), dtype=dtype)
  with tempfile.TemporaryDirectory() as d:
    hf.save_pretrained(d)
    ours = gv.load_pretrained(d, config=cfg)
  return hf, ours


def _torch_call(fn, bf16: bool):
  import torch

  def run():
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
      return fn()
  return run


def forward(dtype: str):
  """(runners, our compiled program): the image encoder to the projected embedding."""
  import jax
  import torch
  from flax import nnx
  hf, ours = _pair(224, dtype)
  x = np.random.RandomState(0).randn(8, 224, 224, 3).astype(np.float32)
  graphdef, state = nnx.split(ours)
  xj, pixels = jax.device_put(x), torch.tensor(x).permute(0, 3, 1, 2).contiguous()
  fn = jax.jit(lambda st, x: nnx.merge(graphdef, st).encode_image(x)["image_x"])
  compiled = fn.lower(state, xj).compile()
  return ({"ours": lambda: jax.block_until_ready(compiled(state, xj)),
           "transformers": _torch_call(lambda: hf.get_image_features(pixels),
                                       dtype == "bfloat16")}, compiled)


def window(dtype: str):
  """(runners, our compiled program): one 448 window, the model and the protocol's tables."""
  import jax
  import jax.numpy as jnp
  import torch
  from flax import nnx
  from groupvit_jax.segmentation import dense
  hf, ours = _pair(448, dtype)
  x = np.random.RandomState(0).randn(1, 448, 448, 3).astype(np.float32)
  text = np.random.RandomState(1).randn(20, ours.config.proj_dim).astype(np.float32)
  text /= np.linalg.norm(text, axis=-1, keepdims=True)
  graphdef, state = nnx.split(ours)
  fn = jax.jit(lambda st, x, t: dense.window_predict(nnx.merge(graphdef, st), x, t,
                                                     jnp.float32(0.95)))
  xj, tj = jax.device_put(x), jax.device_put(text)
  compiled = fn.lower(state, xj, tj).compile()
  pixels = torch.tensor(x).permute(0, 3, 1, 2).contiguous()

  def theirs():
    out = hf.vision_model(pixels, output_attentions=True)
    return hf.visual_projection(out.pooler_output)

  return ({"ours": lambda: jax.block_until_ready(compiled(state, xj, tj)),
           "transformers": _torch_call(theirs, dtype == "bfloat16")}, compiled)


def train(k: int):
  """(runners, our compiled program): one update of the released recipe's step, batch 8."""
  import bench_train
  cfg = bench_train.model_config("gcc_yfcc", k, "float32")
  data = bench_train.batch_arrays(8, cfg.vision.img_size, k, cfg.text.context_length)
  ours, info = bench_train.build_ours(cfg, data)
  theirs, _ = bench_train.build_torch(cfg, data, multi_label=k > 0)
  return {"ours": ours, "transformers": theirs}, info["compiled"]


def build(part: str, dtype: str):
  """The two sides of ``part`` (a name in PARTS) and our compiled program."""
  if part.startswith("train"):
    return train(3 if part == "train_k3" else 0)
  return (forward if part == "forward" else window)(dtype)


NAMES = {"forward": "image encoder forward, batch 8, 224 px",
         "window": "one 448x448 segmentation window, batch 1",
         "train": "train step, plain contrastive (K=0), batch 8, text 77",
         "train_k3": "train step, multi-label K=3 (4x texts), batch 8, text 77"}
GOALS = {"forward": 1.2, "window": 1.2, "train": 1.1, "train_k3": 1.0}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--parts", default=",".join(PARTS))
  p.add_argument("--dtypes", default="float32")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--threads", type=int, default=0,
                 help="cores of both sides (0: all, the libraries' defaults; n: the process is "
                      "pinned to n cores and torch uses n threads)")
  p.add_argument("--out", default=os.path.join(HERE, "results", "cpu_vs_torch.json"))
  args = p.parse_args(argv)
  if args.threads:  # before JAX starts its CPU backend
    import bench_train
    bench_train.set_threads(args.threads)
  rows = []
  for part in [x for x in args.parts.split(",") if x]:
    if part not in PARTS:
      p.error(f"--parts: unknown {part!r}; expected names from {list(PARTS)}")
    for dtype in (args.dtypes.split(",") if part in ("forward", "window") else ["float32"]):
      t = alternate(build(part, dtype)[0], warmup=1, repeats=args.repeats)
      r = ratio(t["transformers"], t["ours"])
      rows.append({"part": part, "name": NAMES[part], "dtype": dtype, "ours": t["ours"],
                   "transformers": t["transformers"], "ratio": r,
                   "goal": GOALS[part] if dtype == "float32" else None})
      print(f"{NAMES[part]}, {dtype}: ours {t['ours']['min_s']:.3f}/{t['ours']['median_s']:.3f} s, "
            f"transformers {t['transformers']['min_s']:.3f}/{t['transformers']['median_s']:.3f} s "
            f"(min/median); ours/transformers {r['min']:.2f}x best, {r['median']:.2f}x median"
            f"{' (machine busy)' if r['busy'] else ''}", flush=True)
  write_json(args.out, {"machine": machine(), "rows": rows, "args": vars(args),
                        "method": "sides alternated call by call (ABBA), warm-up 1, then "
                                  f"{args.repeats} repeats; ratio = transformers time / ours"})
  return 0


if __name__ == "__main__":
  sys.exit(main())
