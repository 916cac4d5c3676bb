"""Model hyper-parameters as frozen dataclasses (JSON round-trippable).

Field names follow the official GroupViT code (``models/group_vit.py``); defaults are the released
2-stage model (spec section 1.1 and 2.1). Training recipes live in ``configs/`` as ml_collections
files whose ``config.model`` section is turned into a ``GroupViTConfig`` by ``from_dict``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  """Image encoder (``img_encoder``)."""

  img_size: int = 224
  patch_size: int = 16
  in_chans: int = 3
  embed_dim: int = 384
  depths: tuple[int, ...] = (6, 3, 3)
  num_heads: tuple[int, ...] = (6, 6, 6)
  num_group_tokens: tuple[int, ...] = (64, 8, 0)
  num_output_groups: tuple[int, ...] = (64, 8)  # one entry per stage but the last
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  drop_path_rate: float = 0.1
  hard_assignment: bool = True
  assign_eps: float = 1.0
  assign_mlp_ratio: tuple[float, float] = (0.5, 4.0)
  layer_norm_eps: float = 1e-5
  act: str = "gelu"  # every vision MLP (exact erf GELU in the reference)

  # ---- departures from the reference (REFERENCE_DEPARTURES below) -------------------------------
  # Knobs for probing small models trained briefly from scratch (experiments/results/
  # shapes_demo_notes.md). Their defaults are the reference; any other value is a model that the
  # official code and transformers cannot express, so every exporter refuses it
  # (``check_reference_compatible``). None of them adds or renames a parameter.
  # Gumbel noise on the assignment logits in training (the official GroupingBlock's ``gumbel``
  # argument, on in every released model). Off: the hard assignment is the plain argmax, still
  # straight-through. Only used with ``hard_assignment`` (soft assignment has no noise).
  gumbel: bool = True
  # Init std of the assignment's q/k projections (the reference: 0.02 like every Linear). The
  # assignment logits start near 0.04 in size at 0.02, far below the Gumbel noise (std 1.3), so
  # early grouping is noise; ~1/sqrt(embed_dim) starts them near 1. Only the starting point.
  assign_qk_init_std: float = 0.02
  # The reference adds the group tokens' pre-assignment cross-attention output to every segment
  # (``z = out + p``, spec 1.5 step 5), so each segment also carries a summary of the whole
  # image. False keeps ``z = out``: a segment is the mean of its own tokens only.
  group_token_residual: bool = True
  # Initial value of the (learned) position embedding: "normal" = N(0, 0.02) as the reference;
  # "sincos2d" = the fixed 2-D sine-cosine table of MAE / big_vision, a locality prior that
  # helps small models trained briefly from scratch. Only the starting point differs.
  pos_embed_init: str = "normal"

  def __post_init__(self):
    if self.pos_embed_init not in ("normal", "sincos2d"):
      raise ValueError(f"vision config: pos_embed_init must be 'normal' or 'sincos2d', got "
                       f"{self.pos_embed_init!r}")
    for name in ("depths", "num_heads", "num_group_tokens", "num_output_groups", "assign_mlp_ratio"):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    n = len(self.depths)
    if not (len(self.num_heads) == len(self.num_group_tokens) == n):
      raise ValueError(
          f"vision config: depths {self.depths}, num_heads {self.num_heads} and num_group_tokens "
          f"{self.num_group_tokens} must have one entry per stage")
    if len(self.num_output_groups) != n - 1:
      raise ValueError(
          f"vision config: num_output_groups {self.num_output_groups} must have len(depths)-1 = "
          f"{n - 1} entries (one per grouping stage)")
    for s in range(n - 1):
      if self.num_group_tokens[s] <= 0 or self.num_output_groups[s] <= 0:
        raise ValueError(f"vision config: stage {s} is followed by another stage, so it needs group "
                         f"tokens and output groups > 0, got {self.num_group_tokens[s]} / "
                         f"{self.num_output_groups[s]}")
    if n > 0 and self.num_group_tokens[-1] != 0:
      raise ValueError("vision config: the last stage has no group tokens (num_group_tokens[-1] == 0)")
    for h in self.num_heads:
      if self.embed_dim % h:
        raise ValueError(f"vision config: embed_dim {self.embed_dim} not divisible by heads {h}")

  @property
  def num_stages(self) -> int:
    return len(self.depths)

  @property
  def grid_size(self) -> int:
    """Side of the square patch grid of the stored position embedding."""
    return self.img_size // self.patch_size

  @property
  def num_groups(self) -> int:
    """Number of segment tokens the encoder ends with."""
    return self.num_output_groups[-1] if self.num_output_groups else self.grid_size**2

  @property
  def assign_rule(self) -> str:
    """Name of the assignment rule (``models/assign.py:ASSIGN_RULES``) this config selects."""
    if not self.hard_assignment:
      return "soft"
    return "gumbel_straight_through" if self.gumbel else "hard_argmax"

  def stages(self) -> tuple["StageConfig", ...]:
    """One ``StageConfig`` per stage, in order (drop-path rates rising linearly over all
    blocks, spec 1.3)."""
    dpr = np.linspace(0.0, self.drop_path_rate, sum(self.depths)).tolist()
    out, start = [], 0
    for s, depth in enumerate(self.depths):
      last = s == self.num_stages - 1
      out.append(StageConfig(
          dim=self.embed_dim, depth=depth, num_heads=self.num_heads[s],
          num_group_token=self.num_group_tokens[s],
          num_output_group=0 if last else self.num_output_groups[s],
          num_prev_group_token=self.num_group_tokens[s - 1] if s > 0 else 0,
          drop_path=tuple(dpr[start:start + depth]), mlp_ratio=self.mlp_ratio,
          qkv_bias=self.qkv_bias, eps=self.layer_norm_eps, act=self.act,
          assign_rule=self.assign_rule, assign_eps=self.assign_eps,
          assign_qk_init_std=self.assign_qk_init_std,
          group_token_residual=self.group_token_residual,
          assign_mlp_ratio=self.assign_mlp_ratio))
      start += depth
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class StageConfig:
  """Everything one image-encoder stage (``GroupingLayer``) and its ``GroupingBlock`` need, built
  once by ``VisionConfig.stages()``. A new grouping variant adds its field here and reads it in
  models/grouping.py (or adds a rule to models/assign.py:ASSIGN_RULES)."""

  dim: int
  depth: int
  num_heads: int
  num_group_token: int  # group tokens appended to this stage's input (0: none)
  num_output_group: int  # segments the stage's GroupingBlock outputs (0: the stage does not group)
  num_prev_group_token: int  # the previous stage's group tokens (0: no group projector)
  drop_path: tuple[float, ...]  # one rate per block
  mlp_ratio: float
  qkv_bias: bool
  eps: float
  act: str
  assign_rule: str
  assign_eps: float
  assign_qk_init_std: float
  group_token_residual: bool
  assign_mlp_ratio: tuple[float, float]

  @property
  def groups(self) -> bool:
    """Whether the stage ends with a GroupingBlock."""
    return self.num_group_token > 0 and self.num_output_group > 0


@dataclasses.dataclass(frozen=True)
class TextConfig:
  """CLIP-style causal text Transformer (``text_encoder``)."""

  context_length: int = 77
  vocab_size: int = 49408
  width: int = 256
  layers: int = 12
  heads: int = 4
  mlp_ratio: float = 4.0
  layer_norm_eps: float = 1e-5
  act: str = "quick_gelu"
  # Pooling position: None = argmax(ids) (official: the first EOT, 49407 being the largest id);
  # an id = its first occurrence (transformers' rule for eos_token_id != 2; position 0 if absent).
  eos_token_id: int | None = None

  def __post_init__(self):
    if self.width % self.heads:
      raise ValueError(f"text config: width {self.width} not divisible by heads {self.heads}")


@dataclasses.dataclass(frozen=True)
class GroupViTConfig:
  """The whole model: encoders, projection heads, temperatures and numerics."""

  vision: VisionConfig = dataclasses.field(default_factory=VisionConfig)
  text: TextConfig = dataclasses.field(default_factory=TextConfig)
  proj_dim: int = 256
  proj_hidden_dim: int = 4096
  proj_num_layers: int = 2
  contrast_temperature: float = 0.07
  multi_label: int = 0  # K prompts per caption; 0 disables the multi-label loss
  share_temperature: bool = False
  multi_label_loss_weight: float = 1.0
  bn_momentum: float = 0.9  # Flax convention: running = m*running + (1-m)*batch (torch 0.1)
  bn_eps: float = 1e-5
  dtype: str = "float32"  # compute dtype; norms, softmaxes and the gumbel noise stay float32
  param_dtype: str = "float32"
  remat: bool = False  # rematerialise every transformer block in the backward pass

  def __post_init__(self):
    if isinstance(self.vision, dict):
      object.__setattr__(self, "vision", VisionConfig(**self.vision))
    if isinstance(self.text, dict):
      object.__setattr__(self, "text", TextConfig(**self.text))
    if self.proj_num_layers not in (1, 2, 3):
      raise ValueError(f"proj_num_layers must be 1, 2 or 3, got {self.proj_num_layers}")
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"{name} must be float32, bfloat16 or float16, got {getattr(self, name)!r}")

  @property
  def logit_scale_init(self) -> float:
    return math.log(1.0 / self.contrast_temperature)

  @property
  def has_multi_label_scale(self) -> bool:
    return self.multi_label > 0 and not self.share_temperature

  def replace(self, **kw) -> "GroupViTConfig":
    return dataclasses.replace(self, **kw)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "GroupViTConfig":
    """Builds a config from a (possibly partial) dict; unknown keys are an error."""
    d = dict(d)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f"unknown model config keys {sorted(unknown)}; expected some of {sorted(known)}")
    for key, sub in (("vision", VisionConfig), ("text", TextConfig)):
      if key in d and isinstance(d[key], dict):
        sub_known = {f.name for f in dataclasses.fields(sub)}
        bad = set(d[key]) - sub_known
        if bad:
          raise ValueError(f"unknown model.{key} config keys {sorted(bad)}; expected some of "
                           f"{sorted(sub_known)}")
        d[key] = sub(**d[key])
    return cls(**d)

  @classmethod
  def from_json(cls, text: str) -> "GroupViTConfig":
    return cls.from_dict(json.loads(text))


# ---- presets --------------------------------------------------------------------------------------


def gcc_yfcc() -> GroupViTConfig:
  """The released ``group_vit_gcc_yfcc_30e`` model: 2 stages, multi-label loss with K=3."""
  return GroupViTConfig(multi_label=3)


def gcc_redcap() -> GroupViTConfig:
  """The released ``group_vit_gcc_redcap_30e`` model: 2 stages, no multi-label loss."""
  return GroupViTConfig(multi_label=0)


def one_stage() -> GroupViTConfig:
  """The paper's 1-stage model: 64 group tokens mixed down to 8 segments after 6 blocks."""
  return GroupViTConfig(
      vision=VisionConfig(depths=(6, 6), num_heads=(6, 6), num_group_tokens=(64, 0),
                          num_output_groups=(8,)),
      multi_label=3)


def tiny(**vision_overrides) -> GroupViTConfig:
  """A few-thousand-parameter model for tests: width 32, 1 block per stage, 32 px input."""
  vision = dict(img_size=32, patch_size=8, embed_dim=32, depths=(1, 1, 1), num_heads=(2, 2, 2),
                num_group_tokens=(4, 2, 0), num_output_groups=(4, 2), drop_path_rate=0.0)
  vision.update(vision_overrides)
  return GroupViTConfig(
      vision=VisionConfig(**vision),
      text=TextConfig(context_length=16, vocab_size=49408, width=32, layers=1, heads=2),
      proj_dim=16, proj_hidden_dim=64, multi_label=0)


PRESETS = {"gcc_yfcc": gcc_yfcc, "gcc_redcap": gcc_redcap, "one_stage": one_stage, "tiny": tiny}


# ---- departures from the reference ----------------------------------------------------------------

# field of ``VisionConfig`` -> (the reference's value, what another value changes).
REFERENCE_DEPARTURES: dict[str, tuple[Any, str]] = {
    "group_token_residual": (
        True, "the forward differs: each segment drops the reference's pre-assignment residual "
        "(z = out instead of z = out + p, spec 1.5 step 5)"),
    "gumbel": (
        True, "training differs: the assignment is the plain argmax without Gumbel noise, which "
        "the target format cannot record"),
    "assign_qk_init_std": (
        0.02, "initialisation differs: the assignment's q/k kernels start at another std, which "
        "the target format cannot record"),
    "pos_embed_init": (
        "normal", "initialisation differs: the position embedding starts from a sine-cosine "
        "table, which the target format cannot record"),
}


def departures(config: GroupViTConfig | VisionConfig) -> dict[str, str]:
  """{``model.vision.<field>=<value>``: why} for every departure from the reference that
  ``config`` uses (empty for a reference model)."""
  vision = config.vision if isinstance(config, GroupViTConfig) else config
  out = {}
  for name, (reference, why) in REFERENCE_DEPARTURES.items():
    value = getattr(vision, name)
    if name == "gumbel" and not vision.hard_assignment:
      continue  # soft assignment draws no noise either way
    if value != reference:
      out[f"model.vision.{name}={value!r} (the reference: {reference!r})"] = why
  return out


class ReferenceDepartureError(ValueError):
  """A model that departs from the reference was given to an exporter of a reference format."""


def check_reference_compatible(config: GroupViTConfig | VisionConfig, target: str) -> None:
  """Raises ``ReferenceDepartureError`` naming every departure ``config`` uses, for exporters
  whose format (``target``, e.g. 'transformers') holds only the reference architecture."""
  found = departures(config)
  if found:
    lines = "\n".join(f"  - {field}: {why}" for field, why in found.items())
    raise ReferenceDepartureError(
        f"this model cannot be written as a {target} checkpoint: it departs from the reference "
        f"GroupViT in\n{lines}\nKeep it in the groupvit_jax format (groupvit-jax convert --to "
        f"native), which records these fields.")
