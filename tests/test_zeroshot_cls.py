"""Zero-shot classification: accuracy arithmetic against hand counts, the spec 5.1 formulas against
transformers' GroupViT, one compilation per evaluation, the class list and preprocessing."""

import collections

import jax.numpy as jnp
import numpy as np
import pytest

from groupvit_jax.classification import image_batches, imagenet_data, zeroshot as zeroshot_cls
from groupvit_jax.classification.imagenet_classes import IMAGENET_CLASSES, imagenet_synsets
from groupvit_jax.image_io import load_image
from groupvit_jax.preprocessing import IMAGENET_MEAN, IMAGENET_STD, preprocess_images
from imagenet_testdata import make_folders, write_image


def _logits_from_orders(orders, n):
  """Row b ranks classes in ``orders[b]`` (best first)."""
  logits = np.zeros((len(orders), n), np.float32)
  for b, order in enumerate(orders):
    for rank, c in enumerate(order):
      logits[b, c] = 10.0 - rank
  return logits


def test_topk_hits_hand_counted():
  orders = [[2, 5, 1, 0, 3, 4, 6],   # label 2 ranked 1st
            [5, 6, 0, 1, 2, 3, 4],   # label 0 ranked 3rd
            [1, 2, 3, 4, 6, 0, 5],   # label 6 ranked 5th
            [0, 2, 3, 4, 5, 1, 6],   # label 1 ranked 6th
            [6, 5, 3, 2, 1, 0, 4]]   # label 4 ranked 7th
  labels = np.array([2, 0, 6, 1, 4])
  hits = np.asarray(zeroshot_cls.topk_hits(jnp.asarray(_logits_from_orders(orders, 7)),
                                           jnp.asarray(labels)))
  assert hits.tolist() == [[True, True], [False, True], [False, True], [False, False],
                           [False, False]]
  # Ties go to the lower class index; k above the class count makes every label a hit.
  tie = jnp.asarray([[0.5, 0.9, 0.1, 0.9]])
  assert np.asarray(zeroshot_cls.topk_hits(tie, jnp.asarray([3]), ks=(1, 2))).tolist() == [
      [False, True]]
  assert np.asarray(zeroshot_cls.topk_hits(tie, jnp.asarray([2]), ks=(1, 9))).tolist() == [
      [False, True]]


def _grey_level(k):
  return 5 + 20 * k


def test_evaluate_counts_hand_made_predictions(tmp_path, tiny_model, monkeypatch):
  """11 images in 3 class folders, 2 batches of 8 (the second padded). Each image is a uniform grey
  level that says which row of a hand-made logits table is its prediction."""
  samples = make_folders(tmp_path, {0: 4, 7: 3, 999: 4}, value_of=_grey_level)
  labels = [label for _, label in samples]
  assert labels == [0] * 4 + [7] * 3 + [999] * 4
  # Rank of the true class in each image's prediction (1 = top-1).
  ranks = [1, 1, 2, 5, 6, 1, 3, 1000, 1, 7, 5]
  # By hand: rank 1 -> images 0, 1, 5, 8 (4 of 11); rank <= 5 adds images 2, 3, 6, 10 (8 of 11).
  rng = np.random.default_rng(0)
  table = np.zeros((len(samples), 1000), np.float32)
  for i, (label, rank) in enumerate(zip(labels, ranks)):
    order = [c for c in rng.permutation(1000) if c != label]
    order.insert(rank - 1, label)
    table[i] = _logits_from_orders([order], 1000)[0]

  def fake_logits(model, pixel_values, class_emb):
    del model, class_emb
    grey = (pixel_values[:, 0, 0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255.0
    row = jnp.clip(jnp.round((grey - 5.0) / 20.0).astype(jnp.int32), 0, len(samples) - 1)
    return jnp.asarray(table)[row]

  monkeypatch.setattr(zeroshot_cls, "zeroshot_logits", fake_logits)
  monkeypatch.setattr(zeroshot_cls, "distinct_class_embeddings",
                      lambda model, names, templates: np.zeros((len(names), 16), np.float32))
  data = imagenet_data.open_imagenet(tmp_path)
  result = zeroshot_cls.evaluate(tiny_model, data, batch_size=8, progress=False)
  assert result["num_images"] == 11
  assert (result["top1_correct"], result["top5_correct"]) == (4, 8)
  assert result["top1"] == pytest.approx(4 / 11)
  assert result["top5"] == pytest.approx(8 / 11)
  # --max-images: the first 5 images only (ranks 1, 1, 2, 5, 6).
  result = zeroshot_cls.evaluate(tiny_model, data, batch_size=8, max_images=5, progress=False)
  assert (result["num_images"], result["top1_correct"], result["top5_correct"]) == (5, 2, 4)


def test_classifier_compiles_once_and_masks_padding(tmp_path, tiny_model):
  samples = make_folders(tmp_path, {3: 5, 4: 6})
  emb = zeroshot_cls.distinct_class_embeddings(tiny_model, IMAGENET_CLASSES[:10], "simple")
  clf = zeroshot_cls.ZeroShotClassifier(tiny_model, emb, batch_size=6)
  assert clf.batch_size == 8  # rounded up to the 8 simulated devices
  hits, valid = [], 0
  for batch in image_batches.iter_batches(samples, load_image, batch_size=clf.batch_size,
                                          image_size=32):
    h = np.asarray(clf.hits(batch))
    assert not h[~batch.mask].any()
    hits.append(h)
    valid += batch.num_valid
  assert valid == 11 and len(hits) == 2
  assert clf.num_traces == 1
  with pytest.raises(ValueError, match="8 rows"):
    clf.logits(np.zeros((3, 32, 32, 3), np.float32))


def test_logits_and_class_embeddings_match_transformers(tmp_path):
  """Spec 5.1 restated on transformers' GroupViT: mean of unnormalised text features over the 7
  templates, normalised; logits = normalised image features @ class embeddings^T, no scale."""
  import torch
  import groupvit_jax as gv
  from reference_models import TINY_HF, make_hf_model
  hf = make_hf_model(TINY_HF, seed=3)
  hf.save_pretrained(str(tmp_path))
  model = gv.load_pretrained(str(tmp_path))
  names = ["tench", "great white shark", "missile", "sunglasses", "missile"]
  temps = zeroshot_cls.get_templates("subset")
  assert len(temps) == 7
  ids = gv.tokenize([t.format(n) for n in names for t in temps], context_length=16)
  x = np.random.RandomState(0).randn(8, 32, 32, 3).astype(np.float32)
  with torch.no_grad():
    text = hf.get_text_features(input_ids=torch.tensor(ids, dtype=torch.long))
    image = hf.get_image_features(pixel_values=torch.tensor(x).permute(0, 3, 1, 2))
  text = getattr(text, "pooler_output", text).numpy().reshape(len(names), len(temps), -1).mean(1)
  ref_emb = text / np.linalg.norm(text, axis=-1, keepdims=True)
  image = getattr(image, "pooler_output", image).numpy()
  ref_logits = (image / np.linalg.norm(image, axis=-1, keepdims=True)) @ ref_emb.T

  emb = zeroshot_cls.distinct_class_embeddings(model, names, "subset")
  np.testing.assert_allclose(emb, ref_emb, atol=1e-4)
  np.testing.assert_array_equal(emb[2], emb[4])  # a repeated name shares one row
  clf = zeroshot_cls.ZeroShotClassifier(model, emb, batch_size=8)
  logits = np.asarray(clf.logits(x))
  np.testing.assert_allclose(logits, ref_logits, atol=1e-4)
  assert np.ptp(ref_logits) > 1e-3 and np.abs(logits).max() <= 1.0 + 1e-5
  # softmax(scale * logits) with scale = min(exp(logit_scale), 100).
  probs = zeroshot_cls.softmax_probabilities(logits, float(model.scale()))
  z = float(np.exp(2.3)) * ref_logits
  ref_probs = np.exp(z - z.max(1, keepdims=True))
  np.testing.assert_allclose(probs, ref_probs / ref_probs.sum(1, keepdims=True), atol=1e-4)


def test_imagenet_class_list_matches_reference_anchors():
  assert len(IMAGENET_CLASSES) == 1000
  assert IMAGENET_CLASSES[:3] == ("tench", "goldfish", "great white shark")
  assert IMAGENET_CLASSES[-1] == "toilet paper"
  # CLIP's list repeats two names (kept for comparable numbers).
  repeated = {n: [i for i, m in enumerate(IMAGENET_CLASSES) if m == n]
              for n, c in collections.Counter(IMAGENET_CLASSES).items() if c > 1}
  assert repeated == {"missile": [657, 744], "sunglasses": [836, 837]}
  synsets = imagenet_synsets()
  assert len(set(synsets)) == 1000 and list(synsets) == sorted(synsets)
  assert (synsets[0], synsets[1], synsets[-1]) == ("n01440764", "n01443537", "n15075141")


def test_batches_use_the_reference_eval_transform(tmp_path):
  """Reader threads give exactly ``preprocess_images`` (resize 256, crop 224), in item order."""
  assert image_batches.eval_resize(224) == 256 and image_batches.eval_resize(448) == 512
  paths = [write_image(tmp_path / f"{i}.jpg", None, size=(300 + 7 * i, 260), seed=i)
           for i in range(5)]
  batches = list(image_batches.iter_batches([(p, i) for i, p in enumerate(paths)], load_image,
                                            batch_size=3, image_size=224, num_workers=3))
  assert [b.mask.tolist() for b in batches] == [[True] * 3, [True, True, False]]
  assert [b.labels.tolist() for b in batches] == [[0, 1, 2], [3, 4, -1]]
  got = np.concatenate([b.images for b in batches])
  want = preprocess_images([load_image(p) for p in paths], image_size=224, resize=256)
  np.testing.assert_array_equal(got[:5], want)
  assert not got[5].any()
