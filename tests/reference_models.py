"""transformers' GroupViT as the reference, and an independent restatement of the spec 6.2 key
map (HF -> official) written with explicit loops, so the package's own table is checked against
something it did not generate."""

from __future__ import annotations

import numpy as np
import torch

TINY_HF = dict(
    vision_config=dict(hidden_size=32, intermediate_size=128, depths=[1, 1, 1],
                       num_hidden_layers=3, num_group_tokens=[4, 2, 0],
                       num_output_groups=[4, 2, 2], num_attention_heads=2, image_size=32,
                       patch_size=8),
    text_config=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=1,
                     num_attention_heads=2, max_position_embeddings=16),
    projection_dim=16, projection_intermediate_dim=64)


def make_hf_model(config_kwargs: dict, seed: int = 0):
  """A transformers GroupViTModel (eval mode) with every float parameter and buffer perturbed:
  weights get noise, LayerNorm/BatchNorm scales move away from 1, BatchNorm running statistics
  become non-trivial and the logit scale leaves its init, so no mapping error hides behind an
  init of ones and zeros."""
  import transformers
  torch.manual_seed(seed)
  model = transformers.GroupViTModel(transformers.GroupViTConfig(**config_kwargs)).eval()
  with torch.no_grad():
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
      if not p.dtype.is_floating_point:
        continue
      if name.endswith("running_var"):
        p.copy_(0.5 + torch.rand_like(p))
      elif name.endswith("running_mean"):
        p.copy_(0.1 * torch.randn_like(p))
      elif name == "logit_scale":
        p.fill_(2.3)
      else:
        p.add_(0.05 * torch.randn_like(p))
  return model


def hf_state_dict_numpy(model) -> dict[str, np.ndarray]:
  return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def official_from_hf(sd: dict[str, np.ndarray], depths, text_layers: int) -> dict[str, np.ndarray]:
  """Spec 6.2 read row by row: HF keys -> official keys (fused q|k|v, Conv1d weights)."""
  out = {}
  v, t = "vision_model", "text_model"
  out["img_encoder.patch_embed.proj.weight"] = sd[f"{v}.embeddings.patch_embeddings.projection.weight"]
  out["img_encoder.patch_embed.proj.bias"] = sd[f"{v}.embeddings.patch_embeddings.projection.bias"]
  for p in ("weight", "bias"):
    out[f"img_encoder.patch_embed.norm.{p}"] = sd[f"{v}.embeddings.layernorm.{p}"]
    out[f"img_encoder.norm.{p}"] = sd[f"{v}.layernorm.{p}"]
    out[f"text_encoder.ln_final.{p}"] = sd[f"{t}.final_layer_norm.{p}"]
  out["img_encoder.pos_embed"] = sd[f"{v}.embeddings.position_embeddings"]
  for s, depth in enumerate(depths):
    hs, os_ = f"{v}.encoder.stages.{s}", f"img_encoder.layers.{s}"
    if f"{hs}.group_token" in sd:
      out[f"{os_}.group_token"] = sd[f"{hs}.group_token"]
    for j in range(depth):
      hb, ob = f"{hs}.layers.{j}", f"{os_}.blocks.{j}"
      for p in ("weight", "bias"):
        out[f"{ob}.norm1.{p}"] = sd[f"{hb}.layer_norm1.{p}"]
        out[f"{ob}.norm2.{p}"] = sd[f"{hb}.layer_norm2.{p}"]
        out[f"{ob}.attn.qkv.{p}"] = np.concatenate(
            [sd[f"{hb}.self_attn.{x}_proj.{p}"] for x in "qkv"], axis=0)
        out[f"{ob}.attn.proj.{p}"] = sd[f"{hb}.self_attn.out_proj.{p}"]
        out[f"{ob}.mlp.fc1.{p}"] = sd[f"{hb}.mlp.fc1.{p}"]
        out[f"{ob}.mlp.fc2.{p}"] = sd[f"{hb}.mlp.fc2.{p}"]
    for key in [k for k in sd if k.startswith(f"{hs}.downsample.")]:
      rest = key[len(f"{hs}.downsample."):].replace("pre_assign_attn.attn.out_proj.",
                                                    "pre_assign_attn.attn.proj.")
      out[f"{os_}.downsample.{rest}"] = sd[key]
    for key in [k for k in sd if k.startswith(f"{hs}.group_projector.")]:
      out[f"{os_}.group_projector.{key[len(f'{hs}.group_projector.'):]}"] = sd[key]
  out["text_encoder.token_embedding.weight"] = sd[f"{t}.embeddings.token_embedding.weight"]
  out["text_encoder.positional_embedding"] = sd[f"{t}.embeddings.position_embedding.weight"]
  for l in range(text_layers):
    hl, ol = f"{t}.encoder.layers.{l}", f"text_encoder.transformer.resblocks.{l}"
    for p in ("weight", "bias"):
      out[f"{ol}.attn.in_proj_{p}"] = np.concatenate(
          [sd[f"{hl}.self_attn.{x}_proj.{p}"] for x in "qkv"], axis=0)
      out[f"{ol}.attn.out_proj.{p}"] = sd[f"{hl}.self_attn.out_proj.{p}"]
      out[f"{ol}.ln_1.{p}"] = sd[f"{hl}.layer_norm1.{p}"]
      out[f"{ol}.ln_2.{p}"] = sd[f"{hl}.layer_norm2.{p}"]
      out[f"{ol}.mlp.c_fc.{p}"] = sd[f"{hl}.mlp.fc1.{p}"]
      out[f"{ol}.mlp.c_proj.{p}"] = sd[f"{hl}.mlp.fc2.{p}"]
  for hf_name, off in (("visual_projection", "img_projector"), ("text_projection", "text_projector")):
    out[f"{off}.linear_hidden.0.weight"] = sd[f"{hf_name}.0.weight"][..., None]
    out[f"{off}.linear_hidden.0.bias"] = sd[f"{hf_name}.0.bias"]
    for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
      out[f"{off}.linear_hidden.1.{p}"] = sd[f"{hf_name}.1.{p}"]
    out[f"{off}.linear_out.weight"] = sd[f"{hf_name}.3.weight"][..., None]
    out[f"{off}.linear_out.bias"] = sd[f"{hf_name}.3.bias"]
  out["logit_scale"] = sd["logit_scale"]
  return out


def reference_outputs(hf_model, x, ids):
  with torch.no_grad():
    out = hf_model(input_ids=torch.tensor(ids, dtype=torch.long),
                   pixel_values=torch.tensor(x).permute(0, 3, 1, 2), output_attentions=True)
  return out


def reference_group_embeddings(hf_model, ref) -> tuple[np.ndarray, np.ndarray]:
  """transformers' final segment tokens (after the vision LayerNorm) [B, S, C] and each projected
  by its visual projection (BatchNorm in eval) [B, S, D], the reference's group embeddings."""
  tokens = ref.vision_model_output.last_hidden_state
  b, s, c = tokens.shape
  with torch.no_grad():
    projected = hf_model.visual_projection(tokens.reshape(b * s, c)).reshape(b, s, -1)
  return tokens.numpy(), projected.numpy()


def assert_parity(model, hf_model, x, ids):
  """Embeddings, logits, soft maps, final segment tokens and group embeddings vs transformers.

  Tolerances (fp32): 1e-4 on every output, the group tokens and embeddings relative to their
  largest magnitude. All parity configs pass at 1e-4 on the logits as the README states (at the
  reference's logit scale of 10, a 1e-5 error in a unit embedding moves a logit by 1e-4).
  """
  from flax import nnx  # pylint: disable=g-import-not-at-top
  ref = reference_outputs(hf_model, x, ids)
  out = model(pixel_values=x, input_ids=ids)
  np.testing.assert_allclose(np.asarray(out.image_embeds), ref.image_embeds.numpy(), atol=1e-4)
  np.testing.assert_allclose(np.asarray(out.text_embeds), ref.text_embeds.numpy(), atol=1e-4)
  np.testing.assert_allclose(np.asarray(out.logits_per_image), ref.logits_per_image.numpy(),
                             atol=1e-4)
  np.testing.assert_allclose(np.asarray(out.logits_per_text), ref.logits_per_text.numpy(),
                             atol=1e-4)
  ref_maps = ref.vision_model_output.attentions
  assert len(out.soft_maps) == len(ref_maps) > 0
  for ours, theirs in zip(out.soft_maps, ref_maps):
    assert ours.shape == tuple(theirs.shape)
    np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), atol=1e-4)
  tokens, groups = nnx.jit(lambda m, v: (lambda e: (e["tokens"], m.project_groups(e["tokens"])))(
      m.encode_image(v)))(model, x)
  want_tokens, want_groups = reference_group_embeddings(hf_model, ref)
  assert tokens.shape == want_tokens.shape and groups.shape == want_groups.shape
  for ours, theirs in ((tokens, want_tokens), (groups, want_groups)):
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4 * max(1.0, np.abs(theirs).max()))
  # The logits really depend on the inputs (guards against a degenerate comparison).
  assert np.ptp(ref.logits_per_image.numpy()) > 1e-3
