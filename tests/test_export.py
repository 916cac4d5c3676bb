"""Serving exports: each exported function, reloaded from disk, reproduces the in-process model
at several batch sizes (the batch dimension is symbolic)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import groupvit_jax as gv
from groupvit_jax import serving_export
from groupvit_jax.cli.main import main as cli_main
from groupvit_jax.convert import flat_state
from groupvit_jax.model_config import tiny
from groupvit_jax.segmentation import dense




IMAGE, WINDOW = 32, 48  # the tiny model's input size, and a larger window


@pytest.fixture(scope="module")
def model():
  """A tiny model with noisy weights, so pixels fall into several groups (at init all pixels
  join one group and a comparison of the segmentation would be trivial)."""
  m = gv.GroupViT(tiny(), rngs=nnx.Rngs(3))
  rng = np.random.RandomState(3)
  for key, var in flat_state.flat_variables(m).items():
    v = np.asarray(var.get_value())
    if v.dtype.kind == "f" and not key.endswith(("/var", "logit_scale")):
      var.set_value(jnp.asarray(v + 0.5 * rng.randn(*v.shape), v.dtype))
  return m


def _inputs(model, b, seed=0):
  rng = np.random.RandomState(seed)
  pixels = rng.randn(b, IMAGE, IMAGE, 3).astype(np.float32)
  window = rng.randn(b, WINDOW, WINDOW, 3).astype(np.float32)
  ids = gv.tokenize(["a cat", "two dogs on grass", "a red car"][:b] * 2, context_length=16)[:b]
  text = rng.randn(5, model.config.proj_dim).astype(np.float32)
  text /= np.linalg.norm(text, axis=-1, keepdims=True)
  return pixels, window, ids, text


def _jitted(model, method):
  """``method(model, *args)`` under jax.jit (eager op-by-op dispatch is slow)."""
  graphdef, state = nnx.split(model)
  fn = jax.jit(lambda st, *args: method(nnx.merge(graphdef, st), *args))
  return lambda *args: fn(state, *args)


def _expected_segment(model, window, text, thr):
  """Labels and scores from dense.window_predict read pixel by pixel in numpy."""
  index, table = map(np.asarray, _jitted(model, dense.window_predict)(window, text, np.float32(thr)))
  scores = np.stack([table[i][index[i]] for i in range(len(window))])  # [b, H, W, C]
  return scores.argmax(-1), scores


def _close(got, want):
  """Equal to 1e-5 of the output's scale (embeddings reach ~40: float32 rounding of a
  differently fused program alone moves them by a few 1e-6 of that)."""
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want).max())))


def _check(model, call, b):
  pixels, window, ids, text = _inputs(model, b, seed=b)
  _close(call("image_encoder", pixels),
         np.asarray(_jitted(model, gv.GroupViT.get_image_features)(pixels)))
  _close(call("text_encoder", ids), np.asarray(_jitted(model, gv.GroupViT.get_text_features)(ids)))
  labels, scores = call("segment", window, text, np.float32(0.3))
  want_labels, want_scores = _expected_segment(model, window, text, 0.3)
  assert labels.shape == (b, WINDOW, WINDOW) and scores.shape == (b, WINDOW, WINDOW, 6)
  _close(scores, want_scores)
  np.testing.assert_array_equal(labels, want_labels)
  # Not a comparison of two constant maps: the scores vary over the window's pixels.
  assert np.ptp(want_scores.reshape(b, -1, 6), axis=1).max() > 1e-4


def test_stablehlo_reloads_and_matches_at_any_batch(model, tmp_path, fast_compiles):
  info = serving_export.write_stablehlo(model, str(tmp_path), image_size=IMAGE,
                                        seg_size=WINDOW)
  assert json.loads((tmp_path / "export_info.json").read_text()) == info
  loaded = serving_export.load_stablehlo(str(tmp_path))
  assert set(loaded) == {"image_encoder", "text_encoder", "segment"}
  for exp in loaded.values():
    assert jax.export.is_symbolic_dim(exp.in_avals[0].shape[0])  # dynamic batch

  def call(name, *args):
    out = loaded[name].call(*args)
    return tuple(map(np.asarray, out)) if isinstance(out, (tuple, list)) else np.asarray(out)

  for b in (1, 3):
    _check(model, call, b)


def test_cli_export_stablehlo_and_refusals(tiny_checkpoint, tmp_path, capsys, fast_compiles):
  out = tmp_path / "exp"
  rc = cli_main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "stablehlo",
                 "--output", str(out), "--segment-size", str(WINDOW)])
  assert rc == 0, capsys.readouterr().err
  info = json.loads((out / "export_info.json").read_text())
  assert info["image_size"] == 32 and info["segment_window"] == WINDOW
  assert sorted(p.name for p in out.iterdir()) == [
      "export_info.json", "image_encoder.stablehlo", "segment.stablehlo", "text_encoder.stablehlo"]
  capsys.readouterr()
  rc = cli_main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "stablehlo",
                 "--output", str(out)])
  err = capsys.readouterr().err
  assert rc == 2 and "not empty" in err and "Traceback" not in err
  rc = cli_main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "stablehlo",
                 "--output", str(tmp_path / "x"), "--segment-size", "4"])
  err = capsys.readouterr().err
  assert rc == 2 and "--segment-size 4" in err


@pytest.mark.slow
def test_savedmodel_reloads_and_matches(model, tmp_path):
  tf = pytest.importorskip("tensorflow")
  serving_export.write_savedmodel(model, str(tmp_path), image_size=IMAGE, seg_size=WINDOW)
  loaded = tf.saved_model.load(str(tmp_path / "savedmodel"))

  def call(name, *args):
    out = getattr(loaded, name)(*[tf.constant(a) for a in args])
    return tuple(np.asarray(o) for o in out) if isinstance(out, (tuple, list)) else np.asarray(out)

  for b in (1, 3):
    _check(model, call, b)
