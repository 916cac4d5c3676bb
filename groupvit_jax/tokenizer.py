"""The CLIP byte-pair-encoding tokenizer used by GroupViT (spec 2.2).

Identical to OpenAI CLIP's ``SimpleTokenizer`` and GroupViT's ``datasets/tokenizer.py``: ftfy fix,
html unescape twice, whitespace collapse, lowercase, CLIP's pre-tokenisation regex, byte-level BPE
over the 48,894 merges of ``bpe_simple_vocab_16e6.txt.gz`` (shipped in ``groupvit_jax/assets``,
MIT licence). Sequences are ``[49406] + ids + [49407]``, zero-padded to ``context_length``; longer
ones keep their first ``context_length`` ids with the last overwritten by 49407.
"""

from __future__ import annotations

import functools
import gzip
import html
from collections.abc import Iterable, Sequence
from importlib import resources

import ftfy
import numpy as np
import regex

SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
SOT_ID = 49406
EOT_ID = 49407
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2  # 48894


@functools.lru_cache()
def bytes_to_unicode() -> dict[int, str]:
  """Maps every byte to a printable unicode character (GPT-2 / CLIP scheme)."""
  bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
        list(range(ord("®"), ord("ÿ") + 1)))
  cs = bs[:]
  n = 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + n)
      n += 1
  return dict(zip(bs, map(chr, cs)))


def _get_pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
  return set(zip(word[:-1], word[1:]))


def _needs_fixing(text: str) -> bool:
  """False for printable ASCII without '&', on which ftfy and html.unescape change nothing
  (ftfy's fixes act on non-ASCII text, control characters and HTML entities); most captions."""
  return "&" in text or not (text.isascii() and text.isprintable())


def basic_clean(text: str) -> str:
  if _needs_fixing(text):  # ftfy costs ~0.15 ms a caption, a tenth of the input pipeline's time
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
  return text.strip()


def whitespace_clean(text: str) -> str:
  return regex.sub(r"\s+", " ", text).strip()


def default_bpe_path():
  return resources.files("groupvit_jax") / "assets" / BPE_FILE


class SimpleTokenizer:
  """CLIP BPE tokenizer. ``encode(text) -> list[int]`` without start/end tokens."""

  def __init__(self, bpe_path=None):
    path = str(bpe_path or default_bpe_path())
    with gzip.open(path, "rt", encoding="utf-8") as f:
      lines = f.read().split("\n")
    merges = [tuple(m.split()) for m in lines[1:NUM_MERGES + 1]]
    if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
      raise ValueError(f"{path}: expected a CLIP BPE merges file with {NUM_MERGES} merges after "
                       "its header line")
    self.byte_encoder = bytes_to_unicode()
    self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
    vocab = list(self.byte_encoder.values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += [SOT_TOKEN, EOT_TOKEN]
    self.encoder = dict(zip(vocab, range(len(vocab))))
    self.decoder = {v: k for k, v in self.encoder.items()}
    self.bpe_ranks = dict(zip(merges, range(len(merges))))
    self.cache = {SOT_TOKEN: SOT_TOKEN, EOT_TOKEN: EOT_TOKEN}
    # Whole texts repeat (multi-label prompts are 80 templates x the caption words), and ftfy's
    # cleaning costs as much as the BPE: remember recent texts (measured in the shapes demo's
    # input pipeline: tokenizing was ~40% of a sample's time before).
    self.text_cache: dict[str, tuple[int, ...]] = {}
    self.pat = regex.compile(
        r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
        regex.IGNORECASE)

  @property
  def vocab_size(self) -> int:
    return len(self.encoder)

  def bpe(self, token: str) -> str:
    if token in self.cache:
      return self.cache[token]
    word = tuple(token[:-1]) + (token[-1] + "</w>",)
    pairs = _get_pairs(word)
    if not pairs:
      return token + "</w>"
    ranks = self.bpe_ranks
    while True:
      bigram = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
      if bigram not in ranks:
        break
      first, second = bigram
      new_word: list[str] = []
      i = 0
      while i < len(word):
        try:
          j = word.index(first, i)
        except ValueError:
          new_word.extend(word[i:])
          break
        new_word.extend(word[i:j])
        i = j
        if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
          new_word.append(first + second)
          i += 2
        else:
          new_word.append(word[i])
          i += 1
      word = tuple(new_word)
      if len(word) == 1:
        break
      pairs = _get_pairs(word)
    out = " ".join(word)
    self.cache[token] = out
    return out

  def encode(self, text: str) -> list[int]:
    ids = self.text_cache.get(text)
    if ids is None:
      if len(self.text_cache) >= TEXT_CACHE_SIZE:
        self.text_cache.clear()
      ids = self.text_cache[text] = self._encode_uncached(text)
    return list(ids)

  def _encode_uncached(self, text: str) -> tuple[int, ...]:
    text = whitespace_clean(basic_clean(text)).lower()
    ids: list[int] = []
    for token in self.pat.findall(text):
      token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
      ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
    return tuple(ids)

  def decode(self, ids: Iterable[int]) -> str:
    text = "".join(self.decoder[int(i)] for i in ids if int(i) in self.decoder)
    text = bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace")
    return text.replace("</w>", " ").strip()


TEXT_CACHE_SIZE = 1 << 16  # texts remembered by SimpleTokenizer.encode


@functools.lru_cache(maxsize=1)
def get_tokenizer() -> SimpleTokenizer:
  """The process-wide tokenizer over the shipped BPE file (built once, ~0.5 s)."""
  return SimpleTokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = 77) -> np.ndarray:
  """Tokenizes captions the way GroupViT was trained and evaluated.

  Args:
    texts: one string or a sequence of strings.
    context_length: output length (77 for the released models).
  Returns:
    int32 ``[N, context_length]`` for a sequence, ``[context_length]`` for one string:
    ``49406, ids..., 49407`` then zeros; too-long texts are cut and end with 49407.
  """
  single = isinstance(texts, str)
  if single:
    texts = [texts]
  if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
    raise TypeError("tokenize expects a string or a sequence of strings")
  if context_length < 2:
    raise ValueError(f"context_length must be >= 2, got {context_length}")
  tok = get_tokenizer()
  out = np.zeros((len(texts), context_length), np.int32)
  for i, text in enumerate(texts):
    ids = [SOT_ID] + tok.encode(text) + [EOT_ID]
    if len(ids) > context_length:
      ids = ids[:context_length]
      ids[-1] = EOT_ID
    out[i, :len(ids)] = ids
  return out[0] if single else out
