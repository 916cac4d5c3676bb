"""The full GroupViT model and its public API (transformers-style method names).

``GroupViT`` holds ``img_encoder``, ``text_encoder``, ``img_projector``, ``text_projector`` and the
temperatures, named like the official ``MultiLabelContrastive`` so checkpoints convert by table.

Two levels of API:
- building blocks usable inside ``jax.jit`` (``encode_image``, ``encode_text``, ``project_groups``,
  ``scale``): the training step and the dense segmentation function use these;
- ``get_image_features``, ``get_text_features`` and ``__call__``: validate their inputs and, when
  called eagerly, run through a cached ``jax.jit`` of the same code (see ``eager.py``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from groupvit_jax import sharding as shd
from groupvit_jax.model_config import GroupViTConfig
from groupvit_jax.models import validation
from groupvit_jax.models.eager import jit_when_eager
from groupvit_jax.models.projector import ProjectMLP
from groupvit_jax.models.text import TextEncoder
from groupvit_jax.models.vision import VisionEncoder

MAX_LOGIT_SCALE = 100.0


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """torch ``F.normalize``: x / max(||x||, eps) over the last axis, in float32."""
  x = x.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class GroupViTOutput:
  """Outputs of ``GroupViT.__call__``; fields are also readable as ``out['name']``.

  logits_per_image: [B_img, B_txt] ``scale * image_embeds @ text_embeds.T``.
  logits_per_text: [B_txt, B_img] its transpose.
  image_embeds: [B_img, D] L2-normalised projected image embeddings.
  text_embeds: [B_txt, D] L2-normalised projected text embeddings.
  soft_maps / hard_maps: per grouping stage [B_img, S_out, L_in] assignment maps.
  """

  logits_per_image: jax.Array | None = None
  logits_per_text: jax.Array | None = None
  image_embeds: jax.Array | None = None
  text_embeds: jax.Array | None = None
  soft_maps: tuple = ()
  hard_maps: tuple = ()

  def __getitem__(self, key: str):
    if key not in self.keys():
      raise KeyError(f"{key!r}; GroupViTOutput has {self.keys()}")
    return getattr(self, key)

  def keys(self) -> list[str]:
    return [f.name for f in dataclasses.fields(self)]


class GroupViT(nnx.Module):
  """GroupViT image-text model. Build with ``GroupViT(config, rngs=nnx.Rngs(0))`` or load with
  ``groupvit_jax.load_pretrained(path)``."""

  def __init__(self, config: GroupViTConfig, *, rngs: nnx.Rngs):
    self.config = config
    dtype = jnp.dtype(config.dtype)
    param_dtype = jnp.dtype(config.param_dtype)
    common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    head = dict(num_layers=config.proj_num_layers, bn_momentum=config.bn_momentum,
                bn_eps=config.bn_eps, **common)
    self.img_encoder = VisionEncoder(config.vision, remat=config.remat, **common)
    self.text_encoder = TextEncoder(config.text, remat=config.remat, **common)
    self.img_projector = ProjectMLP(config.vision.embed_dim, config.proj_hidden_dim,
                                    config.proj_dim, **head)
    self.text_projector = ProjectMLP(config.text.width, config.proj_hidden_dim, config.proj_dim,
                                     **head)
    init = jnp.asarray(config.logit_scale_init, jnp.float32)
    self.logit_scale = shd.param(init)
    self.multi_label_logit_scale = shd.param(init) if config.has_multi_label_scale else None

  # ---- building blocks (traceable) ---------------------------------------------------------------

  def scale(self) -> jax.Array:
    """``min(exp(logit_scale), 100)`` (zero gradient when clamped, like torch ``clamp``)."""
    return jnp.minimum(jnp.exp(self.logit_scale.get_value()), MAX_LOGIT_SCALE)

  def multi_label_scale(self) -> jax.Array:
    if self.multi_label_logit_scale is None:
      return self.scale()
    return jnp.minimum(jnp.exp(self.multi_label_logit_scale.get_value()), MAX_LOGIT_SCALE)

  def encode_image(self, pixel_values: jax.Array, *, train: bool = False,
                   rngs: nnx.Rngs | None = None) -> dict:
    """pixel_values: [B, H, W, 3] normalised NHWC.

    Returns the image encoder outputs (``tokens`` [B, S, C], ``pooled`` [B, C], ``soft``,
    ``hard``) plus ``image_x`` [B, D], the projected (unnormalised) pooled embedding.
    """
    out = dict(self.img_encoder(pixel_values, train=train, rngs=rngs))
    out["image_x"] = self.img_projector(out["pooled"], train=train).astype(jnp.float32)
    return out

  def encode_text(self, input_ids: jax.Array, *, train: bool = False) -> jax.Array:
    """input_ids: [N, T] or [B, n, T] -> projected (unnormalised) [N, D] or [B, n, D].

    With [B, n, T] (caption + prompts) all B*n texts share one projector batch, as in the
    reference, so BatchNorm statistics mix captions and prompts.
    """
    lead = input_ids.shape[:-1]
    ids = input_ids.reshape(-1, input_ids.shape[-1])
    x = self.text_projector(self.text_encoder(ids), train=train).astype(jnp.float32)
    return x.reshape(lead + x.shape[-1:])

  def project_groups(self, tokens: jax.Array) -> jax.Array:
    """tokens: [B, S, C] segment tokens -> [B, S, D] projected per token (BatchNorm eval)."""
    return self.img_projector(tokens, train=False).astype(jnp.float32)

  # ---- public API --------------------------------------------------------------------------------

  def get_image_features(self, pixel_values: jax.Array) -> jax.Array:
    """pixel_values: [B, H, W, 3] float32 NHWC, already normalised -> [B, D] projected embedding."""
    validation.check_pixel_values(pixel_values, self.config.vision)
    return self._image_features(pixel_values)

  def get_text_features(self, input_ids: jax.Array) -> jax.Array:
    """input_ids: [N, T] token ids (``groupvit_jax.tokenize``) -> [N, D] projected embedding."""
    validation.check_input_ids(input_ids, self.config.text)
    return self._text_features(input_ids)

  def __call__(self, pixel_values: jax.Array | None = None, input_ids: jax.Array | None = None
               ) -> GroupViTOutput:
    """Eval-mode forward: embeddings of either input and, given both, the similarity logits."""
    if pixel_values is None and input_ids is None:
      raise ValueError("GroupViT needs pixel_values, input_ids or both")
    if pixel_values is not None:
      validation.check_pixel_values(pixel_values, self.config.vision)
    if input_ids is not None:
      validation.check_input_ids(input_ids, self.config.text)
    return self._forward(pixel_values, input_ids)

  @jit_when_eager
  def _image_features(self, pixel_values):
    return self.encode_image(pixel_values)["image_x"]

  @jit_when_eager
  def _text_features(self, input_ids):
    return self.encode_text(input_ids)

  @jit_when_eager
  def _forward(self, pixel_values, input_ids) -> GroupViTOutput:
    out = GroupViTOutput()
    if pixel_values is not None:
      enc = self.encode_image(pixel_values)
      out.image_embeds = l2_normalize(enc["image_x"])
      out.soft_maps, out.hard_maps = enc["soft"], enc["hard"]
    if input_ids is not None:
      out.text_embeds = l2_normalize(self.encode_text(input_ids))
    if pixel_values is not None and input_ids is not None:
      out.logits_per_image = self.scale() * out.image_embeds @ out.text_embeds.T
      out.logits_per_text = out.logits_per_image.T
    return out

  def _trace_probe(self) -> jax.Array:
    return self.logit_scale.get_value()
