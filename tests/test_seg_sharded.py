"""Data-parallel segmentation over a device mesh (8 simulated CPU devices) gives the same labels
as one device."""

import jax
import numpy as np
from jax.sharding import AxisType

import seg_reference as ref
from groupvit_jax.segmentation.datasets import open_dataset
from groupvit_jax.segmentation.segmenter import Segmenter


def test_mesh_matches_single_device(voc_root, tmp_path):
  assert jax.device_count() == 8
  model = ref.make_grouping_model(tmp_path)
  images = [(ex.key, ex.image) for ex in open_dataset("voc", voc_root).limit(8)]
  text = np.random.default_rng(0).normal(size=(6, model.config.proj_dim))
  text /= np.linalg.norm(text, axis=-1, keepdims=True)
  names = [f"c{i}" for i in range(6)]
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  sharded = Segmenter(model, names, bg_threshold=0.3, text_embeddings=text, mesh=mesh,
                      images_per_batch=8)
  single = Segmenter(model, names, bg_threshold=0.3, text_embeddings=text, images_per_batch=2)
  got = dict(sharded.segment_stream(images))
  want = dict(single.segment_stream(images))
  assert set(got) == set(want) == {k for k, _ in images}
  for key in want:
    np.testing.assert_array_equal(got[key], want[key])
  assert max(len(np.unique(v)) for v in want.values()) >= 2  # not a degenerate model
  out = sharded._dispatch([sharded.prepare(img, key) for key, img in images], 8)  # pylint: disable=protected-access
  assert len(out.sharding.device_set) == 8 and out.addressable_shards[0].data.shape[0] == 1
