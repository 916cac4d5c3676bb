"""On-disk caches: the folder chosen from the environment, XLA's persistent compilation cache
written by a fresh process, and class embeddings kept per text weights, names and templates."""

import dataclasses
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from groupvit_jax import class_embeddings as ce
from groupvit_jax import runtime_cache


def test_cache_root_from_environment(monkeypatch, tmp_path):
  monkeypatch.setenv("GROUPVIT_JAX_CACHE_DIR", str(tmp_path / "c"))
  assert runtime_cache.default_cache_root() == str(tmp_path / "c")
  monkeypatch.setenv("GROUPVIT_JAX_CACHE_DIR", "")
  assert runtime_cache.default_cache_root() is None
  before = jax.config.jax_compilation_cache_dir
  assert runtime_cache.enable_caches() is None  # empty value: off, nothing configured
  assert jax.config.jax_compilation_cache_dir == before
  assert runtime_cache.embedding_cache_dir() is None
  monkeypatch.delenv("GROUPVIT_JAX_CACHE_DIR")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert runtime_cache.default_cache_root() == str(tmp_path / "xdg" / "groupvit_jax")


def test_compilation_cache_is_written_and_reused_by_a_new_process(tmp_path):
  script = (
      "import time, jax, jax.numpy as jnp\n"
      "from groupvit_jax import runtime_cache\n"
      "runtime_cache.MIN_COMPILE_SECS = 0\n"
      "print(runtime_cache.enable_caches())\n"
      "f = jax.jit(lambda x: jnp.sin(x) @ x.T + jnp.cumsum(x, axis=0))\n"
      "f(jnp.ones((64, 64))).block_until_ready()\n")
  env = dict(os.environ, GROUPVIT_JAX_CACHE_DIR=str(tmp_path / "cache"))
  first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300)
  assert first.returncode == 0, first.stderr
  assert first.stdout.strip() == str(tmp_path / "cache")
  xla = tmp_path / "cache" / "xla"
  entries = {p.name: p.stat().st_mtime_ns for p in xla.iterdir()}
  assert entries  # the compiled program was written
  second = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
  assert second.returncode == 0, second.stderr
  # A hit reads the entry and writes nothing: same files, same modification times.
  assert {p.name: p.stat().st_mtime_ns for p in xla.iterdir()} == entries


def test_class_embeddings_are_cached_by_weights_names_and_templates(tiny_model, tmp_path,
                                                                     monkeypatch):
  names = ["cat", "dog", "grass"]
  plain = ce.class_embeddings(tiny_model, names, "simple")
  cached = ce.class_embeddings(tiny_model, names, "simple", cache_dir=str(tmp_path))
  np.testing.assert_array_equal(cached, plain)
  assert len(os.listdir(tmp_path)) == 1

  def no_compute(*a, **k):
    raise AssertionError("recomputed although cached")

  monkeypatch.setattr(ce, "_compute", no_compute)
  np.testing.assert_array_equal(ce.class_embeddings(tiny_model, names, "simple",
                                                    cache_dir=str(tmp_path)), plain)
  # Other names, other templates or other text weights are other entries.
  for call in (lambda m: ce.class_embeddings(m, names[:2], "simple", cache_dir=str(tmp_path)),
               lambda m: ce.class_embeddings(m, names, "subset", cache_dir=str(tmp_path))):
    with pytest.raises(AssertionError, match="recomputed"):
      call(tiny_model)
  key = runtime_cache.embedding_key(tiny_model, names, ce.get_templates("simple"))
  proj = tiny_model.text_projector
  leaf = next(v for _, v in nnx.to_flat_state(nnx.state(proj)))
  old = leaf.get_value()
  try:
    leaf.set_value(old + 1e-3)
    assert runtime_cache.embedding_key(tiny_model, names, ce.get_templates("simple")) != key
  finally:
    leaf.set_value(old)
  assert runtime_cache.embedding_key(tiny_model, names, ce.get_templates("simple")) == key


def test_model_structure_is_kept_per_config_and_model_code(tiny_checkpoint, tiny_config,
                                                           tmp_path, monkeypatch):
  from groupvit_jax import load_pretrained  # pylint: disable=g-import-not-at-top
  from groupvit_jax.convert import flat_state  # pylint: disable=g-import-not-at-top
  uncached = load_pretrained(str(tiny_checkpoint))
  monkeypatch.setitem(runtime_cache._state, "root", str(tmp_path))  # pylint: disable=protected-access
  first = load_pretrained(str(tiny_checkpoint))  # traces the constructor and keeps the structure
  kept = list((tmp_path / "model_structure").iterdir())
  assert [p.name for p in kept] == [runtime_cache.structure_key(tiny_config) + ".pkl"]

  def no_trace(*a, **k):
    raise AssertionError("structure traced again although kept")

  monkeypatch.setattr(flat_state.nnx, "eval_shape", no_trace)
  second = load_pretrained(str(tiny_checkpoint))
  assert nnx.graphdef(second) == nnx.graphdef(uncached)
  want = flat_state.to_flat(uncached)
  for model in (first, second):
    got = flat_state.to_flat(model)
    assert got.keys() == want.keys()
    for k in want:
      np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  ids = np.array([[49406, 320, 2368, 49407] + [0] * (tiny_config.text.context_length - 4)])
  np.testing.assert_array_equal(np.asarray(second.encode_text(ids)),
                                np.asarray(uncached.encode_text(ids)))

  # A torn file is ignored (the structure is traced again); another config is another entry.
  kept[0].write_bytes(kept[0].read_bytes()[:100])
  with pytest.raises(AssertionError, match="traced again"):
    load_pretrained(str(tiny_checkpoint))
  other = dataclasses.replace(tiny_config, proj_dim=tiny_config.proj_dim * 2)
  assert runtime_cache.structure_key(other) != runtime_cache.structure_key(tiny_config)


def test_cache_keys_follow_the_package_code(tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  import groupvit_jax  # pylint: disable=g-import-not-at-top
  package = tmp_path / "groupvit_jax"
  shutil.copytree(os.path.dirname(groupvit_jax.__file__), package,
                  ignore=shutil.ignore_patterns("__pycache__", "assets"))
  assert runtime_cache.package_source_digest(str(package)) == runtime_cache.package_source_digest()
  for edited in ("models/layers.py", "segmentation/stitch.py"):
    copy = tmp_path / edited.replace("/", "_")
    shutil.copytree(package, copy)
    source = copy / edited
    source.write_text(source.read_text().replace("def ", "def  ", 1))
    assert runtime_cache.package_source_digest(str(copy)) != runtime_cache.package_source_digest()


SEGMENT_SCRIPT = """
import json, sys
import numpy as np
from groupvit_jax import load_pretrained, runtime_cache
from groupvit_jax.segmentation.segmenter import Segmenter, trace_counts
runtime_cache.MIN_COMPILE_SECS = 0
runtime_cache.enable_caches(sys.argv[2] or None)
seg = Segmenter(load_pretrained(sys.argv[1]), ["cat", "dog", "sky"], bg_threshold=0.3)
image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), np.uint8)
labels = seg.segment(image)
_, maps = seg.group_maps(image)
print(json.dumps({"labels": labels.tolist(), "groups": [m.tolist() for m in maps],
                  "traces": sum(trace_counts().values())}))
"""


def _segment_in_new_process(checkpoint, cache_dir: str) -> dict:
  import json  # pylint: disable=g-import-not-at-top
  out = subprocess.run([sys.executable, "-c", SEGMENT_SCRIPT, str(checkpoint), cache_dir],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, XLA_FLAGS=""))
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_segmentation_executables_are_kept_and_give_the_same_labels(tiny_checkpoint, tmp_path):
  """A second process loads the kept executables (no trace at all) and labels as a process
  without caches does; one whose compile came from XLA's own cache is kept whole too (XLA:CPU
  drops the kernels of such a copy unless the kept one is compiled afresh)."""
  plain = _segment_in_new_process(tiny_checkpoint, "")
  cache = tmp_path / "cache"
  first = _segment_in_new_process(tiny_checkpoint, str(cache))
  kept = sorted(p.name for p in (cache / "executables").iterdir())
  assert len(kept) == 2  # the bucket's labels and the group maps
  assert first["traces"] == 1
  second = _segment_in_new_process(tiny_checkpoint, str(cache))
  assert second["traces"] == 0  # loaded, not traced
  for run in (first, second):
    assert run["labels"] == plain["labels"] and run["groups"] == plain["groups"]
  # Our entries gone, XLA's kept: the next process compiles (XLA would serve its cached copy) and
  # keeps what it compiled; a third process runs that.
  for p in (cache / "executables").iterdir():
    p.unlink()
  again = _segment_in_new_process(tiny_checkpoint, str(cache))
  assert again["traces"] == 1 and len(list((cache / "executables").iterdir())) == 2
  last = _segment_in_new_process(tiny_checkpoint, str(cache))
  assert last["traces"] == 0 and last["labels"] == plain["labels"]
  assert last["groups"] == plain["groups"]
