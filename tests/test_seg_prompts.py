"""Class embeddings for zero-shot segmentation (spec 5.1): template sets, the reference's
averaging (mean of unnormalised embeddings, then normalise), background never embedded."""

import numpy as np
import pytest

from groupvit_jax import tokenize
from groupvit_jax.segmentation.datasets import open_dataset
from groupvit_jax.class_embeddings import TEMPLATE_SETS, class_embeddings
from groupvit_jax.segmentation.segmenter import Segmenter


def test_template_sets():
  assert TEMPLATE_SETS["simple"] == ("a photo of a {}.",)
  assert len(TEMPLATE_SETS["subset"]) == 7 and len(TEMPLATE_SETS["full"]) == 80
  assert set(TEMPLATE_SETS["subset"]) <= set(TEMPLATE_SETS["full"])


def test_class_embedding_is_normalised_mean_of_unnormalised(tiny_model):
  names = ["cat", "traffic light"]
  got = class_embeddings(tiny_model, names, "subset")
  ctx = tiny_model.config.text.context_length
  for i, name in enumerate(names):
    feats = np.asarray(tiny_model.get_text_features(
        tokenize([t.format(name) for t in TEMPLATE_SETS["subset"]], ctx)), np.float64)
    mean = feats.mean(0)
    np.testing.assert_allclose(got[i], mean / np.linalg.norm(mean), atol=1e-5)
    per_template = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    clip_style = per_template.mean(0) / np.linalg.norm(per_template.mean(0))
    assert not np.allclose(got[i], clip_style, atol=1e-4)  # not CLIP's per-template normalising


def test_background_is_never_embedded(tiny_model, voc_root):
  ds = open_dataset("voc", voc_root)
  assert "background" not in ds.prompt_classes and len(ds.prompt_classes) == 20
  seg = Segmenter(tiny_model, ds.prompt_classes, bg_threshold=0.95)
  assert seg.text.shape[0] == 20 and seg.labels[0] == "background"
  np.testing.assert_allclose(np.asarray(seg.text), class_embeddings(tiny_model, ds.prompt_classes),
                             atol=1e-6)
  with pytest.raises(ValueError, match="'background' is not a class"):
    Segmenter(tiny_model, ["cat", "background"], bg_threshold=0.95)
  no_bg = Segmenter(tiny_model, ["cat", "dog"], bg_threshold=None)
  assert no_bg.labels == ["cat", "dog"]
