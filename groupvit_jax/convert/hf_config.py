"""transformers ``GroupViTConfig`` (``config.json``) <-> ``GroupViTConfig``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from groupvit_jax.model_config import (GroupViTConfig, TextConfig, VisionConfig,
                                       check_reference_compatible)

# HF hidden_act -> our activation names.
_ACT_FROM_HF = {"gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_new": "gelu_tanh",
                "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
_ACT_TO_HF = {"gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_tanh": "gelu_pytorch_tanh",
              "relu": "relu"}
# HF's pooling: eos_token_id == 2 (hub configs) means argmax(ids), the official rule.
_HF_ARGMAX_EOS = 2


def _act(name: str, where: str) -> str:
  if name not in _ACT_FROM_HF:
    raise ValueError(f"{where}.hidden_act={name!r} is not supported; expected one of "
                     f"{sorted(_ACT_FROM_HF)}")
  return _ACT_FROM_HF[name]


def _pair(x) -> tuple:
  return tuple(x) if isinstance(x, Iterable) and not isinstance(x, str) else (x, x)


def _single(x, where: str) -> int:
  a, b = _pair(x)
  if a != b:
    raise ValueError(f"{where}={x!r}: only square sizes are supported")
  return int(a)


def from_hf(cfg: dict[str, Any]) -> GroupViTConfig:
  """Our config from a transformers GroupViT ``config.json`` dict."""
  if cfg.get("model_type", "groupvit") != "groupvit":
    raise ValueError(f"config.json has model_type={cfg.get('model_type')!r}, expected 'groupvit'")
  v = dict(cfg.get("vision_config") or {})
  t = dict(cfg.get("text_config") or {})
  hv, ht = VisionConfig(), TextConfig()
  c = int(v.get("hidden_size", 384))
  depths = tuple(v.get("depths", (6, 3, 3)))
  n = len(depths)
  heads = int(v.get("num_attention_heads", 6))
  groups = tuple(v.get("num_group_tokens", (64, 8, 0)))
  outputs = tuple(v.get("num_output_groups", (64, 8, 8)))
  for s in range(1, n):
    if groups[s] > 0 and outputs[s - 1] != groups[s - 1]:
      raise ValueError(
          f"vision_config: stage {s} has a group projector whose input is num_output_groups"
          f"[{s - 1}]={outputs[s - 1]} in transformers but num_group_tokens[{s - 1}]="
          f"{groups[s - 1]} in the reference; this combination cannot run in either")
  vision = VisionConfig(
      img_size=_single(v.get("image_size", 224), "vision_config.image_size"),
      patch_size=_single(v.get("patch_size", 16), "vision_config.patch_size"),
      in_chans=int(v.get("num_channels", 3)), embed_dim=c, depths=depths,
      num_heads=(heads,) * n, num_group_tokens=groups, num_output_groups=outputs[:n - 1],
      mlp_ratio=int(v.get("intermediate_size", 4 * c)) / c, qkv_bias=True,
      drop_path_rate=hv.drop_path_rate, hard_assignment=True,
      assign_eps=float(v.get("assign_eps", 1.0)),
      assign_mlp_ratio=tuple(float(r) for r in _pair(v.get("assign_mlp_ratio", (0.5, 4)))),
      layer_norm_eps=float(v.get("layer_norm_eps", 1e-5)),
      act=_act(v.get("hidden_act", "gelu"), "vision_config"))
  w = int(t.get("hidden_size", 256))
  eos = t.get("eos_token_id", 49407)
  text = TextConfig(
      context_length=int(t.get("max_position_embeddings", 77)),
      vocab_size=int(t.get("vocab_size", 49408)), width=w,
      layers=int(t.get("num_hidden_layers", 12)), heads=int(t.get("num_attention_heads", 4)),
      mlp_ratio=int(t.get("intermediate_size", 4 * w)) / w,
      layer_norm_eps=float(t.get("layer_norm_eps", 1e-5)),
      act=_act(t.get("hidden_act", "quick_gelu"), "text_config"),
      eos_token_id=None if eos in (None, _HF_ARGMAX_EOS) else int(eos))
  init = float(cfg.get("logit_scale_init_value", 2.6592))
  return GroupViTConfig(vision=vision, text=text, proj_dim=int(cfg.get("projection_dim", 256)),
                        proj_hidden_dim=int(cfg.get("projection_intermediate_dim", 4096)),
                        proj_num_layers=2, contrast_temperature=math.exp(-init), multi_label=0)


def to_hf(config: GroupViTConfig) -> dict[str, Any]:
  """A transformers ``config.json`` dict for ``config``; raises where transformers cannot hold it
  (``ReferenceDepartureError`` for a departure from the reference, ValueError otherwise)."""
  check_reference_compatible(config, "transformers")
  v, t = config.vision, config.text
  problems = []
  if len(set(v.num_heads)) != 1:
    problems.append(f"per-stage heads {v.num_heads} (transformers has one num_attention_heads)")
  if not v.hard_assignment:
    problems.append("soft assignment (transformers always uses hard gumbel assignment)")
  if config.proj_num_layers != 2:
    problems.append(f"proj_num_layers={config.proj_num_layers} (transformers has 2)")
  for s in range(1, v.num_stages):
    if v.num_group_tokens[s] > 0 and v.num_output_groups[s - 1] != v.num_group_tokens[s - 1]:
      problems.append(f"stage {s - 1} with num_output_groups != num_group_tokens (transformers "
                      "feeds num_output_groups into the next group projector)")
  if problems:
    raise ValueError("this model cannot be written in transformers format: " + "; ".join(problems))
  last = v.num_output_groups[-1] if v.num_output_groups else 0
  vision = {
      "model_type": "groupvit_vision_model", "hidden_size": v.embed_dim,
      "intermediate_size": int(round(v.embed_dim * v.mlp_ratio)), "depths": list(v.depths),
      "num_hidden_layers": sum(v.depths), "num_group_tokens": list(v.num_group_tokens),
      "num_output_groups": list(v.num_output_groups) + [last],
      "num_attention_heads": v.num_heads[0], "image_size": v.img_size, "patch_size": v.patch_size,
      "num_channels": v.in_chans, "hidden_act": _ACT_TO_HF[v.act],
      "layer_norm_eps": v.layer_norm_eps, "dropout": 0.0, "attention_dropout": 0.0,
      "initializer_range": 0.02, "initializer_factor": 1.0, "assign_eps": v.assign_eps,
      "assign_mlp_ratio": list(v.assign_mlp_ratio),
  }
  text = {
      "model_type": "groupvit_text_model", "vocab_size": t.vocab_size, "hidden_size": t.width,
      "intermediate_size": int(round(t.width * t.mlp_ratio)), "num_hidden_layers": t.layers,
      "num_attention_heads": t.heads, "max_position_embeddings": t.context_length,
      "hidden_act": _ACT_TO_HF[t.act], "layer_norm_eps": t.layer_norm_eps, "dropout": 0.0,
      "attention_dropout": 0.0, "initializer_range": 0.02, "initializer_factor": 1.0,
      "pad_token_id": 1, "bos_token_id": 49406,
      "eos_token_id": _HF_ARGMAX_EOS if t.eos_token_id is None else t.eos_token_id,
  }
  return {
      "architectures": ["GroupViTModel"], "model_type": "groupvit",
      "projection_dim": config.proj_dim, "projection_intermediate_dim": config.proj_hidden_dim,
      "logit_scale_init_value": config.logit_scale_init, "initializer_range": 0.02,
      "initializer_factor": 1.0, "output_segmentation": False, "dtype": "float32",
      "text_config": text, "vision_config": vision,
  }
