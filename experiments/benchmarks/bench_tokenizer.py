"""Tokenizer throughput in captions/s: groupvit_jax.tokenize (pure Python, the reference's exact
cleanup incl. ftfy and html unescape) vs transformers' CLIPTokenizer (Rust `tokenizers` backend)
built from the same merges file, on the same captions, in the same run.

    python experiments/benchmarks/bench_tokenizer.py [--captions 20000] [--out FILE]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import machine, print_table, write_json  # noqa: E402


def captions(n: int, seed: int = 0) -> list[str]:
  """Caption-like strings over a 20k-word vocabulary (mostly unseen words: a cold BPE cache)."""
  rng = np.random.default_rng(seed)
  letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
  words = ["".join(rng.choice(letters, rng.integers(2, 11))) for _ in range(20000)]
  common = "a the of on in with and photo picture man woman dog cat red blue two".split()
  out = []
  for _ in range(n):
    k = int(rng.integers(5, 25))
    toks = [common[int(rng.integers(len(common)))] if rng.random() < 0.4 else
            words[int(rng.integers(len(words)))] for _ in range(k)]
    out.append(" ".join(toks).capitalize() + ".")
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--captions", type=int, default=20000)
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                    "tokenizer_speed.json"))
  args = parser.parse_args(argv)
  from groupvit_jax.tokenizer import default_bpe_path, get_tokenizer, tokenize
  texts = captions(args.captions)
  tok = get_tokenizer()
  start = time.perf_counter()
  ours = tokenize(texts)
  cold = len(texts) / (time.perf_counter() - start)
  start = time.perf_counter()
  tokenize(texts)
  warm = len(texts) / (time.perf_counter() - start)

  from transformers import CLIPTokenizer
  with tempfile.TemporaryDirectory() as d:
    with open(os.path.join(d, "vocab.json"), "w") as f:
      json.dump(tok.encoder, f)
    with gzip.open(str(default_bpe_path()), "rt", encoding="utf-8") as f:
      lines = f.read().split("\n")
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
      f.write("\n".join(["#version: 0.2"] + lines[1:48895]))
    hf = CLIPTokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"))
  start = time.perf_counter()
  theirs = np.array(hf(texts, padding="max_length", max_length=77, truncation=True)["input_ids"])
  hf_rate = len(texts) / (time.perf_counter() - start)
  theirs[np.cumsum(theirs == 49407, axis=1) - (theirs == 49407) > 0] = 0
  agree = float((ours == theirs).all(axis=1).mean())

  rows = [["groupvit_jax.tokenize, cold cache", f"{cold:,.0f}"],
          ["groupvit_jax.tokenize, warm cache", f"{warm:,.0f}"],
          ["transformers CLIPTokenizer (Rust backend)", f"{hf_rate:,.0f}"]]
  print_table(rows, ["tokenizer", "captions/s"])
  print(f"identical ids on {agree:.1%} of {len(texts)} captions")
  write_json(args.out, {"machine": machine(), "captions": len(texts), "ours_cold_per_s": cold,
                        "ours_warm_per_s": warm, "transformers_per_s": hf_rate,
                        "identical_fraction": agree})


if __name__ == "__main__":
  main()
