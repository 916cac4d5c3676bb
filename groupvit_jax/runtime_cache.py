"""What repeat runs keep on disk: XLA's compiled programs, the class embeddings of each
vocabulary, the model's structure for each configuration and the segmentation executables
(``cached_jit``: a repeat call skips tracing and lowering too), under one per-user folder.

Folder: ``$GROUPVIT_JAX_CACHE_DIR`` when set (an empty value turns both caches off), else
``$XDG_CACHE_HOME/groupvit_jax`` (``~/.cache/groupvit_jax``). The command line and the notebook
call ``enable_caches()``; library code never turns them on by itself.

The compilation cache is trusted code (JAX runs what it finds there), and so are the structure
and executable caches (pickles): keep the folder private (it is made with mode 0700).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import pickle
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

ENV_VAR = "GROUPVIT_JAX_CACHE_DIR"
# XLA:CPU compiles of the model's pieces take 0.1 s to tens of seconds; caching the smallest
# costs more disk reads than compiles, so skip those under this many seconds.
MIN_COMPILE_SECS = 0.2

_state = {"root": None}  # the folder enable_caches() set up, or None


def default_cache_root() -> str | None:
  """The cache folder the environment asks for; None when ``GROUPVIT_JAX_CACHE_DIR`` is empty."""
  if ENV_VAR in os.environ:
    return os.path.abspath(os.path.expanduser(os.environ[ENV_VAR])) if os.environ[ENV_VAR] else None
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "groupvit_jax")


def enable_caches(root: str | None = "") -> str | None:
  """Turns on the persistent compilation cache and the class-embedding cache.

  Args:
    root: the cache folder; "" (default) means ``default_cache_root()``, None turns both off.
  Returns:
    the folder in use, or None when caching is off.
  """
  import jax  # pylint: disable=g-import-not-at-top
  root = default_cache_root() if root == "" else root
  if root is None:
    _state["root"] = None
    return None
  os.makedirs(os.path.join(root, "xla"), mode=0o700, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", os.path.join(root, "xla"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  _state["root"] = root
  return root


def embedding_cache_dir() -> str | None:
  """Where class embeddings are kept, or None when ``enable_caches`` was not called."""
  return None if _state["root"] is None else os.path.join(_state["root"], "class_embeddings")


def structure_cache_dir() -> str | None:
  """Where model structures are kept, or None when ``enable_caches`` was not called."""
  return None if _state["root"] is None else os.path.join(_state["root"], "model_structure")


def structure_key(config) -> str:
  """Cache key of the model structure: the full config, the package code, flax's and jax's
  versions."""
  import flax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  spec = {"config": repr(config), "code": package_source_digest(), "flax": flax.__version__,
          "jax": jax.__version__}
  return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def load_structure(key: str, cache_dir: str):
  """``(graphdef, abstract_state)`` kept under ``key``, or None (absent, torn or unreadable)."""
  try:
    with open(os.path.join(cache_dir, key + ".pkl"), "rb") as f:
      return pickle.load(f)
  except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError):
    return None  # absent, a torn write, or written by code that no longer unpickles


def save_structure(key: str, cache_dir: str, graphdef, abstract_state) -> None:
  _write_atomically(os.path.join(cache_dir, key + ".pkl"),
                    lambda f: pickle.dump((graphdef, abstract_state), f))


def _write_atomically(path: str, write) -> None:
  os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
  tmp = f"{path}.{os.getpid()}.tmp"
  with open(tmp, "wb") as f:
    write(f)
  os.replace(tmp, path)  # atomic: readers never see half a file


def executable_cache_dir() -> str | None:
  """Where ``cached_jit`` keeps executables, or None when ``enable_caches`` was not called."""
  return None if _state["root"] is None else os.path.join(_state["root"], "executables")


@functools.lru_cache(maxsize=4)
def package_source_digest(package: str | None = None) -> str:
  """SHA-256 of every ``.py`` file of ``package`` (default: this package's folder): any code
  edit makes every kept structure and executable stale."""
  if package is None:
    import groupvit_jax  # pylint: disable=g-import-not-at-top
    package = os.path.dirname(os.path.abspath(groupvit_jax.__file__))
  h = hashlib.sha256()
  for folder, dirs, files in sorted(os.walk(package)):
    dirs.sort()
    for name in sorted(f for f in files if f.endswith(".py")):
      with open(os.path.join(folder, name), "rb") as f:
        h.update(os.path.relpath(os.path.join(folder, name), package).encode() + f.read())
  return h.hexdigest()


@functools.lru_cache(maxsize=64)
def graphdef_digest(graphdef) -> str:
  """SHA-256 of a Flax graph definition's text, function addresses removed (they change from
  process to process; the function names stay)."""
  return hashlib.sha256(re.sub(r" at 0x[0-9a-f]+", "", repr(graphdef)).encode()).hexdigest()


def _signature(args) -> str:
  """Tree structure, shapes, dtypes and shardings of ``args`` (what an executable is built for)."""
  import jax  # pylint: disable=g-import-not-at-top
  leaves, tree = jax.tree.flatten(args)
  return repr((str(tree), [(tuple(x.shape), str(x.dtype), str(getattr(x, "sharding", None)))
                           for x in leaves]))


def executable_key(name: str, static: str, args) -> str:
  """Cache key of one executable: the function, its static arguments, the argument signature,
  the package code, JAX's versions and flags, and the devices."""
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  spec = {"name": name, "static": static, "args": _signature(args),
          "code": package_source_digest(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "x64": bool(jax.config.jax_enable_x64),
          "precision": str(jax.config.jax_default_matmul_precision),
          "devices": [d.device_kind for d in jax.devices()]}
  return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


class cached_jit:  # pylint: disable=invalid-name  # used like jax.jit
  """A jitted function whose executables are kept on disk (``executable_cache_dir``) with
  ``jax.experimental.serialize_executable``: a later process loads them instead of tracing,
  lowering and looking up XLA's cache (~1 s per call of the released model's segmentation on
  2 cores). With the caches off it is the jitted function itself.

  Args:
    jitted: the ``jax.jit`` function.
    name, static: what, with the argument signature, keys an executable (``static``: a string
      of everything the function closes over, e.g. the model's graph digest and the bucket).
  """

  def __init__(self, jitted: Callable, name: str, static: str):
    self.jitted, self.name, self.static = jitted, name, static
    self._loaded: dict[str, Any] = {}
    self._keys: dict[tuple, str] = {}

  def __call__(self, *args):
    cache_dir = executable_cache_dir()
    if cache_dir is None:
      return self.jitted(*args)
    import jax  # pylint: disable=g-import-not-at-top
    leaves, tree = jax.tree.flatten(args)
    # The key hashes strings of every leaf's sharding; a call with the same structure, shapes,
    # dtypes and shardings (every batch of a dataset) reuses it instead of rebuilding it.
    spec = (tree, tuple((x.shape, x.dtype, getattr(x, "sharding", None)) for x in leaves))
    key = self._keys.get(spec)
    if key is None:
      key = self._keys[spec] = executable_key(self.name, self.static, args)
    fn = self._loaded.get(key)
    if fn is None:
      fn = _load_executable(key, cache_dir)
      if fn is None:
        with _xla_cache_bypassed():
          fn = self.jitted.lower(*args).compile()
        _save_executable(key, cache_dir, fn)
      self._loaded[key] = fn
    return fn(*args)


@contextlib.contextmanager
def _xla_cache_bypassed():
  """Compiles within it neither read nor write XLA's persistent cache. An executable XLA:CPU read
  back from that cache serializes without its kernels ("Function wrapped_iota not found" when
  the kept copy runs), so what ``cached_jit`` keeps is always compiled afresh. (JAX decides once
  per process whether its cache is used; the switch is that private function.)"""
  from jax._src import compilation_cache  # pylint: disable=g-import-not-at-top
  original = compilation_cache.is_cache_used
  compilation_cache.is_cache_used = lambda backend: False
  try:
    yield
  finally:
    compilation_cache.is_cache_used = original


def _load_executable(key: str, cache_dir: str):
  from jax.experimental import serialize_executable  # pylint: disable=g-import-not-at-top
  try:
    with open(os.path.join(cache_dir, key + ".pkl"), "rb") as f:
      payload, in_tree, out_tree = pickle.load(f)
    return serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
  except Exception as e:  # pylint: disable=broad-except  # absent, torn, or from another runtime
    if not isinstance(e, FileNotFoundError):
      logging.warning("executable cache entry %s unusable (%s: %s); compiling again", key,
                      type(e).__name__, e)
    return None


def _save_executable(key: str, cache_dir: str, compiled) -> None:
  from jax.experimental import serialize_executable  # pylint: disable=g-import-not-at-top
  try:
    parts = serialize_executable.serialize(compiled)
  except Exception as e:  # pylint: disable=broad-except  # a backend without serialization
    logging.warning("executable not kept (%s: %s)", type(e).__name__, e)
    return
  _write_atomically(os.path.join(cache_dir, key + ".pkl"), lambda f: pickle.dump(parts, f))


def text_tower_digest(model) -> str:
  """SHA-256 of everything class embeddings depend on: the text encoder's and text projector's
  variables (names, dtypes, shapes, bytes) and the text config. [Reads about 90 MB for the
  released model; ~0.1 s.]"""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  h = hashlib.sha256(repr(model.config.text).encode())
  for part in (model.text_encoder, model.text_projector):
    for path, var in sorted(nnx.to_flat_state(nnx.state(part)), key=lambda kv: str(kv[0])):
      value = np.asarray(var.get_value())
      h.update(f"{path}:{value.dtype}:{value.shape}".encode())
      h.update(np.ascontiguousarray(value).tobytes())
  return h.hexdigest()


def embedding_key(model, names: Sequence[str], templates: Sequence[str]) -> str:
  """Cache key of a vocabulary's embeddings: text weights, compute dtype, names, templates."""
  spec = {"weights": text_tower_digest(model), "dtype": str(model.config.dtype),
          "names": list(names), "templates": list(templates)}
  return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def load_embeddings(key: str, cache_dir: str) -> np.ndarray | None:
  path = os.path.join(cache_dir, key + ".npy")
  try:
    return np.load(path, allow_pickle=False)
  except (OSError, ValueError):  # absent, or a torn write from an interrupted run
    return None


def save_embeddings(key: str, cache_dir: str, embeddings: np.ndarray) -> None:
  _write_atomically(os.path.join(cache_dir, key + ".npy"),
                    lambda f: np.save(f, embeddings, allow_pickle=False))
