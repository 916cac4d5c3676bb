"""The CLIP BPE tokenizer against transformers' CLIPTokenizer built from the same merges."""

import gzip
import json

import numpy as np
import pytest

from conftest import SHARED, shared_path
from groupvit_jax import tokenize
from groupvit_jax.tokenizer import EOT_ID, SOT_ID, get_tokenizer

STRINGS = [
    "a photo of a cat.",
    "A RED Triangle ABOVE a green circle!!",
    "Hello, World... (really?) -- yes; [ok] {fine} <tags> #hash @at 100% & more",
    "2023-11-25 12:30pm $45.99, 3.14159 and 1,000,000 items",
    "café naïve résumé Ünïcödé Straße ÆØÅ ñandú",
    "🐶 emoji 😀 test 🚀🔥 with a 🐱‍👤 sequence",
    "it's they're we've I'm you'll he'd",
    "  multiple   spaces\tand\nnewlines  ",
    "日本語のテキスト と 中文 and русский текст",
    "x" * 120,
    "a long caption " * 40,
]


SHARED_BPE = SHARED / "data" / "clip_bpe" / "bpe_simple_vocab_16e6.txt.gz"


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
  """transformers' CLIPTokenizer with a vocabulary built from transformers' own byte table and
  the merges file in ../shared (not from the package's id table or its shipped copy), so a
  reordered byte vocabulary or a different merges file in the package shows."""
  from transformers import CLIPTokenizer
  from transformers.convert_slow_tokenizer import bytes_to_unicode
  shared_path(*SHARED_BPE.relative_to(SHARED).parts)  # fails, naming the path, when missing
  d = tmp_path_factory.mktemp("clip_tok")
  with gzip.open(str(SHARED_BPE), "rt", encoding="utf-8") as f:
    lines = f.read().split("\n")
  merges = lines[1:49152 - 256 - 2 + 1]
  chars = list(bytes_to_unicode().values())
  vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
  vocab += ["<|startoftext|>", "<|endoftext|>"]
  (d / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
  (d / "merges.txt").write_text("\n".join(["#version: 0.2"] + merges), encoding="utf-8")
  return CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))


# Ids of OpenAI CLIP's released tokenizer, written out by hand (as printed by
# clip.tokenize / open_clip for these texts): independent of every vocabulary built here.
CLIP_IDS = {
    "a photo of a cat.": [49406, 320, 1125, 539, 320, 2368, 269, 49407],
    "a photo of a dog": [49406, 320, 1125, 539, 320, 1929, 49407],
}


@pytest.mark.parametrize("text", sorted(CLIP_IDS))
def test_real_clip_token_ids(text):
  want = CLIP_IDS[text]
  got = tokenize(text, context_length=16)
  np.testing.assert_array_equal(got[:len(want)], want)
  assert (got[len(want):] == 0).all()


def _hf_ids(hf, text, length=77):
  ids = np.array(hf(text, padding="max_length", max_length=length, truncation=True)["input_ids"])
  # HF pads with the EOT id; the reference pads with 0 after the first EOT.
  first_eot = int(np.argmax(ids == EOT_ID))
  ids[first_eot + 1:] = 0
  return ids


@pytest.mark.parametrize("text", STRINGS)
def test_equals_transformers_clip_tokenizer(hf_tokenizer, text):
  np.testing.assert_array_equal(tokenize(text), _hf_ids(hf_tokenizer, text))


def test_html_entities_are_unescaped_like_the_reference(hf_tokenizer):
  """The reference cleans with html.unescape (twice); transformers does not (spec 2.2)."""
  assert (tokenize("A&amp;B &lt;3") == _hf_ids(hf_tokenizer, "A&B <3")).all()
  assert (tokenize("A&amp;amp;B") == tokenize("A&B")).all()


def test_layout_padding_and_truncation():
  out = tokenize(["a photo of a cat.", "dog"], context_length=77)
  assert out.dtype == np.int32 and out.shape == (2, 77)
  assert out[0, 0] == SOT_ID and out[1, 2] == EOT_ID and (out[1, 3:] == 0).all()
  single = tokenize("dog")
  assert single.shape == (77,) and (single == out[1]).all()
  long = tokenize("word " * 200, context_length=16)
  assert long.shape == (16,) and long[0] == SOT_ID and long[-1] == EOT_ID
  assert (long[1:-1] != 0).all()


def test_vocab_and_roundtrip():
  tok = get_tokenizer()
  assert tok.vocab_size == 49408
  assert tok.encoder["<|startoftext|>"] == SOT_ID and tok.encoder["<|endoftext|>"] == EOT_ID
  assert tok.decode(tok.encode("A photo of two dogs!")) == "a photo of two dogs !"


def test_bad_input():
  with pytest.raises(TypeError):
    tokenize([1, 2])
  with pytest.raises(ValueError, match="context_length"):
    tokenize("x", context_length=1)


def test_text_cache_returns_the_uncached_ids_and_fresh_lists(hf_tokenizer):
  tok = get_tokenizer()
  text = "A photo of a  Circle, and two squares."
  first = tok.encode(text)
  first.append(-1)  # callers may mutate what they get
  second = tok.encode(text)
  assert text in tok.text_cache
  assert second == list(tok._encode_uncached(text))  # pylint: disable=protected-access
  assert second == hf_tokenizer(text, add_special_tokens=False)["input_ids"]


def test_ascii_fast_path_cleans_like_ftfy():
  """basic_clean skips ftfy on printable ASCII without '&'; on such text (and on the texts that
  still go through ftfy) the result must equal the reference's ftfy + double unescape."""
  import html  # pylint: disable=g-import-not-at-top
  import ftfy  # pylint: disable=g-import-not-at-top
  from groupvit_jax.tokenizer import _needs_fixing, basic_clean  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  alphabet = [chr(c) for c in range(32, 127)]
  texts = ["".join(rng.choice(alphabet, size=int(rng.integers(1, 40)))) for _ in range(500)]
  texts += ["a &amp; b", "caf\u00e9", "l\u2019eau\n", "x\x1b[31my", " two  squares\t"]
  fast = 0
  for text in texts:
    fast += not _needs_fixing(text)
    assert basic_clean(text) == html.unescape(html.unescape(ftfy.fix_text(text))).strip(), text
  assert fast > 100  # the fast path was exercised
