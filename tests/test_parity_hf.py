"""Parity with transformers' GroupViT (the reference implementation) through every loader.

Each reference model has every parameter and BatchNorm statistic perturbed (reference_models.py).
Tolerances (fp32): 1e-4 on embeddings, logits, soft assignment maps, final segment tokens and
group embeddings (reference_models.assert_parity).
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import groupvit_jax as gv
from groupvit_jax.convert.hf_config import from_hf
from reference_models import (TINY_HF, assert_parity, hf_state_dict_numpy, make_hf_model,
                              official_from_hf)

TEXTS = ["a photo of a cat.", "a dog running on the grass", "two red cars"]


def _inputs(size: int, context_length: int, batch: int = 2, seed: int = 0):
  x = np.random.RandomState(seed).randn(batch, size, size, 3).astype(np.float32)
  return x, gv.tokenize(TEXTS, context_length=context_length)


@pytest.fixture(scope="module")
def tiny_hf():
  return make_hf_model(TINY_HF, seed=0)


def test_tiny_from_transformers_directory_safetensors(tiny_hf, tmp_path):
  tiny_hf.save_pretrained(str(tmp_path))
  assert (tmp_path / "model.safetensors").exists()
  model = gv.load_pretrained(str(tmp_path))
  assert_parity(model, tiny_hf, *_inputs(32, 16))


def test_tiny_from_transformers_directory_pytorch_bin(tiny_hf, tmp_path):
  tiny_hf.config.save_pretrained(str(tmp_path))
  torch.save(tiny_hf.state_dict(), str(tmp_path / "pytorch_model.bin"))
  model = gv.load_pretrained(str(tmp_path))
  assert_parity(model, tiny_hf, *_inputs(32, 16, seed=1))


class OpaqueConfig:
  """Stands for the OmegaConf object official training checkpoints pickle next to the weights."""

  def __init__(self):
    self.model = {"type": "MultiLabelContrastive"}


def test_tiny_from_official_pth(tiny_hf, tmp_path):
  sd = official_from_hf(hf_state_dict_numpy(tiny_hf), depths=[1, 1, 1], text_layers=1)
  path = tmp_path / "group_vit_tiny.pth"
  torch.save({"model": {k: torch.tensor(v) for k, v in sd.items()}, "config": OpaqueConfig(),
              "epoch": 3}, str(path))
  config = from_hf(tiny_hf.config.to_dict())  # heads are not visible in shapes
  model = gv.load_pretrained(str(path), config=config)
  assert_parity(model, tiny_hf, *_inputs(32, 16, seed=2))


def test_one_stage_variant(tmp_path):
  kw = copy.deepcopy(TINY_HF)
  kw["vision_config"].update(depths=[1, 1], num_hidden_layers=2, num_group_tokens=[6, 0],
                             num_output_groups=[3, 3])
  hf = make_hf_model(kw, seed=3)
  hf.save_pretrained(str(tmp_path))
  model = gv.load_pretrained(str(tmp_path))
  assert model.config.vision.num_output_groups == (3,)
  assert_parity(model, hf, *_inputs(32, 16, seed=3))


def test_unusual_config(tmp_path):
  """Sizes, activations and ratios no released model uses, to exercise the config mapping."""
  kw = dict(
      vision_config=dict(hidden_size=48, intermediate_size=100, depths=[2, 1, 1],
                         num_hidden_layers=4, num_group_tokens=[6, 3, 0],
                         num_output_groups=[6, 3, 3], num_attention_heads=3, image_size=48,
                         patch_size=12, assign_mlp_ratio=[0.25, 2], hidden_act="gelu_new",
                         layer_norm_eps=1e-6),
      text_config=dict(hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                       num_attention_heads=3, max_position_embeddings=12, eos_token_id=2),
      projection_dim=8, projection_intermediate_dim=20, logit_scale_init_value=2.0)
  hf = make_hf_model(kw, seed=4)
  hf.save_pretrained(str(tmp_path))
  model = gv.load_pretrained(str(tmp_path))
  assert model.config.text.eos_token_id is None  # eos 2 = argmax pooling, the official rule
  assert_parity(model, hf, *_inputs(48, 12, seed=4))


@pytest.fixture(scope="module")
def full_hf():
  return make_hf_model({"text_config": {"eos_token_id": 2}}, seed=5)


@pytest.fixture(scope="module")
def full_model(full_hf, tmp_path_factory):
  d = tmp_path_factory.mktemp("full_hf")
  full_hf.save_pretrained(str(d))
  return gv.load_pretrained(str(d))


def test_full_default_config_224(full_model, full_hf):
  assert full_model.config.vision == gv.VisionConfig(drop_path_rate=full_model.config.vision.drop_path_rate)
  assert_parity(full_model, full_hf, *_inputs(224, 77, seed=5))


def test_full_default_config_448(full_model, full_hf):
  """At 448x448 our 224 model interpolates its position embeddings (PyTorch bicubic); the
  reference is built with image_size=448 and embeddings interpolated by torch itself."""
  cfg = full_hf.config.to_dict()
  cfg["vision_config"]["image_size"] = 448
  hf448 = make_hf_model({k: cfg[k] for k in ("vision_config", "text_config", "projection_dim",
                                              "projection_intermediate_dim")}, seed=6)
  sd = full_hf.state_dict()
  pe = sd["vision_model.embeddings.position_embeddings"]  # [1, 196, C]
  grid = pe.reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
  sd["vision_model.embeddings.position_embeddings"] = F.interpolate(
      grid, size=(28, 28), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 784, -1)
  hf448.load_state_dict(sd)
  assert_parity(full_model, hf448.eval(), *_inputs(448, 77, batch=1, seed=6))


def test_full_config_inferred_from_official_pth(full_hf, tmp_path):
  """An official .pth carries no usable config: the architecture is read from the shapes."""
  sd = official_from_hf(hf_state_dict_numpy(full_hf), depths=[6, 3, 3], text_layers=12)
  sd["multi_label_logit_scale"] = np.float32(2.659)
  path = tmp_path / "official.pth"
  torch.save({"model": {k: torch.tensor(np.asarray(v)) for k, v in sd.items()}}, str(path))
  model = gv.load_pretrained(str(path))
  assert model.config.vision.num_heads == (6, 6, 6) and model.config.text.heads == 4
  assert model.config.multi_label == 3  # YFCC-style checkpoint
  assert_parity(model, full_hf, *_inputs(224, 77, batch=1, seed=7))
