"""Helpers shared by the training tests: small webdataset shards, the tiny training config, and a
fixture that makes XLA compile fast (fewer optimisations, a per-session compilation cache)."""

from __future__ import annotations

import contextlib
import io
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]


def jpeg_bytes(seed: int, size=(40, 30)) -> bytes:
  rgb = np.random.default_rng(seed).integers(0, 255, size + (3,), dtype=np.uint8)
  buf = io.BytesIO()
  Image.fromarray(rgb).save(buf, format="JPEG")
  return buf.getvalue()


CAPTIONS = ("a dog running on the beach", "two cats sleeping on a red sofa",
            "a man riding a horse near the mountains", "children playing football in a park",
            "a plate of pasta with tomatoes", "an old car parked in the street")


def write_shards(directory, *, num_shards: int = 4, per_shard: int = 10, corrupt=(),
                 empty_caption=(), missing_caption=()) -> list[str]:
  """img2dataset-style shards ``00000.tar...``; ``corrupt``/``empty_caption``/``missing_caption``
  are ``(shard, index)`` pairs of bad samples. Returns the shard paths."""
  from input_pipeline.shard_writer import ShardWriter  # pylint: disable=g-import-not-at-top
  directory = pathlib.Path(directory)
  paths, n = [], 0
  for s in range(num_shards):
    path = str(directory / f"{s:05d}.tar")
    with ShardWriter(path) as w:
      for i in range(per_shard):
        key = f"{s:05d}{i:04d}"
        parts = {"jpg": jpeg_bytes(n), "txt": f"{CAPTIONS[n % len(CAPTIONS)]} {n}",
                 "json": {"key": key, "status": "success"}}
        if (s, i) in corrupt:
          parts["jpg"] = b"\xff\xd8\xff\xe0 truncated jpeg"
        if (s, i) in empty_caption:
          parts["txt"] = "  \n"
        if (s, i) in missing_caption:
          del parts["txt"]
        w.write(key, parts)
        n += 1
    paths.append(path)
  return paths


def load_config_file(name: str):
  """The module ``configs/<name>.py`` (as the entry point loads it, by path)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(f"configs_{name}", REPO / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def tiny_config(**overrides):
  """``configs/tiny.py`` with ``overrides`` ({'input.batch_size': 8, ...})."""
  config = load_config_file("tiny").get_config()
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


@contextlib.contextmanager
def optimizations_off():
  """XLA with most optimizations off (faster compiles), restored afterwards: for tests where only
  compile time matters and results are compared with programs compiled the same way."""
  import jax  # pylint: disable=g-import-not-at-top
  old = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  try:
    yield
  finally:
    jax.config.update("jax_disable_most_optimizations", old)


def abstract_training_setup(config, mesh_axes, total_steps: int = 6) -> dict:
  """What the loop builds before restoring: model config, optimizer, mesh, rules, the abstract
  state with its shardings and the data iterator (``config.input``, seed 0)."""
  from groupvit_jax import optim  # pylint: disable=g-import-not-at-top
  from groupvit_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top
  cfg = state_lib.model_config(config)
  tx, _ = optim.make_optimizer(config.optim, global_batch=int(config.input.batch_size),
                               total_steps=total_steps)
  mesh = state_lib.make_mesh(mesh_axes)
  rules = state_lib.rules_from_config(config.sharding_rules)
  _, abstract = state_lib.abstract_state(cfg, tx)
  shardings = state_lib.state_shardings(abstract, tx, mesh, rules)
  data = pipeline.make_train_iter(config.input, mesh=mesh, rules=rules, seed=0)
  return dict(cfg=cfg, tx=tx, mesh=mesh, rules=rules, abstract=abstract, shardings=shardings,
              data=data, target=state_lib.with_shardings(abstract, shardings))


@pytest.fixture(scope="module")
def fast_compile(tmp_path_factory):
  """Cheaper XLA compilation for this module, restored afterwards; the cache is per session."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
  cache = tmp_path_factory.getbasetemp() / "jax_cache"
  old = {k: jax.config.values[k] for k in (
      "jax_disable_most_optimizations", "jax_compilation_cache_dir",
      "jax_persistent_cache_min_compile_time_secs")}
  jax.config.update("jax_disable_most_optimizations", True)
  jax.config.update("jax_compilation_cache_dir", str(cache))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  compilation_cache.reset_cache()
  yield str(cache)
  for k, v in old.items():
    jax.config.update(k, v)
  compilation_cache.reset_cache()


def subprocess_env(cache_dir: str | None = None, devices: int = 8) -> dict[str, str]:
  """Environment for a child training process: simulated devices, this checkout first."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  env.pop("JAX_COORDINATOR_ADDRESS", None)
  if cache_dir:
    env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  return env
