"""Plants small deliberate bugs, one at a time, in a temporary copy of the repository and runs the
tests that should catch each; prints which were caught. Every bug must be caught.

  python experiments/planted_bugs.py            # all bugs (make planted-bugs)
  python experiments/planted_bugs.py --list     # the table (and a check of every pattern)
  python experiments/planted_bugs.py --markdown # the table's rows for docs/testing.md
  python experiments/planted_bugs.py --only gumbel-noise-sign recall-off-by-one
  python experiments/planted_bugs.py --clean    # first check each selection passes unplanted

The working tree is never modified: the tracked and untracked (not ignored) files are copied to a
temporary directory, each bug is applied there, the copy's tests run with the copy's packages
first on ``sys.path`` (checked), and the file is put back. A pattern that no longer matches
exactly once is reported as "pattern not found" (or "pattern ambiguous") and the run fails: the
table follows the code and needs updating when the code moves. The table is mirrored in
docs/testing.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Bug:
  name: str
  file: str  # relative to the repository root
  old: str  # must occur exactly once in the file
  new: str
  tests: tuple[str, ...]  # pytest node ids / files (with optional "-k expr" entries)


BUGS: tuple[Bug, ...] = (
    Bug("tokenizer-byte-blocks", "groupvit_jax/tokenizer.py",
        'bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +',
        'bs = (list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("!"), ord("~") + 1)) +',
        ("tests/test_tokenizer.py::test_real_clip_token_ids",)),
    Bug("group-tokens-before-final-norm", "groupvit_jax/models/vision.py",
        'return {"tokens": tokens, "pooled": tokens.mean(axis=1),',
        'return {"tokens": x, "pooled": tokens.mean(axis=1),',
        ("tests/test_parity_hf.py::test_one_stage_variant",)),
    Bug("gumbel-noise-sign", "groupvit_jax/models/assign.py",
        "y = (logits + gumbels) / tau", "y = (logits - gumbels) / tau",
        ("tests/test_assign_gumbel.py",)),
    Bug("imagenet-resize-bicubic", "groupvit_jax/preprocessing.py",
        "img = img.resize((nw, nh), Image.BILINEAR)", "img = img.resize((nw, nh), Image.BICUBIC)",
        ("tests/test_preprocessing_reference.py",)),
    Bug("recall-off-by-one", "groupvit_jax/train/retrieval.py",
        "return float(np.mean(rank < k))", "return float(np.mean(rank <= k))",
        ("tests/test_retrieval_recall.py",)),
    Bug("assign-softmax-axis", "groupvit_jax/models/assign.py",
        "soft = jax.nn.softmax(raw, axis=-2)", "soft = jax.nn.softmax(raw, axis=-1)",
        ("tests/test_model.py::test_assign_attention_matches_numpy_statement",)),
    Bug("straight-through-dropped", "groupvit_jax/models/assign.py",
        "return y_hard - jax.lax.stop_gradient(y_soft) + y_soft", "return y_hard",
        ("tests/test_model.py::test_straight_through_gradient_is_the_soft_gradient",)),
    Bug("assign-eps-dropped", "groupvit_jax/models/assign.py",
        "attn = attn / (attn.sum(axis=-1, keepdims=True) + self.assign_eps)",
        "attn = attn / attn.sum(axis=-1, keepdims=True)",
        ("tests/test_model.py::test_assign_attention_matches_numpy_statement",)),
    Bug("assign-scale-inverted", "groupvit_jax/models/assign.py",
        "self.scale = dim**-0.5", "self.scale = dim**0.5",
        ("tests/test_model.py::test_assign_attention_matches_numpy_statement",)),
    Bug("interpolate-align-corners", "groupvit_jax/interpolate.py",
        "return (np.float64(scale) * (d + 0.5) - 0.5).astype(np.float32)",
        "return (d * np.float64(in_size - 1) / max(out_size - 1, 1)).astype(np.float32)",
        ("tests/test_interpolate.py",)),
    Bug("bicubic-kernel-a", "groupvit_jax/interpolate.py",
        "_CUBIC_A = -0.75", "_CUBIC_A = -0.5",
        ("tests/test_interpolate.py",)),
    Bug("window-stride", "groupvit_jax/segmentation/windows.py",
        "y1, x1 = gy * stride, gx * stride", "y1, x1 = gy * stride, gx * (stride // 2)",
        ("tests/test_seg_geometry.py", "-k", "slide")),
    Bug("keep-ratio-rounding", "groupvit_jax/segmentation/windows.py",
        "return int(h * f + 0.5), int(w * f + 0.5)", "return int(h * f), int(w * f)",
        ("tests/test_preprocessing_reference.py",)),
    Bug("logit-scale-clamp", "groupvit_jax/models/groupvit.py",
        "return jnp.minimum(jnp.exp(self.logit_scale.get_value()), MAX_LOGIT_SCALE)",
        "return jnp.exp(self.logit_scale.get_value())",
        ("tests/test_model.py::test_logit_scale_is_clamped_at_100",)),
    Bug("batchnorm-momentum", "groupvit_jax/models/layers.py",
        "self.mean.set_value(m * self.mean.get_value() + (1 - m) * jax.lax.stop_gradient(mean))",
        "self.mean.set_value((1 - m) * self.mean.get_value() + m * jax.lax.stop_gradient(mean))",
        ("tests/test_model.py::test_batchnorm_matches_torch_training_and_eval",)),
    Bug("attention-heads-not-merged", "groupvit_jax/models/layers.py",
        "return out.transpose(0, 2, 1, 3).reshape(b, nq, d)",
        "return out.reshape(b, nq, d)",
        ("tests/test_parity_hf.py::test_unusual_config",)),
    Bug("drop-path-no-rescale", "groupvit_jax/models/layers.py",
        "return jnp.where(mask, x / keep, jnp.zeros_like(x))",
        "return jnp.where(mask, x, jnp.zeros_like(x))",
        ("tests/test_model.py::test_drop_path_drops_whole_samples_and_rescales",)),
    Bug("causal-mask-off-by-one", "groupvit_jax/models/text.py",
        "mask = jnp.tril(jnp.ones((t, t), dtype=bool))",
        "mask = jnp.tril(jnp.ones((t, t), dtype=bool), k=1)",
        ("tests/test_parity_hf.py::test_one_stage_variant",)),
    Bug("template-average-normalised", "groupvit_jax/class_embeddings.py",
        "emb = np.concatenate(feats).reshape(len(names), len(temps), -1).mean(axis=1)",
        "emb = np.concatenate(feats)\n  emb = emb / np.linalg.norm(emb, axis=-1, keepdims=True)\n"
        "  emb = emb.reshape(len(names), len(temps), -1).mean(axis=1)",
        ("tests/test_zeroshot_cls.py::test_logits_and_class_embeddings_match_transformers",)),
    Bug("contrastive-one-direction", "groupvit_jax/losses.py",
        "return 0.5 * (cross_entropy(logits, labels) + cross_entropy(logits.T, labels))",
        "return 0.5 * (cross_entropy(logits, labels) + cross_entropy(logits, labels))",
        ("tests/test_losses.py",)),
    Bug("miou-union", "groupvit_jax/segmentation/miou.py",
        "union = area_gt + area_pred - inter", "union = area_gt + area_pred",
        ("tests/test_miou.py",)),
    Bug("imagenet-std-swapped", "groupvit_jax/preprocessing.py",
        "IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)",
        "IMAGENET_STD = np.array([0.229, 0.225, 0.224], np.float32)",
        ("tests/test_preprocessing_reference.py",)),
    Bug("text-pool-first-token", "groupvit_jax/models/text.py",
        "eot = jnp.argmax(input_ids, axis=-1)", "eot = jnp.argmin(input_ids, axis=-1)",
        ("tests/test_parity_hf.py::test_unusual_config",)),  # eos id 2: the argmax rule
    Bug("seg-top5-filter", "groupvit_jax/segmentation/dense.py",
        "return ahead.sum(axis=-1) < k", "return ahead.sum(axis=-1) <= k",
        ("tests/test_seg_parity.py::test_whole_mode_matches_reference",)),
    Bug("bg-threshold-not-adaptive", "groupvit_jax/segmentation/dense.py",
        "thr = jnp.minimum(bg_threshold, affinity.max(axis=(1, 2)))", "thr = bg_threshold",
        ("tests/test_seg_parity.py::test_voc_sample_end_to_end_matches_the_statement",)),
    Bug("data-iterator-not-restored", "groupvit_jax/train/checkpointing.py",
        '    args["data"] = grain.checkpoint.CheckpointRestore(data_iter)',
        "    pass",
        ("tests/test_train_loop.py::test_sigterm_resume_reproduces_the_losses",)),
    Bug("executable-kept-from-xla-cache", "groupvit_jax/runtime_cache.py",
        "        with _xla_cache_bypassed():", "        with contextlib.nullcontext():",
        ("tests/test_runtime_cache.py::"
         "test_segmentation_executables_are_kept_and_give_the_same_labels",)),
    Bug("structure-key-ignores-config", "groupvit_jax/runtime_cache.py",
        '  spec = {"config": repr(config), "code": package_source_digest(),',
        '  spec = {"config": "", "code": package_source_digest(),',
        ("tests/test_runtime_cache.py::test_model_structure_is_kept_per_config_and_model_code",)),
    Bug("augmentation-follows-data-path", "input_pipeline/webdataset.py",
        '  return zlib.crc32("/".join(parts[-2:]).encode())', "  return zlib.crc32(path.encode())",
        ("tests/test_input_pipeline.py::test_the_same_shards_elsewhere_give_the_same_batches",)),
)


def _copy_repo(dst: Path) -> None:
  """Tracked and untracked-but-not-ignored files of the working tree (no .venv, no caches)."""
  files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
  for rel in filter(None, files):
    src = REPO / rel
    if src.is_file():
      (dst / rel).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(src, dst / rel)


def _env(copy: Path) -> dict[str, str]:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([str(copy)] + [p for p in [env.get("PYTHONPATH")] if p])
  env.setdefault("GROUPVIT_SHARED_DIR", str(REPO.parent / "shared"))
  env["PYTHONDONTWRITEBYTECODE"] = "1"
  return env


def _check_imports_from(copy: Path) -> None:
  out = subprocess.run([sys.executable, "-c", "import groupvit_jax; print(groupvit_jax.__file__)"],
                       cwd=copy, env=_env(copy), check=True, capture_output=True, text=True)
  if not out.stdout.strip().startswith(str(copy)):
    sys.exit(f"the copy's package is not first on the path: groupvit_jax from {out.stdout.strip()}")


def _apply(copy: Path, bug: Bug) -> str | None:
  """Plants the bug; returns the original text, or None after reporting a stale pattern."""
  path = copy / bug.file
  if not path.exists():
    print(f"[{bug.name}] pattern not found: {bug.file} does not exist", flush=True)
    return None
  text = path.read_text(encoding="utf-8")
  count = text.count(bug.old)
  if count != 1:
    what = "pattern not found" if count == 0 else f"pattern ambiguous ({count} matches)"
    print(f"[{bug.name}] {what} in {bug.file}: {bug.old!r}", flush=True)
    return None
  path.write_text(text.replace(bug.old, bug.new), encoding="utf-8")
  return text


def _pytest(copy: Path, tests: tuple[str, ...], timeout: int) -> tuple[int, float, str]:
  cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
  start = time.time()
  try:
    proc = subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True,
                          timeout=timeout)
  except subprocess.TimeoutExpired:
    return -1, time.time() - start, "timed out"
  tail = (proc.stdout + proc.stderr).strip().splitlines()
  return proc.returncode, time.time() - start, tail[-1] if tail else ""


def _run_one(copy: Path, bug: Bug, args) -> tuple[str, float]:
  """Plants ``bug`` in ``copy``, runs its tests, takes it out again: (status, seconds)."""
  if args.clean:
    rc, secs, tail = _pytest(copy, bug.tests, args.timeout)
    if rc != 0:
      print(f"[{bug.name}] selection fails WITHOUT the bug (rc {rc}): {tail}", flush=True)
      return "unclean", secs
  original = _apply(copy, bug)
  if original is None:
    return "pattern not found", 0.0
  try:
    rc, secs, tail = _pytest(copy, bug.tests, args.timeout)
  finally:
    (copy / bug.file).write_text(original, encoding="utf-8")
  # 1: tests failed (caught); 0: all passed (missed); anything else is an error of the run.
  status = {0: "MISSED", 1: "caught"}.get(rc, f"error (rc {rc})")
  print(f"[{bug.name}] {status} in {secs:.0f} s by {' '.join(bug.tests)}: {tail}", flush=True)
  return status, secs


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--only", nargs="+", metavar="NAME", help="run these bugs only")
  parser.add_argument("--list", action="store_true", help="print the table and exit")
  parser.add_argument("--markdown", action="store_true",
                      help="print the table as the Markdown rows of docs/testing.md and exit")
  parser.add_argument("--clean", action="store_true",
                      help="first run each selection on the unplanted copy (it must pass)")
  parser.add_argument("--timeout", type=int, default=900, help="seconds per pytest run")
  parser.add_argument("--jobs", type=int, default=2,
                      help="bugs tried at once, each in its own copy of the tree (2 suits 2 cores)")
  args = parser.parse_args(argv)

  bugs = list(BUGS)
  if args.only:
    unknown = sorted(set(args.only) - {b.name for b in BUGS})
    if unknown:
      parser.error(f"unknown bug names {unknown}; --list shows them")
    bugs = [b for b in BUGS if b.name in args.only]
  if args.markdown:
    cell = lambda t: "`" + t.replace("|", "\\|").replace("\n", " ") + "`"
    for b in bugs:
      print(f"| {cell(b.name)} | {cell(b.file)} | {cell(b.old)} -> {cell(b.new)} | "
            f"{cell(' '.join(b.tests))} |")
    return 0
  if args.list:  # also checks that every pattern still matches exactly once
    stale = 0
    for b in bugs:
      path = REPO / b.file
      n = path.read_text(encoding="utf-8").count(b.old) if path.exists() else 0
      stale += n != 1
      mark = "" if n == 1 else ("  <- pattern not found" if n == 0 else f"  <- {n} matches")
      print(f"{b.name:32s} {b.file:40s} {' '.join(b.tests)}{mark}")
    return 1 if stale else 0

  jobs = max(1, min(args.jobs, len(bugs)))
  results = {}
  with tempfile.TemporaryDirectory(prefix="planted_bugs_") as tmp:
    copies = []
    for j in range(jobs):  # one copy per job: a bug planted in one never leaks into another
      copy = Path(tmp) / str(j) / REPO.name
      _copy_repo(copy)
      _check_imports_from(copy)
      copies.append(copy)
    todo = queue.SimpleQueue()
    for i, bug in enumerate(bugs):
      todo.put((i, bug))

    def work(copy: Path) -> None:
      while True:
        try:
          i, bug = todo.get_nowait()
        except queue.Empty:
          return
        results[i] = (bug, *_run_one(copy, bug, args))

    t0 = time.time()
    threads = [threading.Thread(target=work, args=(c,)) for c in copies]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    total = time.time() - t0
  results = [results[i] for i in sorted(results)]

  bad = [(b, s) for b, s, _ in results if s != "caught"]
  print(f"\n{len(results) - len(bad)}/{len(results)} planted bugs caught in {total / 60:.1f} min")
  for b, s in bad:
    print(f"  NOT CAUGHT: {b.name} ({s})")
  return 1 if bad else 0


if __name__ == "__main__":
  sys.exit(main())
