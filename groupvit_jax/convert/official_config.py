"""Reads the architecture of an official GroupViT state dict from its tensor shapes.

An official ``.pth`` carries no usable config (the released files store an OmegaConf object or
none), so widths, depths, group-token counts and head sizes are read from the weights. Head counts
are not visible in shapes: like the reference configs we assume 64-dimensional heads; pass
``heads=`` (or a whole config to ``load_pretrained``) for anything else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from groupvit_jax.model_config import GroupViTConfig, TextConfig, VisionConfig


def _count(keys, pattern: str) -> int:
  idx = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
  return max(idx) + 1 if idx else 0


def infer_official_config(sd: Mapping[str, np.ndarray], *, vision_heads: int | None = None,
                          text_heads: int | None = None,
                          hard_assignment: bool = True) -> GroupViTConfig:
  """``GroupViTConfig`` matching the tensors of an official state dict ``sd``."""
  need = ["img_encoder.patch_embed.proj.weight", "img_encoder.pos_embed",
          "text_encoder.positional_embedding", "text_encoder.token_embedding.weight",
          "img_projector.linear_out.weight"]
  absent = [k for k in need if k not in sd]
  if absent:
    raise ValueError(f"not an official GroupViT state dict: missing {absent}")
  keys = list(sd)
  c, in_chans, p, _ = np.shape(sd["img_encoder.patch_embed.proj.weight"])
  n_pos = np.shape(sd["img_encoder.pos_embed"])[1]
  grid = int(round(math.sqrt(n_pos)))
  n_stages = _count(keys, r"img_encoder\.layers\.(\d+)\.")
  depths, groups, outputs = [], [], []
  for s in range(n_stages):
    depths.append(_count(keys, rf"img_encoder\.layers\.{s}\.blocks\.(\d+)\."))
    gt = sd.get(f"img_encoder.layers.{s}.group_token")
    groups.append(0 if gt is None else int(np.shape(gt)[1]))
    fc2 = sd.get(f"img_encoder.layers.{s}.downsample.mlp_inter.fc2.weight")
    if fc2 is not None:
      outputs.append(int(np.shape(fc2)[0]))
  fc1 = np.shape(sd["img_encoder.layers.0.blocks.0.mlp.fc1.weight"])[0]
  ds = "img_encoder.layers.0.downsample"
  tokens_dim = np.shape(sd[f"{ds}.mlp_inter.fc1.weight"])[0] if f"{ds}.mlp_inter.fc1.weight" in sd else c // 2
  channels_dim = np.shape(sd[f"{ds}.mlp_channels.fc1.weight"])[0] if f"{ds}.mlp_channels.fc1.weight" in sd else 4 * c
  h = vision_heads or max(c // 64, 1)
  vision = VisionConfig(
      img_size=grid * int(p), patch_size=int(p), in_chans=int(in_chans), embed_dim=int(c),
      depths=tuple(depths), num_heads=(h,) * n_stages, num_group_tokens=tuple(groups),
      num_output_groups=tuple(outputs), mlp_ratio=fc1 / c, hard_assignment=hard_assignment,
      assign_mlp_ratio=(tokens_dim / c, channels_dim / c))
  ctx, w = np.shape(sd["text_encoder.positional_embedding"])
  vocab = np.shape(sd["text_encoder.token_embedding.weight"])[0]
  n_layers = _count(keys, r"text_encoder\.transformer\.resblocks\.(\d+)\.")
  c_fc = np.shape(sd["text_encoder.transformer.resblocks.0.mlp.c_fc.weight"])[0]
  text = TextConfig(context_length=int(ctx), vocab_size=int(vocab), width=int(w),
                    layers=n_layers, heads=text_heads or max(w // 64, 1), mlp_ratio=c_fc / w)
  n_hidden = _count(keys, r"img_projector\.linear_hidden\.(\d+)\.weight")
  proj_layers = len([i for i in range(n_hidden) if f"img_projector.linear_hidden.{i}.weight" in sd
                     and np.ndim(sd[f"img_projector.linear_hidden.{i}.weight"]) == 3]) + 1
  proj_dim, proj_hidden = np.shape(sd["img_projector.linear_out.weight"])[:2]
  multi = "multi_label_logit_scale" in sd
  return GroupViTConfig(vision=vision, text=text, proj_dim=int(proj_dim),
                        proj_hidden_dim=int(proj_hidden), proj_num_layers=proj_layers,
                        multi_label=3 if multi else 0)
