"""Rebuilds the README's speed table from the result files (no number typed by hand).

Reads ``experiments/benchmarks/results/*.json`` (the files each benchmark script writes, with
their machine) and writes a markdown table between the README's markers
``<!-- speed-table:begin -->`` and ``<!-- speed-table:end -->``.

  python experiments/benchmarks/speed_table.py           # rewrite the README's table
  python experiments/benchmarks/speed_table.py --check   # exit 1 if the README is out of date
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
README = os.path.join(os.path.dirname(os.path.dirname(HERE)), "README.md")
BEGIN, END = "<!-- speed-table:begin -->", "<!-- speed-table:end -->"
HEADER = ["benchmark (script)", "ours", "transformers", "ours / transformers", "machine", "file"]


def machine_text(m: dict) -> str:
  dev = m.get("device_kind")
  if dev and m.get("jax_backend", "cpu") != "cpu":
    return f"{dev}, {m.get('cpu_count')}-core host"
  load = m.get("load_average") or m.get("load_average_at_start")
  load = f", load {float(load[0]):.1f}" if load else ""
  used = m.get("cores_used")
  used = f" ({used} used)" if used and used != m.get("cpu_count") else ""
  return f"{m.get('cpu', '?')}, {m.get('cpu_count', '?')} cores{used}, CPU{load}"


def _x(r: float) -> str:
  return f"{r:.2f}x"


def _rate(v: float, unit: str) -> str:
  return f"{v:.3g} {unit}"


def rows_bench_model(d: dict) -> list[list[str]]:
  out = []
  for name, r in d["results"].items():
    out.append([f"{name}, batch {r['batch']} (`bench_model.py`)",
                _rate(r["groupvit_jax_img_per_s"], "img/s"),
                _rate(r["torch_transformers_img_per_s"], "img/s"), _x(r["ratio"]) + " (median)"])
  return out


def rows_train_step(d: dict) -> list[list[str]]:
  out = []
  for r in d["rows"]:
    if "torch_step_s" not in r:
      continue
    loss = "plain contrastive (K=0)" if r["multi_label_K"] == 0 else f"multi-label K={r['multi_label_K']}"
    out.append([f"train step, {loss}, batch {d['args']['batch']}, {d['args'].get('threads') or 'default'} "
                "thread(s) (`bench_train.py`)", f"{r['ours_step_s']:.3g} s/step",
                f"{r['torch_step_s']:.3g} s/step",
                f"{_x(r['speedup_ours_over_torch_min'])} best, {_x(r['speedup_ours_over_torch'])} median"])
  return out


def rows_segmentation(d: dict) -> list[list[str]]:
  w = d["per_window"]
  ours, ref = w.get("jax float32 b1"), w.get("torch float32 b1")
  if not (ours and ref):
    return []
  return [["one 448x448 segmentation window, fp32 (`bench_segmentation.py`)",
           f"{ours['best_s']:.3g} s", f"{ref['best_s']:.3g} s",
           f"{_x(ref['best_s'] / ours['best_s'])} best, {_x(ref['median_s'] / ours['median_s'])} median"]]


def rows_tokenizer(d: dict) -> list[list[str]]:
  return [[f"CLIP BPE tokenizer, {d['captions']} captions (`bench_tokenizer.py`)",
           f"{d['ours_cold_per_s']:.3g}/s cold, {d['ours_warm_per_s']:.3g}/s warm",
           f"{d['transformers_per_s']:.3g}/s",
           f"{_x(d['ours_cold_per_s'] / d['transformers_per_s'])} cold, "
           f"{_x(d['ours_warm_per_s'] / d['transformers_per_s'])} warm"]]


def rows_cpu_vs_torch(d: dict) -> list[list[str]]:
  out = []
  for r in d["rows"]:
    busy = " (machine busy)" if r["ratio"]["busy"] else ""
    out.append([f"{r['name']}, {r['dtype']} (`cpu_vs_torch.py`)", f"{r['ours']['min_s']:.3g} s",
                f"{r['transformers']['min_s']:.3g} s",
                f"{_x(r['ratio']['min'])} best, {_x(r['ratio']['median'])} median{busy}"])
  return out


def rows_accelerator(d: dict) -> list[list[str]]:
  if d.get("smoke"):
    return []
  out = []
  e = d.get("encoder", {})
  if "img_per_s" in e:
    for dt, ref in (("float32", "transformers float32"), ("bfloat16", "transformers bfloat16 autocast")):
      out.append([f"image encoder forward, batch {e['batch']}, {dt} (`accelerator.py`)",
                  _rate(e["img_per_s"][f"ours {dt}"]["median"], "img/s"),
                  _rate(e["img_per_s"][ref]["median"], "img/s"),
                  _x(e[f"speedup_{dt}"]["median"]) + " median"])
  s = d.get("segmentation", {})
  if "images_per_s" in s:
    out.append([f"segmentation end to end from {s['images']} JPEGs, bf16 (`accelerator.py`)",
                _rate(s["images_per_s"], "img/s"), "-", "-"])
  t = d.get("train", {})
  if "no_remat" in t and "samples_per_s" in t.get("transformers", {}):
    best = max((t["no_remat"], t["remat"]), key=lambda x: x["samples_per_s"])
    mfu = f", MFU {100 * best['mfu']:.1f}%" if best.get("mfu") else ""
    out.append([f"train step gcc_yfcc K=3 bf16, batch {best['batch']} (`accelerator.py`)",
                _rate(best["samples_per_s"], "samples/s") + mfu,
                _rate(t["transformers"]["samples_per_s"], "samples/s") + " (K=0)",
                _x(t["ours_best_over_transformers_plain"])])
  return out


SOURCES = (("bench_model*.json", rows_bench_model), ("train_step_speed*.json", rows_train_step),
           ("bench_segmentation*run_a.json", rows_segmentation),
           ("tokenizer_speed*.json", rows_tokenizer), ("cpu_vs_torch*.json", rows_cpu_vs_torch),
           ("accelerator_*.json", rows_accelerator))


def table(results_dir: str = RESULTS) -> str:
  lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
  for pattern, fn in SOURCES:
    for path in sorted(glob.glob(os.path.join(results_dir, pattern))):
      with open(path) as f:
        d = json.load(f)
      for row in fn(d):
        lines.append("| " + " | ".join(row + [machine_text(d.get("machine", {})),
                                              f"`results/{os.path.basename(path)}`"]) + " |")
  return "\n".join(lines) + "\n"


def splice(readme: str, new_table: str) -> str:
  if BEGIN not in readme or END not in readme:
    raise SystemExit(f"error: {README} has no {BEGIN} ... {END} markers")
  head, rest = readme.split(BEGIN, 1)
  _, tail = rest.split(END, 1)
  return f"{head}{BEGIN}\n{new_table}{END}{tail}"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--check", action="store_true", help="only compare, exit 1 when out of date")
  p.add_argument("--readme", default=README)
  p.add_argument("--results", default=RESULTS, help="folder of the result files")
  args = p.parse_args(argv)
  with open(args.readme) as f:
    old = f.read()
  new = splice(old, table(args.results))
  if args.check:
    if new != old:
      print(f"{args.readme}: the speed table is out of date; run {__file__}", file=sys.stderr)
      return 1
    return 0
  with open(args.readme, "w") as f:
    f.write(new)
  print(f"updated {args.readme}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
