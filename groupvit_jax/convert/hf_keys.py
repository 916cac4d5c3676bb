"""transformers ``GroupViTModel`` keys <-> official GroupViT keys (spec 6.2).

Each row pairs an HF key template with its official counterpart; the same row serves both
directions. ``{qkv}`` rows fuse HF's separate q/k/v projections into the official fused
``qkv`` / ``in_proj`` tensors (rows q|k|v) and split them back. Projection-head Linear weights are
``[out, in]`` in HF and Conv1d ``[out, in, 1]`` in the official code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

_VS = "vision_model.encoder.stages.{s}"
_IE = "img_encoder.layers.{s}"
_TL = "text_model.encoder.layers.{l}"
_TE = "text_encoder.transformer.resblocks.{l}"

PAIRS: list[tuple[str, str]] = [
    ("vision_model.embeddings.patch_embeddings.projection.{p}", "img_encoder.patch_embed.proj.{p}"),
    ("vision_model.embeddings.layernorm.{p}", "img_encoder.patch_embed.norm.{p}"),
    ("vision_model.embeddings.position_embeddings", "img_encoder.pos_embed"),
    (f"{_VS}.group_token", f"{_IE}.group_token"),
    (f"{_VS}.layers.{{j}}.layer_norm1.{{p}}", f"{_IE}.blocks.{{j}}.norm1.{{p}}"),
    (f"{_VS}.layers.{{j}}.layer_norm2.{{p}}", f"{_IE}.blocks.{{j}}.norm2.{{p}}"),
    (f"{_VS}.layers.{{j}}.self_attn.out_proj.{{p}}", f"{_IE}.blocks.{{j}}.attn.proj.{{p}}"),
    (f"{_VS}.layers.{{j}}.self_attn.{{qkv}}_proj.{{p}}", f"{_IE}.blocks.{{j}}.attn.qkv.{{p}}"),
    (f"{_VS}.layers.{{j}}.mlp.{{rest}}", f"{_IE}.blocks.{{j}}.mlp.{{rest}}"),
    (f"{_VS}.downsample.pre_assign_attn.attn.out_proj.{{p}}",
     f"{_IE}.downsample.pre_assign_attn.attn.proj.{{p}}"),
    (f"{_VS}.downsample.{{rest}}", f"{_IE}.downsample.{{rest}}"),
    (f"{_VS}.group_projector.{{rest}}", f"{_IE}.group_projector.{{rest}}"),
    ("vision_model.layernorm.{p}", "img_encoder.norm.{p}"),
    ("text_model.embeddings.token_embedding.weight", "text_encoder.token_embedding.weight"),
    ("text_model.embeddings.position_embedding.weight", "text_encoder.positional_embedding"),
    (f"{_TL}.self_attn.{{qkv}}_proj.{{p}}", f"{_TE}.attn.in_proj_{{p}}"),
    (f"{_TL}.self_attn.out_proj.{{p}}", f"{_TE}.attn.out_proj.{{p}}"),
    (f"{_TL}.layer_norm1.{{p}}", f"{_TE}.ln_1.{{p}}"),
    (f"{_TL}.layer_norm2.{{p}}", f"{_TE}.ln_2.{{p}}"),
    (f"{_TL}.mlp.fc1.{{p}}", f"{_TE}.mlp.c_fc.{{p}}"),
    (f"{_TL}.mlp.fc2.{{p}}", f"{_TE}.mlp.c_proj.{{p}}"),
    ("text_model.final_layer_norm.{p}", "text_encoder.ln_final.{p}"),
    ("visual_projection.0.{p}", "img_projector.linear_hidden.0.{p}"),
    ("visual_projection.1.{p}", "img_projector.linear_hidden.1.{p}"),
    ("visual_projection.3.{p}", "img_projector.linear_out.{p}"),
    ("text_projection.0.{p}", "text_projector.linear_hidden.0.{p}"),
    ("text_projection.1.{p}", "text_projector.linear_hidden.1.{p}"),
    ("text_projection.3.{p}", "text_projector.linear_out.{p}"),
    ("logit_scale", "logit_scale"),
]

_FIELD = {"s": r"\d+", "j": r"\d+", "l": r"\d+", "p": r"[^.]+", "rest": r".+", "qkv": r"[qkv]"}
HF_IGNORED = re.compile(r"^text_model\.embeddings\.position_ids$")
OFFICIAL_NOT_IN_HF = re.compile(r"^multi_label_logit_scale$")
_CONV1D = re.compile(r"_projector\.(linear_hidden\.\d+|linear_out)\.weight$")


def _compile(template: str) -> re.Pattern:
  out, pos = "", 0
  for m in re.finditer(r"\{(\w+)\}", template):
    out += re.escape(template[pos:m.start()]) + f"(?P<{m.group(1)}>{_FIELD[m.group(1)]})"
    pos = m.end()
  return re.compile("^" + out + re.escape(template[pos:]) + "$")


_ROWS = [(_compile(h), h, _compile(o), o) for h, o in PAIRS]


class KeyMapError(ValueError):
  pass


def hf_to_official(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """HF ``GroupViTModel`` state dict -> official key names and layouts."""
  out: dict[str, np.ndarray] = {}
  fused: dict[str, dict[str, np.ndarray]] = {}
  unknown = []
  for key, value in state_dict.items():
    if HF_IGNORED.match(key):
      continue
    for hf_re, _, _, off_t in _ROWS:
      m = hf_re.match(key)
      if m:
        fields = m.groupdict()
        target = off_t.format(**fields)
        value = np.asarray(value)
        if "qkv" in fields:
          fused.setdefault(target, {})[fields["qkv"]] = value
        else:
          out[target] = value[..., None] if _CONV1D.search(target) and value.ndim == 2 else value
        break
    else:
      unknown.append(key)
  for target, parts in fused.items():
    if set(parts) != {"q", "k", "v"}:
      raise KeyMapError(f"{target}: HF checkpoint has {sorted(parts)} projections of q, k, v")
    out[target] = np.concatenate([parts["q"], parts["k"], parts["v"]], axis=0)
  if unknown:
    raise KeyMapError(f"{len(unknown)} keys of the HF checkpoint are not GroupViT keys: "
                      f"{unknown[:20]}")
  return out


def official_to_hf(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Official state dict -> HF ``GroupViTModel`` key names and layouts."""
  out: dict[str, np.ndarray] = {}
  unknown = []
  for key, value in state_dict.items():
    if OFFICIAL_NOT_IN_HF.search(key):
      continue
    value = np.asarray(value)
    for _, hf_t, off_re, _ in _ROWS:
      m = off_re.match(key)
      if not m:
        continue
      fields = m.groupdict()
      if "qkv" in hf_t:
        for name, part in zip("qkv", np.split(value, 3, axis=0)):
          out[hf_t.format(qkv=name, **fields)] = np.asarray(part, order="C")
      else:
        if _CONV1D.search(key) and value.ndim == 3:
          value = value[..., 0]
        out[hf_t.format(**fields)] = np.asarray(value, order="C")
      break
    else:
      unknown.append(key)
  if unknown:
    raise KeyMapError(f"{len(unknown)} official keys have no transformers counterpart: "
                      f"{unknown[:20]}")
  return out
