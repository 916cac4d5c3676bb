"""The per-window prediction of the official protocol (spec 5.4), traceable and batched.

For a batch of windows ``x [B, h, w, 3]`` the model runs once in eval mode (hard, noise-free
assignment). The soft assignment maps of all grouping stages are composed
(``[L0, S0] @ [S0, S1] ...``), reshaped to the patch grid with the reference's grid heuristic,
upsampled bilinearly (align_corners=False) to the window size, and each pixel takes the group of
the argmax *after* upsampling. Each group gets one row of class scores (top-5 filter, product of
masked and full softmaxes, adaptive background threshold), so the window's logits are
``table[group_index]``, which equals the reference's ``one_hot(groups) @ A`` exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from groupvit_jax.interpolate import resize_hw
from groupvit_jax.models.groupvit import l2_normalize

TOP_K = 5


def attention_grid(h: int, w: int, num_tokens: int, patch_size: int) -> tuple[int, int]:
  """Patch grid ``(h // p, w // p)`` of an (h, w) input holding ``num_tokens`` tokens.

  The reference recovers the grid from ``scale = sqrt(h*w // L)`` (``resize_attn_map``); for
  every size the protocol produces (windows of h x 448 with 16 <= h <= 448, whole images of
  448 x 448..2048 and 16..448 x 2048 with 16-pixel patches) that heuristic gives exactly this grid
  (checked in tests/test_seg_geometry.py), while for some other sizes it gives a wrong grid.
  """
  hf, wf = h // patch_size, w // patch_size
  if hf * wf != num_tokens:
    raise ValueError(f"a {h}x{w} input with {patch_size}-pixel patches has {hf}x{wf} patches, "
                     f"not {num_tokens} tokens")
  return hf, wf


def compose_stage_maps(soft: tuple[jax.Array, ...], tokens: jax.Array | None = None
                       ) -> list[jax.Array]:
  """Per-stage soft assignments of the input patches.

  Args:
    soft: one [B, S_s, L_s] map per grouping stage (stage 0: L_0 = patches).
    tokens: [B, L, C] final tokens; used only when ``soft`` is empty (a plain ViT, e.g. the
      paper's baselines), whose groups are then its patches: one identity map [B, L, L].
  Returns:
    one [B, L_0, S_s] map per stage: ``soft_0^T``, ``soft_0^T @ soft_1^T``, ...
  """
  if not soft:
    if tokens is None:
      raise ValueError("a model without grouping stages needs its tokens for pixel-wise groups")
    b, l = tokens.shape[:2]
    return [jnp.broadcast_to(jnp.eye(l, dtype=jnp.float32), (b, l, l))]
  out, prev = [], None
  for s in soft:
    t = jnp.swapaxes(s.astype(jnp.float32), -1, -2)  # [B, L_s, S_s]
    prev = t if prev is None else jnp.einsum("bls,bsg->blg", prev, t)
    out.append(prev)
  return out


def upsample_group_maps(maps: jax.Array, hw: tuple[int, int], patch_size: int) -> jax.Array:
  """[B, L0, G] patch-level group maps -> [B, h, w, G] (bilinear, align_corners=False)."""
  b, l0, g = maps.shape
  hf, wf = attention_grid(hw[0], hw[1], l0, patch_size)
  return resize_hw(maps.reshape(b, hf, wf, g), hw, "bilinear")


def top_k_mask(scores: jax.Array, k: int) -> jax.Array:
  """[B, N] -> bool [B, N]: the k largest scores of each row, ties to the lower index (the set
  ``lax.top_k`` picks). Written as ranks, not ``lax.top_k``: TensorFlow 2.21 cannot load the
  StableHLO that ``top_k`` lowers to, and this keeps ``segment`` exportable as a SavedModel.
  O(N^2) per row: 400 comparisons for VOC's 20 classes, 0.2 M for Context-459's 459."""
  n = scores.shape[-1]
  idx = jnp.arange(n)
  ahead = (scores[:, None, :] > scores[:, :, None]) | (
      (scores[:, None, :] == scores[:, :, None]) & (idx[None, None, :] < idx[None, :, None]))
  return ahead.sum(axis=-1) < k  # [B, N]: fewer than k scores come before this one


def class_table(group_x: jax.Array, image_x: jax.Array, text: jax.Array, scale: jax.Array,
                bg_threshold: jax.Array | None) -> jax.Array:
  """Class scores of every group (spec 5.4 steps 5-7).

  Args:
    group_x: [B, G, D] projected group tokens (normalised here).
    image_x: [B, D] projected pooled embedding (normalised here).
    text: [N, D] L2-normalised class embeddings (no background).
    scale: scalar ``min(exp(logit_scale), 100)``.
    bg_threshold: scalar, or None for datasets without background.
  Returns:
    [B, G, C] with C = N (+1 in front for background): ``A = softmax(M masked to the image's
    top-5 classes) * softmax(M)``; the background column is 1 where ``max_c A[g] <
    min(bg_threshold, max A)`` (strict), else 0.
  """
  g = l2_normalize(group_x)
  a = l2_normalize(image_x)
  text = text.astype(jnp.float32)
  logits = jnp.einsum("bgd,nd->bgn", g, text) * scale  # M
  probs = jax.nn.softmax(logits, axis=-1)  # P
  image_probs = jax.nn.softmax(jnp.einsum("bd,nd->bn", a, text) * scale, axis=-1)  # q
  k = min(TOP_K, text.shape[0])
  keep = top_k_mask(image_probs, k)  # [B, N]
  masked = jnp.where(keep[:, None, :], logits, -jnp.inf)
  affinity = jax.nn.softmax(masked, axis=-1) * probs  # A [B, G, N]
  if bg_threshold is None:
    return affinity
  thr = jnp.minimum(bg_threshold, affinity.max(axis=(1, 2)))  # adaptive, per window
  bg = (affinity.max(axis=-1) < thr[:, None]).astype(affinity.dtype)  # [B, G]
  return jnp.concatenate([bg[..., None], affinity], axis=-1)


def window_predict(model, x: jax.Array, text: jax.Array,
                   bg_threshold: jax.Array | None) -> tuple[jax.Array, jax.Array]:
  """One eval-mode forward on a batch of windows.

  Args:
    model: a GroupViT (inside a trace: ``nnx.merge`` of its state).
    x: [B, h, w, 3] ImageNet-normalised windows.
    text: [N, D] normalised class embeddings.
    bg_threshold: scalar or None (no background channel).
  Returns:
    group index [B, h, w] int32 (argmax over groups after upsampling the composed soft maps)
    and the class table [B, G, C]; the window's logits are ``table[b, index[b, y, x]]``.
  """
  enc = model.encode_image(x)
  maps = compose_stage_maps(enc["soft"], enc["tokens"])[-1]
  up = upsample_group_maps(maps, x.shape[1:3], model.config.vision.patch_size)
  index = jnp.argmax(up, axis=-1).astype(jnp.int32)
  table = class_table(model.project_groups(enc["tokens"]), enc["image_x"], text, model.scale(),
                      bg_threshold)
  return index, table


def stage_group_maps(model, x: jax.Array) -> list[jax.Array]:
  """Groups of every stage, before any label is assigned (the reference's group pictures).

  Args:
    x: [B, h, w, 3] normalised images (whole-image forward).
  Returns:
    one [B, h, w] int32 group-index map per grouping stage (stage s has S_s groups): the
    composed soft maps upsampled to (h, w), argmax over groups.
  """
  enc = model.encode_image(x)
  out = []
  for maps in compose_stage_maps(enc["soft"], enc["tokens"]):
    up = upsample_group_maps(maps, x.shape[1:3], model.config.vision.patch_size)
    out.append(jnp.argmax(up, axis=-1).astype(jnp.int32))
  return out
