"""Multi-label prompts from a caption (spec 3.3, the reference's ``WordAugTokenizeWrapper``).

On the raw caption: POS-tag, keep the words tagged NN, NNS, NNP, VB, VBD, VBG, VBN, VBP or VBZ
(duplicates kept, NNPS excluded), choose ``min(K, n)`` of them without replacement, format each
with an independently random template of the 80 ImageNet templates, and pad to K with copies of
the caption. Output order: caption, prompt 1, ..., prompt K.

The reference tags with NLTK (``word_tokenize`` + the averaged perceptron), whose data must be
downloaded. Here the tagger is textblob's bundled PatternTagger (Penn tags, no data download);
the two taggers agree on most caption words but not on all, so prompt words can differ from the
reference on ambiguous words. ``input_pipeline.extract_prompts`` runs the tagger offline and
stores the words in the shards.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from groupvit_jax.class_embeddings import FULL_TEMPLATES

KEEP_TAGS = frozenset({"NN", "NNS", "NNP", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ"})
WORDS_FIELD = "groupvit_prompt_words"  # where extract_prompts stores the words in a sample's json


@functools.lru_cache(maxsize=1)
def _tagger():
  from textblob.en import tag  # pylint: disable=g-import-not-at-top
  return tag


def pos_tag(caption: str) -> list[tuple[str, str]]:
  """``[(word, penn_tag), ...]`` for the raw caption (no lower-casing)."""
  return [(w, t) for w, t in _tagger()(caption)]


def prompt_words(caption: str) -> list[str]:
  """The caption's nouns and verbs eligible for prompts, in order, duplicates kept."""
  return [w for w, t in pos_tag(caption) if t in KEEP_TAGS]


def make_prompts(caption: str, words: Sequence[str], k: int, rng: np.random.Generator,
                 templates: Sequence[str] = FULL_TEMPLATES) -> list[str]:
  """``[caption, p_1, ..., p_k]``: ``min(k, len(words))`` words without replacement, each with a
  random template, padded with the caption."""
  words = list(words)
  prompts = []
  if words:
    chosen = rng.choice(len(words), min(k, len(words)), replace=False)
    for idx in chosen:
      template = templates[int(rng.integers(len(templates)))]
      prompts.append(template.format(words[int(idx)]))
  prompts += [caption] * (k - len(prompts))
  return [caption] + prompts
