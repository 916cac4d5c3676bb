"""Raw sample -> training example, and the skip counting of bad samples.

A raw sample (from any source) is a dict with ``image`` (encoded bytes or None), ``caption``
(bytes/str or None), ``json`` (bytes or None) and ids used to seed its random stream. The
processor decodes the image with PIL (RGB, like the reference's webdataset 'pil' decoder),
augments it, builds the caption + K prompts and tokenizes them. A sample whose image is missing
or does not decode, or whose caption is missing or empty, becomes a *skip marker*;
``SkipCountingIterDataset`` drops the markers and attaches to the next good example how many of
each kind it dropped, so the counts survive worker processes and batching.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from typing import Any

import grain
import numpy as np
from PIL import Image, UnidentifiedImageError

from groupvit_jax.image_io import to_rgb_uint8
from groupvit_jax.tokenizer import tokenize
from input_pipeline import multilabel_prompts as prompts_lib

SKIP_KEY = "__skip__"
SKIP_REASONS = ("image", "caption", "shard")  # counted as skipped_image, skipped_caption, ...


def decode_image(data: bytes) -> Image.Image:
  """Encoded bytes -> RGB PIL image (raises on corrupt data)."""
  with Image.open(io.BytesIO(data)) as img:
    img.load()
    return Image.fromarray(to_rgb_uint8(img))


def decode_caption(data) -> str:
  if isinstance(data, bytes):
    data = data.decode("utf-8", errors="replace")
  return " ".join(str(data).split())


def sample_rng(seed: int, sample: dict[str, Any]) -> np.random.Generator:
  """The sample's own random stream: a function of the run seed, its epoch and identity only."""
  ident = [int(sample.get("__epoch__", 0)), int(sample.get("__shard_id__", 0)),
           int(sample["__index__"])]
  return np.random.default_rng([int(seed)] + ident)


@dataclasses.dataclass
class SampleProcessor:
  """Callable raw sample -> ``{'image': f32 [H, W, 3], 'text': i32 [1+K, L]}`` or a skip marker.

  Attributes:
    transform: image transform ``(PIL image, rng) -> float32 [H, W, 3]``.
    multi_label: K prompts per caption (0: caption only, text [1, L]).
    context_length: tokens per text.
    seed: run seed (mixed into every sample's random stream).
  """
  transform: Any
  multi_label: int
  context_length: int
  seed: int

  def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
    if SKIP_KEY in sample:  # the source's own marker (a shard that yielded nothing)
      return sample
    caption = sample.get("caption")
    caption = decode_caption(caption) if caption is not None else ""
    if not caption:
      return {SKIP_KEY: "caption", "__key__": sample.get("__key__")}
    if sample.get("image") is None:
      return {SKIP_KEY: "image", "__key__": sample.get("__key__")}
    try:
      img = decode_image(sample["image"])
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
      logging.debug("skipping %s from %s: %s", sample.get("__key__"), sample.get("__shard__"), e)
      return {SKIP_KEY: "image", "__key__": sample.get("__key__")}
    rng = sample_rng(self.seed, sample)
    image = self.transform(img, rng)
    texts = [caption]
    if self.multi_label:
      texts = prompts_lib.make_prompts(caption, self._words(sample, caption), self.multi_label, rng)
    return {"image": image, "text": tokenize(texts, self.context_length).astype(np.int32)}

  @staticmethod
  def _words(sample: dict[str, Any], caption: str) -> list[str]:
    meta = sample.get("json")
    if meta:
      try:
        words = json.loads(meta).get(prompts_lib.WORDS_FIELD)
      except (ValueError, AttributeError):
        words = None
      if isinstance(words, list):
        return [str(w) for w in words]
    return prompts_lib.prompt_words(caption)


class SkipCountingIterDataset(grain.IterDataset):
  """Drops skip markers; each kept example gets ``skipped_image`` / ``skipped_caption`` counts
  (int32) of the markers dropped just before it."""

  def __init__(self, parent: grain.IterDataset):
    super().__init__(parent)

  def __iter__(self):
    return _SkipCountingIterator(self._parent.__iter__())

  def __str__(self) -> str:
    return "SkipCountingIterDataset"


class _SkipCountingIterator(grain.DatasetIterator):

  def __init__(self, parent: grain.DatasetIterator):
    super().__init__(parent)

  def __next__(self) -> dict[str, Any]:
    counts = dict.fromkeys(SKIP_REASONS, 0)
    while True:
      example = next(self._parent)
      reason = example.get(SKIP_KEY)
      if reason is None:
        for r in SKIP_REASONS:
          example[f"skipped_{r}"] = np.int32(counts[r])
        return example
      counts[reason] += 1

  def get_state(self):
    return self._parent.get_state()

  def set_state(self, state):
    self._parent.set_state(state)
