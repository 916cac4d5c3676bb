"""Serving exports: the image encoder, the text encoder and the dense segmentation function as
self-contained programs with a dynamic batch dimension.

- ``stablehlo``: ``jax.export`` serialized StableHLO (``<name>.stablehlo``), reloaded with
  ``jax.export.deserialize(bytes).call(...)`` in any JAX process, no groupvit_jax needed.
- ``savedmodel``: a TensorFlow SavedModel (``savedmodel/``) through ``jax2tf`` with one signature
  per function (needs the ``tf`` extra). The protocol's top-5 class filter is written as ranks
  (``dense.top_k_mask``), not ``lax.top_k``, whose StableHLO TensorFlow 2.21 cannot read.

Weights are baked into each program as constants (a frozen graph: nothing else to ship).

Functions (``b`` is symbolic: any batch size; S = image size, T = context length, D = embed
dim, H = W = the segmentation window, C = N + 1 labels with 0 = background):

- ``image_encoder``: float32 [b, S, S, 3] ImageNet-normalised -> [b, D] projected embedding
  (not L2-normalised; ``GroupViT.get_image_features``).
- ``text_encoder``: int32 [b, T] token ids (``groupvit_jax.tokenize``) -> [b, D]
  (``GroupViT.get_text_features``).
- ``segment``: float32 [b, H, W, 3] normalised window, float32 [n, D] L2-normalised class
  embeddings (``n`` symbolic too, at least ``dense.TOP_K`` = 5: the protocol keeps each
  image's top 5 classes, a static count; export with ``num_classes`` for a fixed smaller
  vocabulary), float32 [] background threshold -> int32 [b, H, W] labels
  and float32 [b, H, W, n + 1] per-pixel class scores (``dense.window_predict``'s table read
  at each pixel's group). One window: the sliding-window protocol stays in the host.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
from flax import nnx

from groupvit_jax.segmentation import dense

FORMATS = ("stablehlo", "savedmodel")
INFO_FILE = "export_info.json"


def _functions(model):
  """name -> pure function of arrays, with the model's weights closed over."""
  graphdef, state = nnx.split(model)

  def image_encoder(pixels):
    return nnx.merge(graphdef, state).get_image_features(pixels)

  def text_encoder(ids):
    return nnx.merge(graphdef, state).get_text_features(ids)

  def segment(pixels, text, bg_threshold):
    index, table = dense.window_predict(nnx.merge(graphdef, state), pixels, text, bg_threshold)
    scores = jax.vmap(lambda t, i: t[i])(table, index)  # [b, H, W, C]
    return jnp.argmax(scores, axis=-1).astype(jnp.int32), scores

  return {"image_encoder": image_encoder, "text_encoder": text_encoder, "segment": segment}


def input_specs(model, image_size: int, seg_size: int,
                num_classes: int | None = None) -> dict[str, tuple]:
  """name -> ``jax.ShapeDtypeStruct`` arguments with a symbolic batch ``b`` (and ``n`` classes
  unless ``num_classes`` fixes it)."""
  (b,) = jax.export.symbolic_shape("b")
  if num_classes is None:  # its own scope: the constraint names n, absent from the encoders
    sb, n = jax.export.symbolic_shape("b, n", constraints=(f"n >= {dense.TOP_K}",))
  else:
    sb, n = b, num_classes
  cfg = model.config
  f32, i32 = jnp.float32, jnp.int32
  return {
      "image_encoder": (jax.ShapeDtypeStruct((b, image_size, image_size, 3), f32),),
      "text_encoder": (jax.ShapeDtypeStruct((b, cfg.text.context_length), i32),),
      "segment": (jax.ShapeDtypeStruct((sb, seg_size, seg_size, 3), f32),
                  jax.ShapeDtypeStruct((n, cfg.proj_dim), f32),
                  jax.ShapeDtypeStruct((), f32)),
  }


def export_stablehlo(model, image_size: int, seg_size: int,
                     platforms: tuple[str, ...] | None = None,
                     num_classes: int | None = None) -> dict[str, jax.export.Exported]:
  """name -> ``jax.export.Exported`` (serialise with ``.serialize()``)."""
  fns, specs = _functions(model), input_specs(model, image_size, seg_size, num_classes)
  return {name: jax.export.export(jax.jit(fn), platforms=platforms)(*specs[name])
          for name, fn in fns.items()}


def _info(model, image_size, seg_size, fmt, files, platforms, num_classes) -> dict:
  from groupvit_jax.preprocessing import IMAGENET_MEAN, IMAGENET_STD  # pylint: disable=g-import-not-at-top
  from groupvit_jax.model_config import departures  # pylint: disable=g-import-not-at-top
  cfg = model.config
  return {
      # The export runs this model's own forward, departures included (unlike a transformers
      # export, which would silently drop them): recorded so a reader knows what it serves.
      "reference_departures": departures(cfg),
      "format": fmt, "files": files, "platforms": list(platforms or [jax.default_backend()]),
      "image_size": image_size, "segment_window": seg_size,
      "segment_classes": num_classes or f"any n >= {dense.TOP_K}",
      "context_length": cfg.text.context_length, "embed_dim": cfg.proj_dim,
      "logit_scale": float(model.scale()), "patch_size": cfg.vision.patch_size,
      "normalisation": {"mean": list(map(float, IMAGENET_MEAN)),
                        "std": list(map(float, IMAGENET_STD)), "input_range": "[0, 1] RGB"},
      "functions": {
          "image_encoder": "float32 [b, S, S, 3] normalised -> float32 [b, D]",
          "text_encoder": "int32 [b, T] token ids -> float32 [b, D]",
          "segment": "float32 [b, H, W, 3], float32 [n, D] normalised class embeddings, float32 "
                     "[] bg threshold -> int32 [b, H, W] labels (0 = background), float32 "
                     "[b, H, W, n + 1] scores"},
  }


def write_stablehlo(model, directory: str, *, image_size: int, seg_size: int,
                    platforms: tuple[str, ...] | None = None,
                    num_classes: int | None = None) -> dict:
  os.makedirs(directory, exist_ok=True)
  files = {}
  for name, exp in export_stablehlo(model, image_size, seg_size, platforms,
                                    num_classes).items():
    files[name] = f"{name}.stablehlo"
    with open(os.path.join(directory, files[name]), "wb") as f:
      f.write(exp.serialize())
  info = _info(model, image_size, seg_size, "stablehlo", files, platforms, num_classes)
  with open(os.path.join(directory, INFO_FILE), "w") as f:
    json.dump(info, f, indent=2)
  return info


def load_stablehlo(directory: str) -> dict[str, jax.export.Exported]:
  """Reads back what ``write_stablehlo`` wrote: name -> Exported (call with ``.call(...)``)."""
  with open(os.path.join(directory, INFO_FILE)) as f:
    info = json.load(f)
  out = {}
  for name, file in info["files"].items():
    with open(os.path.join(directory, file), "rb") as f:
      out[name] = jax.export.deserialize(bytearray(f.read()))
  return out


def write_savedmodel(model, directory: str, *, image_size: int, seg_size: int,
                     num_classes: int | None = None) -> dict:
  """A TF SavedModel with signatures ``image_encoder``, ``text_encoder`` and ``segment`` (the
  module docstring says what each takes and returns)."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("--format savedmodel needs TensorFlow: pip install 'groupvit-jax[tf]' "
                      f"({e})") from e
  fns = _functions(model)
  cfg = model.config
  s, w, t = image_size, seg_size, cfg.text.context_length
  module = tf.Module()
  polys = {"image_encoder": [f"(b, {s}, {s}, 3)"], "text_encoder": [f"(b, {t})"],
           "segment": [f"(b, {w}, {w}, 3)", f"({num_classes or 'n'}, {cfg.proj_dim})", "()"]}
  sigs = {"image_encoder": [tf.TensorSpec([None, s, s, 3], tf.float32, name="pixels")],
          "text_encoder": [tf.TensorSpec([None, t], tf.int32, name="input_ids")],
          "segment": [tf.TensorSpec([None, w, w, 3], tf.float32, name="pixels"),
                      tf.TensorSpec([num_classes, cfg.proj_dim], tf.float32, name="text"),
                      tf.TensorSpec([], tf.float32, name="bg_threshold")]}
  constraints = () if num_classes else (f"n >= {dense.TOP_K}",)
  signatures = {}
  for name, fn in fns.items():
    converted = jax2tf.convert(fn, polymorphic_shapes=polys[name], with_gradient=False,
                               polymorphic_constraints=constraints if name == "segment" else ())
    tf_fn = tf.function(converted, input_signature=sigs[name], autograph=False)
    setattr(module, name, tf_fn)
    signatures[name] = tf_fn.get_concrete_function()
  path = os.path.join(directory, "savedmodel")
  tf.saved_model.save(module, path, signatures=signatures)
  info = _info(model, image_size, seg_size, "savedmodel", {"savedmodel": "savedmodel"},
               None, num_classes)
  with open(os.path.join(directory, INFO_FILE), "w") as f:
    json.dump(info, f, indent=2)
  return info

