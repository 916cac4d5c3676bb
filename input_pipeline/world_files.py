"""Writing the synthetic shapes world to disk, in the formats the real code paths read:
training data as webdataset tar shards (img2dataset layout, read by the training pipeline) and
val/test splits in the generic folder segmentation layout (read by ``groupvit-jax evaluate
--dataset folder``).

    python -m input_pipeline.world_files --out data/shapes --train 20000 --val 200 --test 500
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import multiprocessing
import os

import numpy as np
from PIL import Image
from tqdm import tqdm

from input_pipeline import multilabel_prompts as prompts_lib
from input_pipeline.shard_writer import ShardWriter
from input_pipeline.synthetic_world import (COLORS, WORLDS, WorldConfig, any_colour_world,
                                            generate)

# Label colours of the saved masks (palette PNGs; the index is the label id).
_PALETTE = [0, 0, 0, 230, 25, 75, 60, 180, 75, 0, 130, 200, 255, 225, 25, 145, 30, 180]


def _png(array: np.ndarray, palette: list[int] | None = None) -> bytes:
  img = Image.fromarray(array)
  if palette is not None:
    img = img.convert("P")
    img.putpalette(palette + [0] * (768 - len(palette)))
  buf = io.BytesIO()
  img.save(buf, format="PNG")
  return buf.getvalue()


def _write_shard(job: tuple[str, WorldConfig, int, int, int]) -> str:
  """One shard: scenes ``start .. stop - 1`` of the train split, captions pre-tagged."""
  path, cfg, seed, start, stop = job
  with ShardWriter(path) as w:
    for i in range(start, stop):
      s = generate(cfg, seed, i, "train")
      meta = {"objects": [{"shape": o.shape, "color": o.color,
                           "visible": round(o.visible_fraction, 3)} for o in s.objects],
              "background": s.background,
              # What input_pipeline.extract_prompts would store: the tagger runs once here, not
              # at every epoch in the training loop (it costs ~6 ms a caption).
              prompts_lib.WORDS_FIELD: prompts_lib.prompt_words(s.caption)}
      w.write(f"{i:09d}", {"png": _png(s.image), "txt": s.caption, "json": meta})
  return path


def write_train_shards(out_dir: str, cfg: WorldConfig, seed: int, num: int,
                       shard_size: int = 1000, progress: bool = True,
                       workers: int | None = None) -> list[str]:
  """``num`` training scenes as ``out_dir/shapes-NNNNN.tar``: ``KEY.png``, ``KEY.txt`` (caption),
  ``KEY.json`` (the objects, for inspection, and the caption's prompt words, which the training
  pipeline reads instead of tagging again). Shards are written by ``workers`` processes (default:
  one per CPU); the samples do not depend on how many."""
  os.makedirs(out_dir, exist_ok=True)
  jobs = [(os.path.join(out_dir, f"shapes-{shard:05d}.tar"), cfg, seed, start,
           min(start + shard_size, num)) for shard, start in enumerate(range(0, num, shard_size))]
  workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
  bar = tqdm(total=num, desc="train shards", unit="img", disable=not progress)
  paths = []
  if workers == 1:
    results = map(_write_shard, jobs)
  else:
    pool = multiprocessing.get_context("spawn").Pool(workers)
    results = pool.imap(_write_shard, jobs)
  try:
    for job, path in zip(jobs, results):
      paths.append(path)
      bar.update(job[4] - job[3])
  finally:
    if workers > 1:
      pool.close()
      pool.join()
  bar.close()
  return paths


def write_split(root: str, cfg: WorldConfig, seed: int, split: str, num: int,
                progress: bool = True) -> str:
  """``num`` scenes of ``split`` in the folder layout (see evaluate/datasets/folder.py)."""
  img_dir, lab_dir = os.path.join(root, split, "images"), os.path.join(root, split, "labels")
  os.makedirs(img_dir, exist_ok=True)
  os.makedirs(lab_dir, exist_ok=True)
  with open(os.path.join(root, "classes.txt"), "w") as f:
    f.write("\n".join(cfg.class_names) + "\n")
  captions = {}
  for i in tqdm(range(num), desc=f"{split} split", unit="img", disable=not progress):
    s = generate(cfg, seed, i, split)
    key = f"{split}_{i:06d}"
    with open(os.path.join(img_dir, key + ".png"), "wb") as f:
      f.write(_png(s.image))
    with open(os.path.join(lab_dir, key + ".png"), "wb") as f:
      f.write(_png(s.mask, _PALETTE))
    captions[key] = s.caption
  with open(os.path.join(root, split, "captions.json"), "w") as f:
    json.dump(captions, f, indent=1)
  return root


def write_world(out: str, cfg: WorldConfig, seed: int, num_train: int, num_val: int,
                num_test: int, shard_size: int = 1000, progress: bool = True) -> dict:
  """Everything ``make demo`` needs; returns the paths."""
  shards = write_train_shards(os.path.join(out, "train"), cfg, seed, num_train, shard_size,
                              progress)
  for split, n in (("val", num_val), ("test", num_test)):
    write_split(os.path.join(out, "eval"), cfg, seed, split, n, progress)
  with open(os.path.join(out, "world.json"), "w") as f:
    json.dump({"seed": seed, "config": cfg.to_dict(), "num_train": num_train, "num_val": num_val,
               "num_test": num_test, "colors": list(COLORS)}, f, indent=1, default=list)
  return {"train_shards": shards, "eval_root": os.path.join(out, "eval")}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description="Write the synthetic shapes world to disk.")
  p.add_argument("--out", required=True)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--train", type=int, default=20000)
  p.add_argument("--val", type=int, default=200)
  p.add_argument("--test", type=int, default=500)
  p.add_argument("--image-size", type=int, default=64)
  p.add_argument("--shard-size", type=int, default=1000)
  p.add_argument("--world", default="named_backgrounds", choices=sorted(WORLDS),
                 help="which named world (synthetic_world.WORLDS; default: make demo's)")
  p.add_argument("--any-colour", action="store_true",
                 help="every shape of the world in any colour (kind names from geometry alone)")
  args = p.parse_args(argv)
  cfg = WORLDS[args.world]
  cfg = any_colour_world(cfg) if args.any_colour else cfg
  cfg = dataclasses.replace(cfg, image_size=args.image_size)
  out = write_world(args.out, cfg, args.seed, args.train, args.val, args.test, args.shard_size)
  print(f"wrote {len(out['train_shards'])} train shards and val/test splits under {args.out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
