"""The optimizer and schedule against a plain statement of spec section 4's formulas."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from groupvit_jax import optim


def optim_config(**kw):
  c = ml_collections.ConfigDict(dict(
      base_lr=1.6e-3, warmup_lr=4e-6, min_lr=4e-5, reference_batch=4096, warmup_steps=10,
      weight_decay=0.05, b1=0.9, b2=0.999, eps=1e-8, clip_norm=5.0))
  c.update(kw)
  return c


def spec_lr(k, *, batch, total, warmup, base=1.6e-3, warm=4e-6, minimum=4e-5):
  """Spec 4: rates x batch/4096; update k uses lr(k-1), update 0 the warm-up start; cosine over
  the absolute t (warm-up not subtracted)."""
  f = batch / 4096
  base, warm, minimum = base * f, warm * f, minimum * f
  t = max(k - 1, 0)
  if t < warmup:
    return warm + t * (base - warm) / warmup
  return minimum + 0.5 * (base - minimum) * (1 + math.cos(math.pi * t / total))


@pytest.mark.parametrize("batch,warmup", [(4096, 10), (1024, 10), (256, 0)])
def test_schedule_matches_spec(batch, warmup):
  total = 100
  _, schedule = optim.make_optimizer(optim_config(warmup_steps=warmup), global_batch=batch,
                                     total_steps=total)
  got = np.array([float(schedule(k)) for k in range(total + 1)])
  want = np.array([spec_lr(k, batch=batch, total=total, warmup=warmup) for k in range(total + 1)])
  np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-12)
  assert got[0] == pytest.approx(want[1])  # updates 0 and 1 both use lr(0)
  if warmup:
    assert got[0] == pytest.approx(4e-6 * batch / 4096)


def test_schedule_after_the_cycle_is_min_lr():
  p = optim.ScheduleParams(1.0, 0.1, 0.01, 2, 10)
  assert float(optim.timm_cosine_lr(10, p)) == pytest.approx(0.01)
  assert float(optim.timm_cosine_lr(25, p)) == pytest.approx(0.01)
  assert float(optim.timm_cosine_lr(2, p)) == pytest.approx(0.01 + 0.495 * (1 + math.cos(0.2 * math.pi)))


def test_decay_mask_on_the_model(tiny_model):
  from flax import nnx
  _, params, _ = nnx.split(tiny_model, nnx.Param, ...)
  mask = optim.decay_mask(params)
  flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(mask)[0]}

  def decays(fragment):
    hits = [v for k, v in flat.items() if fragment in k]
    assert hits, fragment
    return set(hits)

  # decayed: matrices, kernels, embeddings, group tokens and the 0-D logit scale (not 1-D)
  for name in ("['pos_embed']", "['group_token']", "['logit_scale']", "['token_embedding']",
               "['qkv']['kernel']", "['patch_embed']['proj']['kernel']"):
    assert decays(name) == {True}, name
  # not decayed: every bias and every 1-D weight (LayerNorm / BatchNorm scales)
  for name in ("['bias']", "['norm1']['scale']", "['linear_hidden'][1]['scale']"):
    assert decays(name) == {False}, name
  assert all(v == (np.ndim(x) != 1) for (_, v), x in
             zip(jax.tree_util.tree_flatten_with_path(mask)[0], jax.tree.leaves(params)))


def test_adamw_clip_and_schedule_match_numpy_statement():
  """Five updates against torch AdamW + clip_grad_norm_(5.0) + the schedule, written in numpy."""
  rng = np.random.default_rng(0)
  params = {"kernel": rng.normal(size=(3, 4)), "bias": rng.normal(size=(4,)),
            "scale": rng.normal(size=(4,)), "logit_scale": np.array(2.66),
            "embedding": rng.normal(size=(5, 3))}
  decay = {"kernel": True, "bias": False, "scale": False, "logit_scale": True, "embedding": True}
  grads = [{k: rng.normal(size=np.shape(v)) * s for k, v in params.items()}
           for s in (10.0, 0.1, 3.0, 0.5, 20.0)]  # some steps clip, some do not
  total, warmup, batch = 20, 2, 2048
  cfg = optim_config(warmup_steps=warmup, base_lr=0.5, warmup_lr=0.01, min_lr=0.001)
  tx, _ = optim.make_optimizer(cfg, global_batch=batch, total_steps=total)
  p_jax = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  state = tx.init(p_jax)
  p_np = {k: np.array(v, np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in p_np.items()}
  v2 = {k: np.zeros_like(v) for k, v in p_np.items()}
  for k, g in enumerate(grads):
    updates, state = tx.update(jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g), state, p_jax)
    p_jax = optax.apply_updates(p_jax, updates)
    norm = math.sqrt(sum(float(np.sum(x**2)) for x in g.values()))
    coef = min(1.0, 5.0 / (norm + 1e-6))
    lr = spec_lr(k, batch=batch, total=total, warmup=warmup, base=0.5, warm=0.01, minimum=0.001)
    for name in p_np:
      gc = g[name] * coef
      m[name] = 0.9 * m[name] + 0.1 * gc
      v2[name] = 0.999 * v2[name] + 0.001 * gc**2
      if decay[name]:
        p_np[name] = p_np[name] * (1 - lr * 0.05)
      mhat, vhat = m[name] / (1 - 0.9**(k + 1)), v2[name] / (1 - 0.999**(k + 1))
      p_np[name] = p_np[name] - lr * mhat / (np.sqrt(vhat) + 1e-8)
    for name in p_np:
      np.testing.assert_allclose(np.asarray(p_jax[name]), p_np[name], rtol=2e-5, atol=2e-6,
                                 err_msg=f"{name} after update {k}")


def test_rejects_bad_total_steps():
  with pytest.raises(ValueError, match="total_steps"):
    optim.make_optimizer(optim_config(), global_batch=8, total_steps=0)
