"""The synthetic shapes world: deterministic, captions true to the masks, files readable by the
real training and evaluation readers."""

import json
import re
import tarfile

import numpy as np
import pytest

from groupvit_jax.segmentation.datasets import open_dataset
from input_pipeline import synthetic_world as sw
from input_pipeline.multilabel_prompts import WORDS_FIELD, prompt_words
from input_pipeline.world_files import write_train_shards, write_world

CFG = sw.WorldConfig()
PLURALS = {v: k for k, v in sw.PLURAL.items()}


def test_scenes_are_a_deterministic_function_of_seed_split_and_index():
  a, b = sw.generate(CFG, 3, 17, "train"), sw.generate(CFG, 3, 17, "train")
  np.testing.assert_array_equal(a.image, b.image)
  np.testing.assert_array_equal(a.mask, b.mask)
  assert a.caption == b.caption
  others = [sw.generate(CFG, 4, 17, "train"), sw.generate(CFG, 3, 18, "train"),
            sw.generate(CFG, 3, 17, "test")]
  assert all(not np.array_equal(a.image, o.image) for o in others)


def named_objects(caption: str) -> list[tuple[str | None, str]]:
  """(colour or None, shape) for every object phrase the caption names."""
  words = re.findall(r"[a-z]+", caption.lower())
  found = []
  for i, w in enumerate(words):
    shape = w if w in sw.SHAPES else PLURALS.get(w)
    if shape:
      color = words[i - 1] if i and words[i - 1] in sw.COLORS else None
      found.append((color, shape))
  return found


@pytest.mark.parametrize("cfg", [CFG, sw.COLOURED_KINDS_WORLD, sw.any_colour_world(),
                                 sw.NAMED_BACKGROUNDS_WORLD],
                         ids=["default", "coloured_kinds", "any_colour", "named_backgrounds"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_captions_agree_with_masks(split, cfg):
  for i in range(200):
    s = sw.generate(cfg, 0, i, split)
    named = named_objects(s.caption)
    if not s.objects:  # an empty training scene: nothing drawn, no shape named
      assert split == "train" and cfg.empty_scenes > 0 and not s.mask.any() and not named
      continue
    assert named, s.caption
    present = set(np.unique(s.mask)) - {0}
    for color, shape in named:
      label = 1 + cfg.shapes.index(shape)
      # a named shape is drawn, visible, and has a visible object of the named colour
      assert label in present, (i, s.caption)
      visible = [o for o in s.objects if o.visible_fraction > 0 and o.shape == shape]
      assert visible and (color is None or any(o.color == color for o in visible)), s.caption
    for o in s.objects:  # every visible object is in the mask
      if o.visible_fraction > 0:
        assert (s.mask == 1 + cfg.shapes.index(o.shape)).any(), (i, o)
    assert s.mask.shape == s.image.shape[:2] and s.mask.max() <= len(cfg.shapes)


def test_colours_under_the_mask_match_the_named_colour():
  for i in range(50):
    s = sw.generate(CFG, 1, i, "train")
    top = [o for o in s.objects if o.visible_fraction > 0][-1]  # drawn last: not occluded
    label = 1 + CFG.shapes.index(top.shape)
    cy, cx = int(round(top.cy)), int(round(top.cx))
    if s.mask[cy, cx] != label:
      continue  # e.g. the centre of a star's concave outline
    dist = {c: np.abs(s.image[cy, cx].astype(int) - rgb).sum() for c, rgb in sw.COLORS.items()}
    assert min(dist, key=dist.get) == top.color, (i, dist)


def test_written_world_is_read_by_the_real_readers(tmp_path):
  out = write_world(str(tmp_path), CFG, seed=0, num_train=12, num_val=3, num_test=4,
                    shard_size=5, progress=False)
  assert len(out["train_shards"]) == 3
  with tarfile.open(out["train_shards"][0]) as tar:
    names = tar.getnames()
  assert {n.split(".", 1)[1] for n in names} == {"png", "txt", "json"}
  # the caption's prompt words are stored once at write time, as extract_prompts would
  members = read_members(out["train_shards"][0])
  for key in ("000000000", "000000004"):
    caption = members[key + ".txt"].decode()
    meta = json.loads(members[key + ".json"])
    assert meta[WORDS_FIELD] == prompt_words(caption) and meta[WORDS_FIELD], caption
  test = open_dataset("folder", out["eval_root"], "test")
  assert len(test) == 4 and tuple(test.classes) == CFG.class_names
  with open(tmp_path / "world.json") as f:
    assert json.load(f)["config"] == CFG.to_dict()  # what the demo compares to reuse a world
  ex = test[0]
  want = sw.generate(CFG, 0, 0, "test")
  np.testing.assert_array_equal(ex.image, want.image)
  np.testing.assert_array_equal(ex.label, want.mask)


def test_caption_options_keep_captions_true():
  kinds = (("circle", ("red", "orange")), ("square", ("blue",)), ("triangle", ("green",)),
           ("star", ("yellow", "purple")))
  cfg = sw.WorldConfig(name_all=1.0, describe_background=1.0, color_mention=0.0, kind_colors=kinds)
  for i in range(100):
    s = sw.generate(cfg, 0, i, "train")
    visible = [o for o in s.objects if o.visible_fraction > 0]
    assert all(o.color in dict(kinds)[o.shape] for o in s.objects), s.objects
    named = named_objects(s.caption)
    assert all(color is None for color, _ in named), s.caption  # colour_mention=0
    said = {shape for _, shape in named}  # name_all=1: every visible object is named
    assert said == {o.shape for o in visible}, (s.caption, visible)
    assert sw.BACKGROUND_WORDS[s.background] in s.caption, (s.caption, s.background)



def test_background_nouns_become_prompt_words():
  cfg = sw.WorldConfig(describe_background=1.0, background_nouns=True)
  for i in range(40):
    s = sw.generate(cfg, 0, i, "train")
    stuff = sw.STUFF_NAMES[s.background]
    assert stuff in [w.lower() for w in prompt_words(s.caption)], (s.caption, s.background)
    others = set(sw.STUFF_NAMES.values()) - {stuff}
    assert not others & set(re.findall(r"[a-z]+", s.caption.lower())), s.caption


def test_empty_scenes_only_in_training_and_captioned_without_shapes():
  cfg = sw.WorldConfig(empty_scenes=0.5, describe_background=1.0, background_nouns=True)
  train = [sw.generate(cfg, 0, i, "train") for i in range(60)]
  empty = [s for s in train if not s.objects]
  assert 15 <= len(empty) <= 45
  for s in empty:
    assert not s.mask.any() and not named_objects(s.caption), s.caption
    assert sw.STUFF_NAMES[s.background] in [w.lower() for w in prompt_words(s.caption)], s.caption
  for split in ("val", "test"):
    assert all(sw.generate(cfg, 0, i, split).objects for i in range(60))


def read_members(path: str) -> dict[str, bytes]:
  with tarfile.open(path) as tar:
    return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_parallel_shard_writing_gives_the_same_samples(tmp_path):
  one = write_train_shards(str(tmp_path / "one"), CFG, 0, 9, shard_size=4, progress=False, workers=1)
  two = write_train_shards(str(tmp_path / "two"), CFG, 0, 9, shard_size=4, progress=False, workers=2)
  assert [p.rsplit("/", 1)[1] for p in one] == [p.rsplit("/", 1)[1] for p in two]
  assert len(one) == 3
  for a, b in zip(one, two):
    assert read_members(a) == read_members(b)
