"""Facts with one home: the mesh and the data-parallel size (sharding.py), the batch's structure
and the input backends (input_pipeline/pipeline.py), and the one switch that turns an evaluation
off (train/evals.py)."""

import jax
import numpy as np
import pytest

from groupvit_jax import sharding as shd
from groupvit_jax.model_config import tiny
from groupvit_jax.train import config_lib, evals as evals_lib
from input_pipeline import pipeline


def test_data_parallel_size_is_the_product_of_the_batch_rule_axes():
  assert jax.device_count() == 8  # tests/conftest.py
  for axes, want in [((("data", 2), ("fsdp", 4)), 8), ((("data", 2), ("model", 4)), 2),
                     ((("data", -1),), 8), ((("model", 8),), 1)]:
    mesh = shd.make_mesh(axes)
    assert shd.data_parallel_size(mesh) == want, axes
  rules = (("batch", "data"),)
  assert shd.data_parallel_size(shd.make_mesh((("data", 2), ("fsdp", 4))), rules) == 2
  mesh = shd.data_mesh(jax.devices()[:2])
  assert dict(mesh.shape) == {"data": 2} and shd.data_parallel_size(mesh) == 2


def test_batch_spec_declares_what_the_shardings_and_synthetic_batches_hold():
  config = config_lib.base_config(tiny())
  config.input.batch_size, config.input.image_size, config.input.multi_label = 8, 32, 2
  config.input.context_length = 16
  spec = pipeline.batch_spec(config.input)
  assert spec == {"image": ((8, 32, 32, 3), np.float32), "text": ((8, 3, 16), np.int32)}
  mesh = shd.make_mesh((("data", 2), ("fsdp", 4)))
  shardings = pipeline.batch_shardings(mesh, shd.DEFAULT_RULES, config.input)
  assert set(shardings) == set(spec)
  for key, (shape, _) in spec.items():
    assert shardings[key].spec[0] == ("data", "fsdp") and len(shardings[key].spec) <= len(shape)
  config.input.backend = "synthetic"
  host = next(iter(pipeline.make_host_dataset(config.input, seed=0, process_index=0,
                                              process_count=1)))
  for key, (shape, dtype) in spec.items():
    assert host[key].shape == shape and host[key].dtype == dtype


def test_backends_come_from_one_table():
  config = config_lib.base_config(tiny())
  config.input.backend = "parquet"
  with pytest.raises(ValueError, match=r"input.backend must be one of \['synthetic', 'tfds', "
                     r"'webdataset'\]"):
    config_lib.validate_config(config)
  with pytest.raises(ValueError, match="input.backend must be one of"):
    pipeline.make_host_dataset(config.input, seed=0, process_index=0, process_count=1)


class _Counting:
  built = 0

  def __init__(self, eval_config, *, model_config, input_config):
    del eval_config, model_config, input_config
    _Counting.built += 1


def test_every_steps_zero_turns_an_evaluation_off(monkeypatch):
  import ml_collections  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(evals_lib.EVAL_TYPES, "counting", f"{__name__}:_Counting")
  evals = ml_collections.ConfigDict({"a": {"type": "counting", "every_steps": 0},
                                     "b": {"type": "counting", "every_steps": 3}})
  periodic = evals_lib.PeriodicEvals(evals, model_config=None, input_config=None, total_steps=10)
  assert periodic.names == ["b"] and _Counting.built == 1  # "a" is not even built
  assert [s for s in range(1, 11) if periodic.due(s)] == [3, 6, 9, 10]
  config = config_lib.base_config(tiny())
  config.input.backend = "synthetic"
  config.evals.retrieval.every_steps = -1
  with pytest.raises(ValueError, match=r"evals.retrieval.every_steps must be >= 0 \(0: off\)"):
    config_lib.validate_config(config)
