"""Markdown summary of an ``accelerator.py`` result (the JSON keeps every number)."""

from __future__ import annotations

import re


def device_tag(machine: dict) -> str:
  """'h200', 'a100', ... from the device kind; 'cpu' on CPU."""
  kind = (machine.get("device_kind") or machine.get("jax_backend") or "unknown").lower()
  m = re.search(r"(h200|h100|a100|l4|v100|tpu v\w+)", kind)
  return re.sub(r"\W+", "_", m.group(1) if m else kind).strip("_") or "unknown"


def _f(x, spec=".3g") -> str:
  return "n/a" if x is None else format(x, spec)


def _pct(x) -> str:
  return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown(r: dict) -> str:
  m = r["machine"]
  lines = [f"# accelerator benchmark{' (smoke: tiny model on CPU)' if r['smoke'] else ''}", "",
           f"Machine: {m.get('device_kind')} ({m.get('jax_backend')}), host {m.get('cpu')} x "
           f"{m.get('cpu_count')}, load average {m.get('load_average')}; jax {m.get('jax')}, "
           f"flax {m.get('flax')}, torch {m.get('torch')} ({r['torch_device']}), transformers "
           f"{m.get('transformers')}; {m.get('date')}. Total {r['seconds'].get('total', 0):.0f} s.",
           ""]
  for part, fn in (("correctness", _correctness), ("encoder", _encoder),
                   ("segmentation", _segmentation), ("train", _train), ("input", _input)):
    if part not in r:
      continue
    lines.append(f"## {part} ({r['seconds'].get(part, 0):.0f} s)")
    lines += [f"FAILED: {r[part]['error']}"] if "error" in r[part] else fn(r[part])
    lines.append("")
  return "\n".join(lines) + "\n"


def _correctness(c: dict) -> list[str]:
  f, b = c["float32"], c["bfloat16"]
  return [f"{c['preset']} model, batch {c['batch']} at {c['image_size']} px, TF32 off: fp32 max |diff| "
          f"image {_f(f['image_embeds_max_abs_diff'])}, text {_f(f['text_embeds_max_abs_diff'])} "
          f"(tolerance {c['atol']}: {'pass' if c['fp32_within_atol'] else 'FAIL'}); bf16 max |diff| "
          f"image {_f(b['image_embeds_max_abs_diff'])}, text {_f(b['text_embeds_max_abs_diff'])}, "
          f"min cosine {_f(min(b['image_cosine_min'], b['text_cosine_min']), '.5f')}."]


def _encoder(e: dict) -> list[str]:
  rows = ["| side | img/s (median) | img/s (best) | spread |", "|---|---|---|---|"]
  for name, t in e["timings"].items():
    rows.append(f"| {name} | {_f(e['img_per_s'][name]['median'], '.1f')} | "
                f"{_f(e['img_per_s'][name]['best'], '.1f')} | {t['spread']:.2f}"
                f"{' (busy)' if t['busy'] else ''} |")
  s32, s16 = e["speedup_float32"], e["speedup_bfloat16"]
  rows.append("")
  rows.append(f"Batch {e['batch']} at {e['image_size']} px. Ours / transformers: fp32 "
              f"{s32['median']:.2f}x (best {s32['min']:.2f}x), bf16 {s16['median']:.2f}x "
              f"(best {s16['min']:.2f}x). Goal: {e['goal']}.")
  return rows


def _segmentation(s: dict) -> list[str]:
  return [f"{s['images']} JPEGs ({s['buckets']} shape buckets), {s['windows']} windows, bf16, "
          f"{s['images_per_batch']} images per call, {s['host_workers']} host threads: "
          f"**{s['images_per_s']:.1f} images/s**, {s['windows_per_s']:.1f} windows/s; device waits "
          f"for the host {_pct(s['device_waits_for_host_share'])} of the time (host alone: "
          f"{s['host_only_images_per_s']:.1f} images/s); bf16 labels equal to fp32 on "
          f"{_pct(s['bf16_vs_fp32_pixel_agreement_mean'])} of pixels (min "
          f"{_pct(s['bf16_vs_fp32_pixel_agreement_min'])}, {s['agreement_images']} images). "
          f"Compiles {s['warmup_compile_s']:.0f} s. Goal: {s['goal']}."]


def _train(t: dict) -> list[str]:
  rows = ["| run | batch | samples/s | MFU | peak memory | compile |", "|---|---|---|---|---|---|"]
  for key in ("no_remat", "remat"):
    x = t[key]
    mem = x.get("peak_bytes_in_use")
    rows.append(f"| ours {t['model']} K=3 bf16{' remat' if x['remat'] else ''} | {x['batch']} | "
                f"{x['samples_per_s']:.1f} | {_pct(x.get('mfu'))} | "
                f"{'n/a' if mem is None else f'{mem / 2**30:.1f} GiB'} | {x['compile_s']:.0f} s |")
  ref = t["transformers"]
  if "samples_per_s" in ref:
    mem = ref.get("peak_bytes_allocated")
    rows.append(f"| transformers, plain contrastive (K=0), bf16 autocast | {ref['batch']} | "
                f"{ref['samples_per_s']:.1f} | n/a | "
                f"{'n/a' if mem is None else f'{mem / 2**30:.1f} GiB'} | - |")
    rows += ["", f"Ours (K=3, 4x the texts) over transformers (K=0): "
             f"{t['ours_best_over_transformers_plain']:.2f}x. Goal: {t['goal']}."]
  else:
    rows += ["", f"transformers: {ref.get('error')}"]
  return rows


def _input(i: dict) -> list[str]:
  rows = ["| workers | samples/s | per worker | first batch |", "|---|---|---|---|"]
  for x in i["by_workers"]:
    rows.append(f"| {x['workers']} | {x['samples_per_s']:.1f} | {x['samples_per_s_per_worker']:.1f} | "
                f"{x['first_batch_s']:.1f} s |")
  rows += ["", f"{i['image_size']} px crops from {i['shard_image']} px JPEGs, K=3 prompts, host "
           f"with {i['host_cpus']} CPUs. Goal: {i['goal']}."]
  return rows
