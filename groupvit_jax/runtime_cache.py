"""What repeat runs keep on disk: XLA's compiled programs, the class embeddings of each
vocabulary and the model's structure for each configuration, under one per-user folder.

Folder: ``$GROUPVIT_JAX_CACHE_DIR`` when set (an empty value turns both caches off), else
``$XDG_CACHE_HOME/groupvit_jax`` (``~/.cache/groupvit_jax``). The command line and the notebook
call ``enable_caches()``; library code never turns them on by itself.

The compilation cache is trusted code (JAX runs what it finds there), and so is the structure
cache (pickled Flax graph definitions): keep the folder private (it is made with mode 0700).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Sequence

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


def model_source_digest(package: str | None = None) -> str:
  """SHA-256 of the model code (``groupvit_jax/models/*.py``, the config module) of ``package``
  (default: this package's folder): an edit to any of them makes every kept structure stale."""
  if package is None:
    import groupvit_jax  # pylint: disable=g-import-not-at-top
    package = os.path.dirname(os.path.abspath(groupvit_jax.__file__))
  models = os.path.join(package, "models")
  files = [os.path.join(models, f) for f in sorted(os.listdir(models)) if f.endswith(".py")]
  h = hashlib.sha256()
  for path in files + [os.path.join(package, "model_config.py")]:
    with open(path, "rb") as f:
      h.update(os.path.basename(path).encode() + f.read())
  return h.hexdigest()


def structure_key(config) -> str:
  """Cache key of the model structure: the full config, the model code, flax's and jax's versions."""
  import flax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  spec = {"config": repr(config), "code": model_source_digest(), "flax": flax.__version__,
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
