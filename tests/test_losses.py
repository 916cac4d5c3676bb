"""Losses against a plain numpy statement of spec section 3."""

import jax
import jax.numpy as jnp
import numpy as np

from groupvit_jax import losses


def _np_normalize(x):
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _np_log_softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _np_contrastive(img, txt, s):
  zi, zt = _np_normalize(img), _np_normalize(txt)
  li, lt = s * zi @ zt.T, s * zt @ zi.T
  b = len(img)
  ce_i = -np.mean([_np_log_softmax(li)[r, r] for r in range(b)])
  ce_t = -np.mean([_np_log_softmax(lt)[r, r] for r in range(b)])
  return 0.5 * (ce_i + ce_t)


def _np_multi_label(img, prompts, s):
  """Spec 3.2 written out with explicit target matrices (rows b-major, k-minor)."""
  b, k, d = prompts.shape
  zi = _np_normalize(img)
  zt = _np_normalize(prompts).reshape(b * k, d)
  logits_img = s * zi @ zt.T  # [B, B*K]
  logits_txt = s * zt @ zi.T  # [B*K, B]
  t_img = np.zeros((b, b * k))
  t_txt = np.zeros((b * k, b))
  for i in range(b):
    for j in range(k):
      t_img[i, i * k + j] = 1.0 / k
      t_txt[i * k + j, i] = 1.0
  soft_ce = lambda l, t: np.mean(np.sum(-t * _np_log_softmax(l), axis=-1))
  return 0.5 * (soft_ce(logits_img, t_img) + soft_ce(logits_txt, t_txt))


def test_contrastive_matches_numpy():
  rng = np.random.RandomState(0)
  img, txt = rng.randn(6, 16), rng.randn(6, 16)
  got = losses.contrastive_loss(jnp.asarray(img), jnp.asarray(txt), jnp.float32(14.3))
  np.testing.assert_allclose(float(got), _np_contrastive(img, txt, 14.3), rtol=1e-5)


def test_multi_label_matches_numpy():
  rng = np.random.RandomState(1)
  img, prompts = rng.randn(5, 8), rng.randn(5, 3, 8)
  got = losses.multi_label_contrastive_loss(jnp.asarray(img), jnp.asarray(prompts), jnp.float32(10.0))
  np.testing.assert_allclose(float(got), _np_multi_label(img, prompts, 10.0), rtol=1e-5)


def test_identical_prompts_of_other_samples_stay_negatives():
  """All prompts equal: every prompt column is identical, so the img->txt soft CE is log(B*K)
  minus nothing it could exploit; the loss stays above the K=1 optimum."""
  rng = np.random.RandomState(2)
  img = rng.randn(4, 8)
  prompts = np.repeat(rng.randn(1, 1, 8), 4, axis=0).repeat(3, axis=1)
  got = float(losses.multi_label_contrastive_loss(jnp.asarray(img), jnp.asarray(prompts), 10.0))
  np.testing.assert_allclose(got, _np_multi_label(img, prompts, 10.0), rtol=1e-5)
  assert got > 0.5 * np.log(4 * 3) - 1e-4


def test_perfect_alignment_gives_low_loss_and_gradients_flow():
  x = jnp.eye(4, 8)
  assert float(losses.contrastive_loss(x, x, jnp.float32(100.0))) < 1e-3
  g = jax.grad(lambda a: losses.contrastive_loss(a, x, 10.0))(x + 0.1)
  assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0
