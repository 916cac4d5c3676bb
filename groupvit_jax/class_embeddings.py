"""Prompt templates and zero-shot class embeddings (spec 5.1).

Class embedding = mean over templates of the *unnormalised* projected text embeddings, then L2
normalised (no per-template normalisation, unlike CLIP). Template sets: ``simple`` (segmentation),
``subset`` (ImageNet classification), ``full`` (the 80 CLIP ImageNet templates; also the random
prompt templates of the multi-label loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from groupvit_jax import runtime_cache
from groupvit_jax.tokenizer import tokenize

FULL_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
    "graffiti of a {}.", "a bad photo of the {}.", "a cropped photo of the {}.", "a tattoo of a {}.",
    "the embroidered {}.", "a photo of a hard to see {}.", "a bright photo of a {}.",
    "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.",
    "a bright photo of the {}.", "a cropped photo of a {}.", "a plastic {}.",
    "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.",
    "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.",
    "a close-up photo of the {}.", "a photo of a {}.", "the origami {}.",
    "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
    "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.",
    "a photo of a nice {}.", "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.",
    "art of a {}.", "a sketch of the {}.", "a embroidered {}.", "a pixelated photo of a {}.",
    "itap of the {}.", "a jpeg corrupted photo of the {}.", "a good photo of a {}.",
    "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.",
    "a dark photo of a {}.", "itap of a {}.", "graffiti of the {}.", "a toy {}.",
    "itap of my {}.", "a photo of a cool {}.", "a photo of a small {}.", "a tattoo of the {}.",
)
SUBSET_TEMPLATES = (
    "itap of a {}.", "a bad photo of a {}.", "a origami {}.", "a photo of the large {}.",
    "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
)
SIMPLE_TEMPLATES = ("a photo of a {}.",)
TEMPLATE_SETS = {"full": FULL_TEMPLATES, "subset": SUBSET_TEMPLATES, "simple": SIMPLE_TEMPLATES,
                 "identity": ("{}",)}


def get_templates(templates: str | Sequence[str]) -> tuple[str, ...]:
  """A template set by name, or a user list of strings containing ``{}``."""
  if isinstance(templates, str):
    if templates not in TEMPLATE_SETS:
      raise ValueError(f"unknown template set {templates!r}; expected one of "
                       f"{sorted(TEMPLATE_SETS)} or a list of strings with '{{}}'")
    return TEMPLATE_SETS[templates]
  templates = tuple(templates)
  bad = [t for t in templates if "{}" not in t]
  if not templates or bad:
    raise ValueError(f"templates must be non-empty strings containing '{{}}', got {bad or templates}")
  return templates


def check_class_names(names: Sequence[str]) -> list[str]:
  """Strips names and refuses empty or duplicate ones (case-insensitive) with a clear message."""
  if isinstance(names, str):
    raise TypeError("class names must be a list of strings (split a comma list first)")
  names = [str(n).strip() for n in names]
  if not names:
    raise ValueError("at least one class name is needed")
  empty = [i for i, n in enumerate(names) if not n]
  if empty:
    raise ValueError(f"class names must not be empty (empty at position(s) {empty})")
  seen: dict[str, int] = {}
  dups = []
  for n in names:
    key = " ".join(n.lower().split())
    if key in seen:
      dups.append(n)
    seen[key] = 1
  if dups:
    raise ValueError(f"duplicate class names: {sorted(set(dups))}")
  return names


def class_embeddings(model, class_names: Sequence[str], templates: str | Sequence[str] = "simple",
                     *, batch_size: int = 256, cache_dir: str | None = None) -> np.ndarray:
  """Zero-shot classifier weights.

  Args:
    model: a ``GroupViT``.
    class_names: N names (never 'background': the caller drops it and thresholds instead).
    templates: a template set name or a list of format strings.
    batch_size: texts per text-encoder call (the last call is zero-padded, so shapes repeat).
    cache_dir: folder of saved embeddings (keyed by the text weights, names and templates);
      default: the one ``groupvit_jax.enable_caches()`` set up, else no cache.
  Returns:
    float32 [N, D]: per class, the mean of the unnormalised template embeddings, L2-normalised.
  """
  names = check_class_names(class_names)
  temps = get_templates(templates)
  cache_dir = cache_dir or runtime_cache.embedding_cache_dir()
  if cache_dir:
    key = runtime_cache.embedding_key(model, names, temps)
    cached = runtime_cache.load_embeddings(key, cache_dir)
    if cached is not None and cached.shape[0] == len(names):
      return cached
    emb = _compute(model, names, temps, batch_size)
    runtime_cache.save_embeddings(key, cache_dir, emb)
    return emb
  return _compute(model, names, temps, batch_size)


def _compute(model, names: list[str], temps: tuple[str, ...], batch_size: int) -> np.ndarray:
  texts = [t.format(n) for n in names for t in temps]
  ids = tokenize(texts, context_length=model.config.text.context_length)
  feats = []
  for start in range(0, len(ids), batch_size):
    chunk = ids[start:start + batch_size]
    n = len(chunk)
    if n < batch_size and len(ids) > batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - n,) + chunk.shape[1:], chunk.dtype)])
    feats.append(np.asarray(model.get_text_features(chunk))[:n])
  emb = np.concatenate(feats).reshape(len(names), len(temps), -1).mean(axis=1)
  return (emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)).astype(np.float32)
