"""Model behaviour beyond parity: variants, assignment semantics, training mode, numerics, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import groupvit_jax as gv
from groupvit_jax import losses
from groupvit_jax.model_config import tiny
from groupvit_jax.models.assign import AssignAttention, hard_softmax
from groupvit_jax.models.layers import BatchNorm, drop_path

X = np.random.RandomState(0).randn(2, 32, 32, 3).astype(np.float32)
IDS = gv.tokenize(["a cat", "a dog on grass"], context_length=16)


@pytest.mark.parametrize("overrides,stage_shapes", [
    (dict(), [(2, 4, 16), (2, 2, 4)]),  # 2 stages: 16 patches -> 4 -> 2
    (dict(depths=(1, 1), num_heads=(2, 2), num_group_tokens=(8, 0), num_output_groups=(3,)),
     [(2, 3, 16)]),  # 1-stage: 8 group tokens mixed down to 3 segments
    (dict(depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), num_group_tokens=(8, 4, 2, 0),
          num_output_groups=(8, 4, 2)), [(2, 8, 16), (2, 4, 8), (2, 2, 4)]),  # 3 grouping stages
    (dict(hard_assignment=False), [(2, 4, 16), (2, 2, 4)]),
])
def test_variants(overrides, stage_shapes):
  model = gv.GroupViT(tiny(**overrides), rngs=nnx.Rngs(0))
  out = model(pixel_values=X, input_ids=IDS)
  assert [m.shape for m in out.soft_maps] == stage_shapes
  assert out.logits_per_image.shape == (2, 2)
  for soft, hard in zip(out.soft_maps, out.hard_maps):
    np.testing.assert_allclose(np.asarray(soft).sum(axis=1), 1.0, atol=1e-5)  # over groups
    if overrides.get("hard_assignment", True):
      h = np.asarray(hard)
      assert set(np.unique(h)) <= {0.0, 1.0} and (h.sum(axis=1) == 1).all()
      assert (h.argmax(axis=1) == np.asarray(soft).argmax(axis=1)).all()
    else:
      np.testing.assert_allclose(np.asarray(hard), np.asarray(soft), atol=1e-6)


def test_config_validation():
  with pytest.raises(ValueError, match="num_output_groups"):
    tiny(num_output_groups=(4,))
  with pytest.raises(ValueError, match="last stage"):
    tiny(num_group_tokens=(4, 2, 2))


def _numpy_assign(q, k, v, wq, bq, wk, bk, wv, bv, wp, bp, eps):
  """Spec 1.6 in numpy, eval mode: softmax over groups, one-hot, /(count + eps), proj."""
  qq, kk, vv = q @ wq + bq, k @ wk + bk, k @ wv + bv
  raw = qq @ kk.T * q.shape[-1]**-0.5  # [S, L]
  soft = np.exp(raw - raw.max(0)) / np.exp(raw - raw.max(0)).sum(0)
  hard = (soft == soft.max(0, keepdims=True)).astype(np.float64)
  a = hard / (hard.sum(-1, keepdims=True) + eps)
  return (a @ vv) @ wp + bp, soft


def test_assign_attention_matches_numpy_statement():
  attn = AssignAttention(8, dtype=jnp.float32, param_dtype=jnp.float32, rngs=nnx.Rngs(1))
  rng = np.random.RandomState(1)
  q, k = rng.randn(1, 3, 8).astype(np.float32), rng.randn(1, 10, 8).astype(np.float32)
  out, maps = attn(jnp.asarray(q), jnp.asarray(k))
  p = lambda m: (np.asarray(m.kernel.get_value()), np.asarray(m.bias.get_value()))
  want, soft = _numpy_assign(q[0], k[0], None, *p(attn.q_proj), *p(attn.k_proj), *p(attn.v_proj),
                             *p(attn.proj), eps=1.0)
  np.testing.assert_allclose(np.asarray(out[0]), want, atol=1e-5)
  np.testing.assert_allclose(np.asarray(maps["soft"][0]), soft, atol=1e-6)


def test_straight_through_gradient_is_the_soft_gradient():
  logits = jnp.asarray(np.random.RandomState(2).randn(4, 6), jnp.float32)
  w = jnp.asarray(np.random.RandomState(3).randn(4, 6), jnp.float32)
  g_hard = jax.grad(lambda l: jnp.sum(w * hard_softmax(l, axis=0)))(logits)
  g_soft = jax.grad(lambda l: jnp.sum(w * jax.nn.softmax(l, axis=0)))(logits)
  np.testing.assert_allclose(np.asarray(g_hard), np.asarray(g_soft), atol=1e-6)
  value = np.asarray(hard_softmax(logits, axis=0))
  np.testing.assert_allclose(value.sum(0), 1.0, atol=1e-6)
  assert (np.isclose(value, 0, atol=1e-6) | np.isclose(value, 1, atol=1e-6)).all()


def test_training_mode_uses_gumbel_noise_and_needs_rngs():
  model = gv.GroupViT(tiny(), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="gumbel"):
    model.encode_image(X, train=True)
  a = model.encode_image(X, train=True, rngs=nnx.Rngs(gumbel=1, drop_path=1))["hard"][0]
  b = model.encode_image(X, train=True, rngs=nnx.Rngs(gumbel=2, drop_path=2))["hard"][0]
  e1 = model.encode_image(X)["hard"][0]
  e2 = model.encode_image(X)["hard"][0]
  assert not np.array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))


def test_batchnorm_matches_torch_training_and_eval():
  rng = np.random.RandomState(4)
  bn = BatchNorm(5, momentum=0.9, eps=1e-5)
  tbn = torch.nn.BatchNorm1d(5, momentum=0.1, eps=1e-5)
  for _ in range(3):
    x = rng.randn(7, 5).astype(np.float32) * 3 + 1
    y = bn(jnp.asarray(x), train=True)
    ty = tbn.train()(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(np.asarray(y), ty, atol=1e-5)
  np.testing.assert_allclose(np.asarray(bn.mean.get_value()), tbn.running_mean.numpy(), atol=1e-6)
  np.testing.assert_allclose(np.asarray(bn.var.get_value()), tbn.running_var.numpy(), atol=1e-5)
  x = rng.randn(4, 5).astype(np.float32)
  np.testing.assert_allclose(np.asarray(bn(jnp.asarray(x))),
                             tbn.eval()(torch.tensor(x)).detach().numpy(), atol=1e-5)


def test_drop_path_drops_whole_samples_and_rescales():
  x = jnp.ones((4000, 3, 2))
  y = np.asarray(drop_path(x, 0.25, jax.random.key(0)))
  kept = y.reshape(4000, -1)
  assert np.isclose(kept, 0.0).sum() + np.isclose(kept, 1.0 / 0.75).sum() == kept.size
  assert (kept.min(1) == kept.max(1)).all()  # whole samples
  assert abs((kept[:, 0] > 0).mean() - 0.75) < 0.03
  np.testing.assert_array_equal(np.asarray(drop_path(x, 0.25, None)), np.asarray(x))


def test_bfloat16_compute_keeps_float32_params():
  cfg = tiny().replace(dtype="bfloat16")
  model = gv.GroupViT(cfg, rngs=nnx.Rngs(0))
  ref = gv.GroupViT(tiny(), rngs=nnx.Rngs(0))
  dtypes = {v.get_value().dtype for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  assert dtypes == {jnp.dtype(jnp.float32)}
  out, want = model(pixel_values=X, input_ids=IDS), ref(pixel_values=X, input_ids=IDS)
  assert out.image_embeds.dtype == jnp.float32  # embeddings come back in float32
  # Unit vectors of |x| <= 0.58: measured max differences 0.005 (image) and 0.005 (text) for this
  # init, 0.023 for an init where a hard assignment flips (bf16 rounds at 2^-8 relative). 0.02 is
  # 4x this init's; a float32 run (dtype ignored) shows as a difference below 1e-4.
  for got, ref_ in ((out.image_embeds, want.image_embeds), (out.text_embeds, want.text_embeds)):
    diff = float(np.abs(np.asarray(got) - np.asarray(ref_)).max())
    assert 1e-4 < diff < 0.02, diff
  for m in model.encode_image(X)["soft"]:
    assert m.dtype == jnp.float32  # assignment softmax in float32


def _loss_and_grads(cfg):
  model = gv.GroupViT(cfg, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(params, rest):
    m = nnx.merge(graphdef, params, rest, copy=True)  # fresh BatchStats inside the grad trace
    enc = m.encode_image(X, train=True, rngs=nnx.Rngs(gumbel=0, drop_path=0))
    return losses.contrastive_loss(enc["image_x"], m.encode_text(IDS, train=True), m.scale())

  return jax.jit(jax.value_and_grad(loss))(params, rest)


def test_remat_gives_identical_gradients():
  cfg = tiny(drop_path_rate=0.1)
  l1, g1 = _loss_and_grads(cfg)
  l2, g2 = _loss_and_grads(cfg.replace(remat=True))
  np.testing.assert_allclose(float(l1), float(l2), rtol=1e-6)
  # Recomputation fuses differently: equal up to float32 reordering. Judge against the global
  # gradient scale: some leaves (e.g. a token-mixer bias followed by a LayerNorm over channels)
  # have an analytic gradient of 0 and hold only cancellation noise of that scale.
  scale = max(float(np.abs(np.asarray(g)).max()) for g in jax.tree.leaves(g1))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                       atol=1e-4 * scale), g1, g2)
  assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(g1)) > 0


def test_every_parameter_has_logical_axes():
  model = gv.GroupViT(gv.GroupViTConfig(multi_label=3), rngs=nnx.Rngs(0))
  for path, var in nnx.to_flat_state(nnx.state(model)):
    meta = var.get_metadata()
    names = meta.get("out_sharding") or meta.get("sharding")
    ndim = var.get_value().ndim
    if ndim == 0:
      assert not names, path
    else:
      assert names is not None and len(names) == ndim, (path, names)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 3, 32, 32), np.float32), "channels-first"),
    (np.zeros((32, 32, 3), np.float32), "batch axis"),
    (np.zeros((2, 32, 32, 3), np.uint8), "preprocess"),
    (np.zeros((1, 4, 4, 3), np.float32), "patch"),
])
def test_pixel_value_errors(tiny_model, bad, match):
  with pytest.raises((ValueError, TypeError), match=match):
    tiny_model.get_image_features(bad)


@pytest.mark.parametrize("bad,match", [
    (np.full((1, 16), 49408, np.int32), r"\[0, 49408\)"),
    (np.full((1, 16), -1, np.int32), r"\[0, 49408\)"),
    (np.zeros((1, 77), np.int32), "context length"),
    (np.zeros((16,), np.int32), "batch axis"),
    (np.zeros((1, 16), np.float32), "integers"),
])
def test_input_id_errors(tiny_model, bad, match):
  with pytest.raises((ValueError, TypeError), match=match):
    tiny_model.get_text_features(bad)


def test_public_api_shapes_and_keys(tiny_model):
  feats = tiny_model.get_image_features(X)
  assert feats.shape == (2, 16)
  out = tiny_model(pixel_values=X, input_ids=IDS)
  assert out["logits_per_image"].shape == (2, 2)
  np.testing.assert_allclose(np.asarray(out["logits_per_text"]), np.asarray(out.logits_per_image).T)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(out.image_embeds), axis=-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(
      np.asarray(tiny_model.get_text_features(IDS)),
      np.asarray(tiny_model.encode_text(jnp.asarray(IDS))), atol=1e-5)
  with pytest.raises(ValueError, match="pixel_values, input_ids"):
    tiny_model()


def test_logit_scale_is_clamped_at_100():
  model = gv.GroupViT(tiny(), rngs=nnx.Rngs(0))
  model.logit_scale.set_value(jnp.float32(10.0))
  assert float(model.scale()) == 100.0
  g = jax.grad(lambda s: jnp.minimum(jnp.exp(s), 100.0))(jnp.float32(10.0))
  assert float(g) == 0.0


def test_sincos2d_position_embedding_init():
  from groupvit_jax.models.vision import sincos_2d
  cfg = tiny(pos_embed_init="sincos2d")
  model = gv.GroupViT(cfg, rngs=nnx.Rngs(0))
  grid, dim = cfg.vision.grid_size, cfg.vision.embed_dim
  pe = np.asarray(model.img_encoder.pos_embed.get_value())[0]  # [grid*grid, dim]
  np.testing.assert_array_equal(pe, sincos_2d(grid, dim)[0])
  q = dim // 4
  for n in (0, 1, grid + 2, grid * grid - 1):  # element-wise statement (big_vision posemb_sincos_2d)
    y, x = divmod(n, grid)
    for d in range(q):
      w = 1.0 / 10000 ** (d / q)
      np.testing.assert_allclose(pe[n, [d, q + d, 2 * q + d, 3 * q + d]],
                                 [np.sin(y * w), np.cos(y * w), np.sin(x * w), np.cos(x * w)],
                                 atol=1e-6)
  normal = np.asarray(gv.GroupViT(tiny(), rngs=nnx.Rngs(0)).img_encoder.pos_embed.get_value())
  assert abs(normal.std() - 0.02) < 0.005  # the reference's N(0, 0.02) stays the default
  with pytest.raises(ValueError, match="pos_embed_init"):
    tiny(pos_embed_init="learned")


def test_gumbel_off_trains_with_the_plain_argmax_assignment():
  model = gv.GroupViT(tiny(gumbel=False), rngs=nnx.Rngs(0))
  a = model.encode_image(X, train=True, rngs=nnx.Rngs(gumbel=1, drop_path=1))["hard"]
  b = model.encode_image(X, train=True, rngs=nnx.Rngs(gumbel=2, drop_path=2))["hard"]
  e = model.encode_image(X)["hard"]
  for sa, sb, se in zip(a, b, e):  # no noise: training assignment = the eval argmax, every stage
    np.testing.assert_array_equal(np.asarray(sa), np.asarray(se))
    np.testing.assert_array_equal(np.asarray(sb), np.asarray(se))


def test_assign_qk_init_std_sets_only_the_assignment_q_k_kernels():
  std = lambda m: float(np.std(np.asarray(m.kernel.get_value())))
  ref = gv.GroupViT(tiny(), rngs=nnx.Rngs(0)).img_encoder.layers[0].downsample.assign
  big = gv.GroupViT(tiny(assign_qk_init_std=0.1), rngs=nnx.Rngs(0)).img_encoder.layers[0]
  assert abs(std(ref.q_proj) - 0.02) < 0.004 and abs(std(ref.k_proj) - 0.02) < 0.004
  assert abs(std(big.downsample.assign.q_proj) - 0.1) < 0.02
  assert abs(std(big.downsample.assign.k_proj) - 0.1) < 0.02
  assert abs(std(big.downsample.assign.v_proj) - 0.02) < 0.004  # v and out stay at 0.02


def test_group_token_residual_off_leaves_empty_segments_nothing_of_the_image():
  """Spec 1.5 step 5 adds the pre-assignment output p (a summary of the whole image) to every
  segment; with ``group_token_residual=False`` a segment is its own tokens only, so every empty
  segment (4 tokens, 8 groups) is the same vector, whatever its group token saw."""
  from groupvit_jax.models.grouping import GroupingBlock  # pylint: disable=g-import-not-at-top
  x = jax.random.normal(jax.random.key(1), (1, 4, 16))
  g = jax.random.normal(jax.random.key(2), (1, 8, 16))
  outs = {}
  for residual in (True, False):
    stage = tiny(embed_dim=16, num_group_tokens=(8, 2, 0), num_output_groups=(8, 2),
                 group_token_residual=residual).vision.stages()[0]
    block = GroupingBlock(stage, dtype=jnp.float32, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    out, maps = block(x, g)
    empty = np.asarray(maps["hard"][0].sum(-1)) == 0
    assert empty.sum() >= 4
    outs[residual] = np.asarray(out[0])[empty]
  np.testing.assert_allclose(outs[False], np.broadcast_to(outs[False][:1], outs[False].shape),
                             atol=1e-6)
  assert np.abs(outs[True] - outs[True][:1]).max() > 1e-2  # the reference: each carries its p
  enc = gv.GroupViT(tiny(group_token_residual=False), rngs=nnx.Rngs(0)).img_encoder
  assert [l.downsample.cfg.group_token_residual for l in enc.layers if l.downsample] == [False, False]
