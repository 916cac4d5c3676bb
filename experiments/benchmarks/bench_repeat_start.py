"""Repeat-start benchmark: wall time of the first and of the second identical
`groupvit-jax segment` call on one image, each a fresh process, with a released-size model
(random weights) and a fresh on-disk cache. The second call should take at most 40% of the
first: it reads compiled programs and class embeddings from the cache instead of making them.

  python experiments/benchmarks/bench_repeat_start.py [--image IMG] [--runs 2]

Writes experiments/benchmarks/results/repeat_start_cpu.json (machine, load average, times).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import machine, write_json  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_IMAGE = os.path.join(os.path.dirname(REPO), "shared", "data", "VOCdevkit", "VOC2012",
                             "JPEGImages", "2007_000033.jpg")


def _released_size_checkpoint(path: str) -> None:
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from groupvit_jax import GroupViT, save_pretrained  # pylint: disable=g-import-not-at-top
  from groupvit_jax.model_config import gcc_yfcc  # pylint: disable=g-import-not-at-top
  save_pretrained(GroupViT(gcc_yfcc(), rngs=nnx.Rngs(0)), path)


def _segment(checkpoint, image, output, cache_dir, pycache) -> float:
  env = dict(os.environ, GROUPVIT_JAX_CACHE_DIR=cache_dir, PYTHONPYCACHEPREFIX=pycache)
  # Python's own bytecode cache on, as in a normal install (pip compiles it; the project's
  # Makefile and some shells turn it off, which adds ~20 s of source compiling to every run).
  env.pop("PYTHONDONTWRITEBYTECODE", None)
  cmd = [sys.executable, "-m", "groupvit_jax.cli.main", "segment", "--checkpoint", checkpoint,
         "--image", image, "--classes", "aeroplane,sky,grass,person,building", "--output",
         output, "--quiet"]
  start = time.perf_counter()
  subprocess.run(cmd, env=env, check=True, cwd=REPO)
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--image", default=DEFAULT_IMAGE)
  parser.add_argument("--runs", type=int, default=2, help="identical calls after the first")
  parser.add_argument("--output", default=os.path.join(REPO, "experiments", "benchmarks",
                                                       "results", "repeat_start_cpu.json"))
  args = parser.parse_args()
  if not os.path.isfile(args.image):  # no shared sample: a synthetic photo-sized image
    from PIL import Image  # pylint: disable=g-import-not-at-top
    args.image = os.path.join(tempfile.mkdtemp(), "synthetic.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (375, 500, 3), np.uint8)).save(
        args.image)
  with tempfile.TemporaryDirectory() as tmp:
    ckpt = os.path.join(tmp, "ckpt")
    _released_size_checkpoint(ckpt)
    cache, pycache = os.path.join(tmp, "cache"), os.path.join(tmp, "pycache")
    # Warm-up with the caches off: writes Python's bytecode only, so that every timed call
    # starts like a call after `pip install`.
    _segment(ckpt, args.image, os.path.join(tmp, "out_warmup"), "", pycache)
    uncached = _segment(ckpt, args.image, os.path.join(tmp, "out_nocache"), "", pycache)
    times = [_segment(ckpt, args.image, os.path.join(tmp, f"out{i}"), cache, pycache)
             for i in range(1 + args.runs)]
  result = {
      "what": "wall time of `groupvit-jax segment` on one image, each call a fresh process; "
              "released-size model (gcc_yfcc config, random weights), 5 classes, slide mode, "
              "all three PNGs",
      "image": os.path.basename(args.image), "first_s": round(times[0], 2),
      "repeat_s": [round(t, 2) for t in times[1:]],
      "second_over_first": round(times[1] / times[0], 3),
      "cache_off_s": round(uncached, 2), "load_average_after": os.getloadavg(),
      "python_bytecode": "cached (a warm-up call wrote it; PYTHONDONTWRITEBYTECODE unset)",
      "machine": machine(),
      "note": "shared machine: other jobs ran on the same cores (see load_average_after)",
  }
  print(result)
  write_json(args.output, result)


if __name__ == "__main__":
  main()
