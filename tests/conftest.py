"""Test setup: 8 simulated CPU devices (set before jax is imported), shared data, tiny models."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The on-disk caches (compiled programs, class embeddings) stay off unless a test turns them on.
os.environ.setdefault("GROUPVIT_JAX_CACHE_DIR", "")

import pathlib  # noqa: E402

import pytest  # noqa: E402
from train_testlib import optimizations_off  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("GROUPVIT_SHARED_DIR", REPO.parent / "shared"))


def shared_path(*parts) -> pathlib.Path:
  """A path under ../shared; fails (not skips) when the shared data is missing."""
  path = SHARED.joinpath(*parts)
  if not path.exists():
    pytest.fail(f"shared test data missing: {path} (set GROUPVIT_SHARED_DIR to the shared folder)")
  return path


@pytest.fixture(scope="session")
def voc_root() -> pathlib.Path:
  """The shared PASCAL VOC 2012 val sample: the folder that holds VOC2012/."""
  return shared_path("data", "VOCdevkit")


@pytest.fixture(scope="session")
def tiny_config():
  from groupvit_jax.model_config import tiny
  return tiny()


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
  from flax import nnx
  from groupvit_jax import GroupViT
  return GroupViT(tiny_config, rngs=nnx.Rngs(0))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model) -> pathlib.Path:
  """A tiny random model saved in the project's own format (anything load_pretrained reads)."""
  from groupvit_jax import save_pretrained
  out = tmp_path_factory.mktemp("ckpt") / "tiny"
  save_pretrained(tiny_model, str(out))
  return out


@pytest.fixture
def fast_compiles():
  """XLA with most optimizations off, for tests where only compile time matters (results are
  compared with programs compiled the same way)."""
  with optimizations_off():
    yield
