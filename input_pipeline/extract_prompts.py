"""Offline prompt-word extraction: rewrites shards with the caption's taggable words stored in
each sample's ``.json`` (field ``groupvit_prompt_words``), so training skips the POS tagger.

  python -m input_pipeline.extract_prompts --shards '/data/cc3m/{00000..00331}.tar' \
      --out_dir /data/cc3m_prompts --workers 16

Every member of a sample is copied unchanged; samples without a caption get an empty list. The
random part of the prompts (which words, which templates) still happens at training time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys

from input_pipeline import multilabel_prompts as prompts_lib
from input_pipeline import samples, shards as shards_lib, webdataset
from input_pipeline.shard_writer import ShardWriter


def rewrite_shard(src: str, dst: str) -> tuple[int, int]:
  """Copies ``src`` to ``dst`` adding the prompt words; returns (samples, samples with words)."""
  n = with_words = 0
  with ShardWriter(dst) as out:
    for key, parts in webdataset.iter_tar_groups(src):
      caption = samples.decode_caption(parts["txt"]) if "txt" in parts else ""
      words = prompts_lib.prompt_words(caption) if caption else []
      try:
        meta = json.loads(parts["json"]) if "json" in parts else {}
      except ValueError:
        meta = {}
      if not isinstance(meta, dict):
        meta = {}
      meta[prompts_lib.WORDS_FIELD] = words
      parts = dict(parts, json=json.dumps(meta).encode())
      out.write(key, parts)
      n += 1
      with_words += bool(words)
  return n, with_words


def _job(args):
  return rewrite_shard(*args)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--shards", required=True, help="glob / brace range / comma list of shards")
  parser.add_argument("--out_dir", required=True, help="output directory (local or remote)")
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
  args = parser.parse_args(argv)
  try:
    srcs = shards_lib.expand_shards(args.shards)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  jobs = [(s, f"{args.out_dir.rstrip('/')}/{os.path.basename(s)}") for s in srcs]
  if any(os.path.abspath(s) == os.path.abspath(d) for s, d in jobs):
    print("error: --out_dir must differ from the shards' directory", file=sys.stderr)
    return 2
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  total = tagged = 0
  if args.workers <= 1:
    results = map(_job, jobs)
    pool = None
  else:  # spawn: safe in processes that already run threads (JAX, TensorFlow)
    pool = multiprocessing.get_context("spawn").Pool(args.workers)
    results = pool.imap_unordered(_job, jobs)
  for n, w in tqdm(results, total=len(jobs), unit="shard"):
    total, tagged = total + n, tagged + w
  if pool is not None:
    pool.close()
    pool.join()
  print(f"{len(jobs)} shards, {total} samples, {tagged} with prompt words -> {args.out_dir}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
