"""Checkpoint formats: the project's own format, export to transformers, key tables, and the
errors users see for bad or mismatched checkpoints."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

import groupvit_jax as gv
from groupvit_jax.cli.main import main as cli_main
from groupvit_jax.convert import flat_state, hf_keys, official_keys, readers
from groupvit_jax.model_config import gcc_yfcc, tiny
from reference_models import TINY_HF, assert_parity, hf_state_dict_numpy, make_hf_model

X = np.random.RandomState(0).randn(2, 32, 32, 3).astype(np.float32)
IDS = gv.tokenize(["a cat on a mat", "two dogs"], context_length=16)


def _randomised_tiny(seed=0, **overrides):
  """A tiny model whose every variable (BatchNorm statistics included) is random."""
  model = gv.GroupViT(tiny(**overrides), rngs=nnx.Rngs(seed))
  rng = np.random.RandomState(seed)
  for key, var in flat_state.flat_variables(model).items():
    v = np.asarray(var.get_value())
    if key.endswith("/var"):
      new = 0.5 + rng.rand(*v.shape)
    elif key.endswith("logit_scale"):
      new = np.float32(2.2)
    else:
      new = v + 0.05 * rng.randn(*v.shape)
    var.set_value(jnp.asarray(new, v.dtype))
  return model


def _same_outputs(a, b):
  oa, ob = a(pixel_values=X, input_ids=IDS), b(pixel_values=X, input_ids=IDS)
  for name in ("image_embeds", "text_embeds", "logits_per_image"):
    np.testing.assert_allclose(np.asarray(oa[name]), np.asarray(ob[name]), atol=1e-6)


def test_native_roundtrip(tmp_path):
  model = _randomised_tiny()
  gv.save_pretrained(model, str(tmp_path / "m"))
  loaded = gv.load_pretrained(str(tmp_path / "m"))
  assert loaded.config == model.config
  for k, v in flat_state.to_flat(model).items():
    np.testing.assert_array_equal(flat_state.to_flat(loaded)[k], v)
  _same_outputs(model, loaded)
  with pytest.raises(FileExistsError):
    gv.save_pretrained(model, str(tmp_path / "m"))


def test_native_bfloat16_override(tmp_path):
  gv.save_pretrained(_randomised_tiny(), str(tmp_path / "m"))
  model = gv.load_pretrained(str(tmp_path / "m"), dtype="bfloat16")
  assert model.config.dtype == "bfloat16"
  assert model.get_image_features(X).dtype == jnp.float32


def test_export_hf_runs_in_transformers(tmp_path):
  model = _randomised_tiny(seed=1)
  gv.export_hf(model, str(tmp_path / "hf"))
  hf = transformers.GroupViTModel.from_pretrained(str(tmp_path / "hf")).eval()
  assert_parity(model, hf, X, IDS)
  # And back: the transformers directory loads into the same weights.
  again = gv.load_pretrained(str(tmp_path / "hf"))
  for k, v in flat_state.to_flat(model).items():
    np.testing.assert_allclose(flat_state.to_flat(again)[k], v, atol=0, rtol=0)


def test_hf_official_key_tables_are_inverse():
  hf = make_hf_model(TINY_HF, seed=2)
  sd = hf_state_dict_numpy(hf)
  official = hf_keys.hf_to_official(sd)
  back = hf_keys.official_to_hf(official)
  assert set(back) == set(sd) - {"text_model.embeddings.position_ids"}
  for k, v in back.items():
    np.testing.assert_array_equal(v, sd[k])


def test_official_key_count_matches_spec():
  """Spec 6.2: the YFCC checkpoint has 407 official keys (BatchNorm buffers included)."""
  model = flat_state.abstract_model(gcc_yfcc())
  flat = {k: np.zeros(s, np.float32) for k, s in flat_state.expected_shapes(model).items()}
  keys = official_keys.to_official(flat)
  assert len(keys) == 407
  assert keys["img_encoder.layers.0.blocks.0.attn.qkv.weight"].shape == (1152, 384)
  assert keys["img_projector.linear_hidden.0.weight"].shape == (4096, 384, 1)
  assert keys["text_encoder.transformer.resblocks.0.attn.in_proj_weight"].shape == (768, 256)
  assert keys["img_encoder.layers.1.group_projector.1.fc1.weight"].shape == (192, 64)
  assert keys["img_encoder.patch_embed.proj.weight"].shape == (384, 3, 16, 16)


def test_mismatch_lists_every_problem(tmp_path):
  model = _randomised_tiny()
  sd = gv.convert.load.to_official_state_dict(model)
  del sd["img_encoder.norm.weight"]
  sd["img_encoder.extra.weight"] = np.zeros(3, np.float32)
  sd["logit_scale"] = np.zeros((2,), np.float32)
  path = tmp_path / "bad.pth"
  torch.save({"model": {k: torch.tensor(np.asarray(v)) for k, v in sd.items()}}, str(path))
  with pytest.raises(gv.CheckpointMismatchError) as e:
    gv.load_pretrained(str(path), config=model.config)
  msg = str(e.value)
  assert "img_encoder.norm.weight" in msg and "img_encoder.extra.weight" in msg
  assert "logit_scale: checkpoint (2,), model ()" in msg
  assert e.value.missing == ["img_encoder.norm.weight"]


def test_pos_embed_of_another_resolution_is_resized_on_load(tmp_path):
  """Like the reference loader: a square position embedding of another length is resized."""
  model = _randomised_tiny()
  sd = gv.convert.load.to_official_state_dict(model)
  bigger = tiny(img_size=48)
  loaded = gv.load_pretrained(_save_pth(sd, tmp_path), config=model.config.replace(vision=bigger.vision))
  assert loaded.img_encoder.pos_embed.get_value().shape == (1, 36, 32)


def _save_pth(sd, tmp_path, name="m.pth"):
  path = tmp_path / name
  torch.save({"model": {k: torch.tensor(np.asarray(v)) for k, v in sd.items()}}, str(path))
  return str(path)


def test_official_pth_without_torch_says_so(tmp_path, monkeypatch):
  path = _save_pth(gv.convert.load.to_official_state_dict(_randomised_tiny()), tmp_path)
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(gv.TorchMissingError, match="needs torch"):
    readers.read_weights_file(path)


def test_not_a_checkpoint_directory(tmp_path):
  (tmp_path / "something.txt").write_text("hi")
  with pytest.raises(ValueError, match="transformers directory"):
    gv.load_pretrained(str(tmp_path))
  with pytest.raises(FileNotFoundError):
    gv.load_pretrained(str(tmp_path / "missing"))
  (tmp_path / "w.safetensors").write_bytes(b"garbage")
  with pytest.raises(ValueError, match="safetensors"):
    gv.load_pretrained(str(tmp_path / "w.safetensors"))


def test_export_refuses_what_transformers_cannot_hold(tmp_path):
  with pytest.raises(ValueError, match="soft assignment"):
    gv.export_hf(gv.GroupViT(tiny(hard_assignment=False), rngs=nnx.Rngs(0)), str(tmp_path))


def test_config_json_roundtrip_and_unknown_keys():
  cfg = gcc_yfcc()
  assert gv.GroupViTConfig.from_json(cfg.to_json()) == cfg
  with pytest.raises(ValueError, match="unknown model config keys"):
    gv.GroupViTConfig.from_dict({"visoin": {}})
  with pytest.raises(ValueError, match="model.vision"):
    gv.GroupViTConfig.from_dict({"vision": {"embed_dims": 3}})


def test_cli_convert_native_and_hf(tmp_path, capsys):
  src = tmp_path / "hf_src"
  hf = make_hf_model(TINY_HF, seed=3)
  hf.save_pretrained(str(src))
  assert cli_main(["convert", str(src), str(tmp_path / "native")]) == 0
  assert "wrote native" in capsys.readouterr().out
  assert cli_main(["convert", str(tmp_path / "native"), str(tmp_path / "hf_out"), "--to", "hf"]) == 0
  cfg = json.loads((tmp_path / "hf_out" / "config.json").read_text())
  assert cfg["model_type"] == "groupvit"
  again = transformers.GroupViTModel.from_pretrained(str(tmp_path / "hf_out")).eval()
  assert_parity(gv.load_pretrained(str(tmp_path / "native")), again, X, IDS)
  assert cli_main(["convert", str(src), str(tmp_path / "native")]) == 2  # not empty
  assert "not empty" in capsys.readouterr().err
  assert cli_main(["convert", str(tmp_path / "nope"), str(tmp_path / "x")]) == 2
  assert "no such file" in capsys.readouterr().err
