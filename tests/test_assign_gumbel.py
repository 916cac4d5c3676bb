"""Training-mode assignment against the reference's Gumbel straight-through (spec 1.6).

The reference (official ``gumbel_softmax`` / transformers' ``gumbel_softmax``) adds standard
Gumbel noise to the logits, divides by tau, takes the softmax over the group axis and a
straight-through one-hot of its argmax. Checked two ways, neither through the package's pieces:
- the distribution of hard assignments: by the Gumbel-max theorem argmax(l + g) is distributed as
  softmax(l); reversed noise (l - g) or noise on the wrong axis is not (with >= 3 groups);
- the gradient with the package's noise draw equals torch's straight-through on the same noise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from groupvit_jax.models.assign import AssignAttention, gumbel_softmax

# 4 groups: with 2 the difference of two Gumbels is symmetric and a reversed sign would not show.
LOGITS = np.array([1.5, 0.5, -0.5, 0.0], np.float32)
N = 20000  # samples; the std of a frequency is <= sqrt(0.25 / N) = 0.0035


def _softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def _frequencies(hard_over_groups: np.ndarray) -> np.ndarray:
  """[G, N] one-hot columns -> [G] fraction of columns assigned to each group."""
  np.testing.assert_allclose(hard_over_groups.sum(0), 1.0, atol=1e-6)
  return np.bincount(hard_over_groups.argmax(0), minlength=hard_over_groups.shape[0]) / \
      hard_over_groups.shape[1]


def test_hard_assignments_follow_the_softmax_distribution():
  logits = jnp.asarray(np.repeat(LOGITS[:, None], N, axis=1))  # [G, N], groups on axis 0
  hard = np.asarray(gumbel_softmax(jax.random.key(0), logits, axis=0, tau=1.0, hard=True))
  want = _softmax(LOGITS)
  # 0.015 = 4 standard deviations; a reversed noise sign moves group 0 by 0.075.
  np.testing.assert_allclose(_frequencies(hard), want, atol=0.015)
  # The transformers reference, sampled with torch's own noise, gives the same distribution.
  from transformers.models.groupvit.modeling_groupvit import gumbel_softmax as hf_gumbel
  torch.manual_seed(0)
  ref = hf_gumbel(torch.tensor(np.asarray(logits)), tau=1.0, hard=True, dim=0).numpy()
  np.testing.assert_allclose(_frequencies(ref), want, atol=0.015)
  # tau does not change the argmax distribution, only the soft values.
  hard_t = np.asarray(gumbel_softmax(jax.random.key(1), logits, axis=0, tau=0.3, hard=True))
  np.testing.assert_allclose(_frequencies(hard_t), want, atol=0.015)


def _torch_straight_through(logits, gumbels, w, tau, dim):
  """The reference's hard gumbel_softmax on given noise; returns (value, d sum(w*y)/d logits)."""
  l = torch.tensor(logits, requires_grad=True)
  y_soft = torch.softmax((l + torch.tensor(gumbels)) / tau, dim=dim)
  index = y_soft.max(dim, keepdim=True)[1]
  y_hard = torch.zeros_like(y_soft).scatter_(dim, index, 1.0)
  y = y_hard - y_soft.detach() + y_soft
  (y * torch.tensor(w)).sum().backward()
  return y.detach().numpy(), l.grad.numpy()


def test_straight_through_value_and_gradient_equal_torch_on_the_same_noise():
  rng = np.random.RandomState(0)
  logits = rng.randn(2, 5, 7).astype(np.float32)  # [B, S, L]: groups on axis -2
  w = rng.randn(2, 5, 7).astype(np.float32)
  key = jax.random.key(3)
  gumbels = np.asarray(jax.random.gumbel(key, logits.shape, jnp.float32))  # the noise drawn
  for tau in (1.0, 0.5):
    value = np.asarray(gumbel_softmax(key, jnp.asarray(logits), axis=-2, tau=tau, hard=True))
    grad = np.asarray(jax.grad(
        lambda l: jnp.sum(w * gumbel_softmax(key, l, axis=-2, tau=tau, hard=True)))(
            jnp.asarray(logits)))
    want_value, want_grad = _torch_straight_through(logits, gumbels, w, tau, dim=-2)
    np.testing.assert_allclose(value, want_value, atol=1e-6)
    np.testing.assert_allclose(grad, want_grad, atol=1e-5)
    assert np.abs(want_grad).max() > 1e-2  # a real gradient, not zeros on both sides


def test_assign_attention_training_mode_samples_over_groups():
  """The module's train-mode hard map: one-hot over groups (axis -2) for every image token, and
  its distribution follows the noiseless soft map (Gumbel-max) over many draws."""
  attn = AssignAttention(8, qk_init_std=0.5, dtype=jnp.float32, param_dtype=jnp.float32,
                         rngs=nnx.Rngs(1))  # large q/k weights: soft maps far from uniform
  rng = np.random.RandomState(1)
  q = jnp.asarray(rng.randn(1, 4, 8).astype(np.float32) * 3)
  k = jnp.asarray(rng.randn(1, 3, 8).astype(np.float32) * 3)

  @jax.jit
  def draw(seed):
    _, maps = attn(q, k, train=True, rngs=nnx.Rngs(gumbel=jax.random.key(seed)))
    return maps["hard"][0], maps["soft"][0]

  hard, soft = jax.vmap(draw)(jnp.arange(3000))  # [R, S, L]
  hard, soft = np.asarray(hard), np.asarray(soft[0])
  np.testing.assert_allclose(hard.sum(1), 1.0, atol=1e-6)  # one group per token
  freq = hard.mean(0)  # [S, L]
  # 0.04 ~ 4.5 std at 3000 draws; the per-token soft maps differ from uniform by far more.
  np.testing.assert_allclose(freq, soft, atol=0.04)
  assert np.abs(soft - 0.25).max() > 0.1
