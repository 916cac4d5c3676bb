"""``load_pretrained``: one entry point for every weight source, and ``export_hf``."""

from __future__ import annotations

import json
import os

import numpy as np
from safetensors.numpy import save_file as save_safetensors

from groupvit_jax.convert import flat_state, hf_config, hf_keys, hub, native, official_keys, readers
from groupvit_jax.convert import workdir
from groupvit_jax.convert.official_config import infer_official_config
from groupvit_jax.model_config import GroupViTConfig, check_reference_compatible
from groupvit_jax.models.groupvit import GroupViT

_LAYOUTS = (
    "  - a Hugging Face hub name ('nvidia/groupvit-gcc-yfcc'), read through the hub's cache;\n"
    "  - a groupvit_jax directory (groupvit_config.json + weights/), written by `groupvit-jax "
    "convert` or the trainer's export;\n"
    "  - a training workdir (config.json + checkpoints/<step>/) or one checkpoints/<step> dir;\n"
    "  - a transformers directory (config.json with model_type 'groupvit' + model.safetensors or "
    "pytorch_model.bin);\n"
    "  - a weights file: official .pth (keys img_encoder.*, text_encoder.*, ...), or a "
    "transformers .bin/.safetensors state dict.")


def _model_from_official(sd: dict[str, np.ndarray], config: GroupViTConfig, source: str) -> GroupViT:
  model = flat_state.abstract_model(config)
  flat, missing, unexpected, mismatched = official_keys.from_official(
      sd, flat_state.expected_shapes(model))
  if missing or unexpected or mismatched:
    raise flat_state.CheckpointMismatchError(source, missing, unexpected, mismatched)
  return flat_state.fill(model, flat, source)


def _is_hf_state_dict(sd) -> bool:
  return any(k.startswith(("vision_model.", "text_model.")) for k in sd)


def _apply_overrides(config: GroupViTConfig, overrides: dict) -> GroupViTConfig:
  return config.replace(**{k: v for k, v in overrides.items() if v is not None})


def load_pretrained(path: str, *, config: GroupViTConfig | None = None, dtype: str | None = None,
                    param_dtype: str | None = None, revision: str | None = None) -> GroupViT:
  """Loads a ready GroupViT from any supported source (see ``_LAYOUTS``).

  Args:
    path: directory, weights file, or hub name (``org/name`` or ``hf://org/name``; a local path
      of that name wins).
    config: architecture to load into; by default read from the source (for an official
      ``.pth``, inferred from tensor shapes with 64-dim heads).
    dtype / param_dtype: override the compute / parameter dtype (e.g. 'bfloat16').
    revision: branch, tag or commit of a hub name (default: main).
  Raises:
    FileNotFoundError (a hub name offline and not cached: ``hub.HubCheckpointNotFoundError``), CheckpointMismatchError (lists missing/unexpected keys and shape
    mismatches), TorchMissingError for a pickle without torch installed.
  """
  path = os.fspath(path)
  overrides = {"dtype": dtype, "param_dtype": param_dtype}
  if hub.is_hub_name(path):
    path = hub.resolve(path, revision)
  elif revision is not None:
    raise ValueError(f"{path}: revision={revision!r} applies to hub names only, not local paths")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such file or directory")
  if os.path.isdir(path):
    if native.is_native(path):
      cfg = _apply_overrides(config or native.read_config(path), overrides)
      return flat_state.fill(flat_state.abstract_model(cfg), native.read_weights(path), path)
    if workdir.is_workdir(path):
      cfg, flat = workdir.read(path, config)
      return flat_state.fill(flat_state.abstract_model(_apply_overrides(cfg, overrides)), flat, path)
    cfg_path = os.path.join(path, "config.json")
    if os.path.isfile(cfg_path):
      with open(cfg_path) as f:
        hf_cfg = json.load(f)
      if hf_cfg.get("model_type") == "groupvit":
        cfg = _apply_overrides(config or hf_config.from_hf(hf_cfg), overrides)
        sd = hf_keys.hf_to_official(readers.read_hf_weights(path))
        return _model_from_official(sd, cfg, path)
    raise ValueError(f"{path}: not a GroupViT checkpoint directory. Expected one of:\n{_LAYOUTS}")
  sd = readers.read_weights_file(path)
  if _is_hf_state_dict(sd):
    sd = hf_keys.hf_to_official(sd)
  if not any(k.startswith("img_encoder.") for k in sd):
    raise ValueError(f"{path}: holds no GroupViT weights (first keys: {list(sd)[:5]}). "
                     f"Expected one of:\n{_LAYOUTS}")
  cfg = _apply_overrides(config or infer_official_config(sd), overrides)
  return _model_from_official(sd, cfg, path)


def save_pretrained(model: GroupViT, directory: str) -> str:
  """Writes the project's own format (loadable by ``load_pretrained``)."""
  return native.save(model, directory)


def to_official_state_dict(model: GroupViT) -> dict[str, np.ndarray]:
  """The official ``state_dict`` (keys ``img_encoder.*``, ...); refuses a model that departs from
  the reference (the official code would run it differently)."""
  check_reference_compatible(model.config, "official GroupViT")
  return official_keys.to_official(flat_state.to_flat(model))


def export_hf(model: GroupViT, directory: str) -> str:
  """Writes a transformers directory (``config.json`` + ``model.safetensors``) that
  ``transformers.GroupViTModel.from_pretrained`` loads."""
  cfg = hf_config.to_hf(model.config)
  sd = hf_keys.official_to_hf(to_official_state_dict(model))
  # (np.asarray, not ascontiguousarray: that turns the 0-d logit_scale into shape [1].)
  sd = {k: np.asarray(v.astype(np.float32) if v.dtype.kind == "f" else v, order="C")
        for k, v in sd.items()}
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
  save_safetensors(sd, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
  return os.path.abspath(directory)

