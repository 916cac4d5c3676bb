"""``microbatch_size``: the chunked (GradCache-style) step gives the unchunked step's loss, gradient
and BatchNorm update, on one device and on 8, with Gumbel noise and drop path, over 10 steps; a
chunk size that does not fit is refused naming the key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from groupvit_jax import optim
from groupvit_jax.model_config import tiny
from groupvit_jax.train import chunked, config_lib, state as state_lib, step as step_lib
from input_pipeline import pipeline, synthetic
from train_testlib import fast_compile, load_config_file, tiny_config  # noqa: F401  (fixture)

B, K = 16, 3
MESHES = {"1 device": ((("data", 1),), 1), "8 devices": ((("data", 2), ("fsdp", 4)), 8)}


def build(cfg, mesh_name, batch=B):
  axes, n = MESHES[mesh_name]
  config = tiny_config(**{"input.batch_size": batch})
  tx, schedule = optim.make_optimizer(config.optim, global_batch=batch, total_steps=20)
  mesh = state_lib.make_mesh(axes, devices=jax.devices()[:n])
  rules = state_lib.rules_from_config(config.sharding_rules)
  graphdef, state, shardings = state_lib.create_train_state(cfg, tx, mesh, rules, seed=0)
  batch_sh = pipeline.batch_shardings(mesh, rules, config.input)
  return dict(cfg=cfg, graphdef=graphdef, state=state, shardings=shardings, batch_sh=batch_sh,
              mesh=mesh, rules=rules, tx=tx, schedule=schedule)


def make_step(setup, microbatch_size):
  return step_lib.make_train_step(
      graphdef=setup["graphdef"], tx=setup["tx"], schedule=setup["schedule"],
      shardings=setup["shardings"], batch_shardings=setup["batch_sh"], mesh=setup["mesh"],
      rules=setup["rules"], multi_label=K, multi_label_weight=1.0, microbatch_size=microbatch_size)


def data(s, setup, batch=B):
  b = synthetic.synthetic_batch(seed=0, step=s, global_batch=batch, image_size=32,
                                num_texts=1 + K, context_length=16)
  return {key: jax.device_put(v, setup["batch_sh"][key]) for key, v in b.items()}


def host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def value_and_grad(setup, batch, rng, microbatch_size):
  """``((loss, (metrics, stats)), grads)`` on the setup's mesh, chunked or not."""
  kw = dict(multi_label=K, multi_label_weight=1.0)
  if microbatch_size:
    fn = lambda p, s, b: chunked.value_and_grad(p, s, setup["graphdef"], b, rng,  # noqa: E731
                                                microbatch_size=microbatch_size, **kw)
  else:
    fn = lambda p, s, b: jax.value_and_grad(step_lib.loss_fn, has_aux=True)(  # noqa: E731
        p, s, setup["graphdef"], b, rng, **kw)
  state = setup["state"]
  with jax.set_mesh(setup["mesh"]), nnx.logical_axis_rules(setup["rules"]):
    return host(jax.jit(fn)(state["params"], state["batch_stats"], batch))


def assert_grads_close(got, want, rtol):
  """Every leaf within ``rtol`` of its largest entry, or of 1e-2 of the tree's largest entry for
  leaves below that (structurally zero ones, e.g. the final LayerNorm bias that the projector's
  BatchNorm cancels, hold only float32 noise)."""
  floor = 1e-2 * max(np.abs(w).max() for w in jax.tree.leaves(want))
  for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, w, rtol=0, atol=rtol * max(np.abs(w).max(), floor),
                               err_msg=jax.tree_util.keystr(path))


def reference_value_and_grad(setup, batch, rng, n):
  """Plain autodiff of the whole-batch loss with the chunked step's randomness: chunk c (samples
  c, c+n, ...) is encoded with ``fold_in(rng, c)``; then projectors and losses over the batch."""
  graphdef, kw = setup["graphdef"], dict(multi_label=K, multi_label_weight=1.0)
  image, text = np.asarray(batch["image"]), np.asarray(batch["text"])

  def loss(params, stats):
    model = nnx.merge(graphdef, params, jax.tree.map(lambda x: x, stats))
    pooled, feats, order = [], [], []
    for c in range(n):
      idx = np.arange(c, B, n)
      k_gumbel, k_drop = jax.random.split(jax.random.fold_in(rng, c))
      rngs = nnx.Rngs(gumbel=k_gumbel, drop_path=k_drop)
      pooled.append(model.img_encoder(image[idx], train=True, rngs=rngs)["pooled"])
      feats.append(model.text_encoder(text[idx].reshape(-1, text.shape[-1])))
      order.append(idx)
    inverse = np.argsort(np.concatenate(order))
    pooled = jnp.concatenate(pooled)[inverse]
    feats = jnp.concatenate(feats).reshape(B, 1 + K, -1)[inverse]
    image_x = model.img_projector(pooled, train=True)
    text_x = model.text_projector(feats.reshape(B * (1 + K), -1), train=True).reshape(B, 1 + K, -1)
    value, metrics = step_lib.contrastive_losses(model, image_x, text_x, **kw)
    return value, (metrics, nnx.state(model, nnx.BatchStat))

  state = setup["state"]
  return host(jax.jit(jax.value_and_grad(loss, has_aux=True))(state["params"],
                                                              state["batch_stats"]))


@pytest.mark.slow
def test_same_noise_in_both_passes_gives_the_exact_gradient(fast_compile):  # noqa: F811
  """Gumbel noise and drop path on: the chunked gradient is plain autodiff's with the same noise
  per chunk; a different key per chunk changes it (the noise matters, so the check can fail)."""
  setup = build(tiny(drop_path_rate=0.2).replace(multi_label=K), "1 device")
  assert setup["cfg"].vision.gumbel
  batch, rng = data(0, setup), jax.random.key(3)
  (loss, (metrics, stats)), grads = value_and_grad(setup, batch, rng, microbatch_size=4)
  (ref_loss, (ref_metrics, ref_stats)), ref_grads = reference_value_and_grad(setup, batch, rng, 4)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
  for key in ("loss_itc", "loss_ml"):
    np.testing.assert_allclose(metrics[key], ref_metrics[key], rtol=1e-6)
  assert_grads_close(grads, ref_grads, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(stats), jax.tree.leaves(ref_stats)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  (other, _), other_grads = value_and_grad(setup, batch, jax.random.key(4), microbatch_size=4)
  assert abs(float(other) - float(loss)) > 1e-3
  vision = lambda g: np.concatenate([x.ravel() for x in jax.tree.leaves(g["img_encoder"])])  # noqa: E731
  assert np.abs(vision(other_grads) - vision(grads)).max() > 1e-3 * np.abs(vision(grads)).max()


def flat(tree):
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def assert_same_gradient(got, want, rtol):
  """The whole gradient within ``rtol`` (2-norm), and so is every leaf that carries at least 1% of
  the largest leaf's norm (the rest are cancellations: float32 noise around zero)."""
  g, w = flat(got), flat(want)
  assert np.linalg.norm(g - w) <= rtol * np.linalg.norm(w), np.linalg.norm(g - w) / np.linalg.norm(w)
  big = max(np.linalg.norm(x) for x in jax.tree.leaves(want))
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
    if np.linalg.norm(b) >= 1e-2 * big:
      assert np.linalg.norm(a - b) <= rtol * np.linalg.norm(b), jax.tree_util.keystr(path)


@pytest.mark.slow
@pytest.mark.parametrize("mesh_name,microbatch", [("1 device", 4), ("8 devices", 8)])
def test_chunked_step_equals_the_unchunked_step(mesh_name, microbatch, fast_compile):  # noqa: F811
  """K=3, BatchNorm projectors, no noise: loss, gradient, BatchNorm statistics and the update
  equal the unchunked step's.

  Tolerances: the chunked forward runs the encoders at batch ``microbatch`` instead of B, and
  XLA:CPU rounds float32 differently per batch size (features ~1e-6 apart), which the loss
  amplifies in the gradient: measured 4.9e-5 (2-norm) on one device and 6.0e-5 on 8; with
  XLA's YNNPACK library fusions off (``--xla_cpu_experimental_ynn_fusion_type=invalid``), whose
  kernels block the batch differently per size, one device gives 1.0e-5. With one chunk (same
  batch size) the two are bit-equal,
  and ``test_same_noise_in_both_passes_gives_the_exact_gradient`` checks the chunked pass per
  leaf at 1e-5 against autodiff of the same per-chunk forward."""
  setup = build(tiny(gumbel=False).replace(multi_label=K), mesh_name)
  batch, rng = data(0, setup), jax.random.key(3)
  (loss, (metrics, stats)), grads = value_and_grad(setup, batch, rng, microbatch)
  (ref_loss, (ref_metrics, ref_stats)), ref_grads = value_and_grad(setup, batch, rng, 0)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  for key in ("loss_itc", "loss_ml", "logit_scale", "multi_label_logit_scale"):
    np.testing.assert_allclose(metrics[key], ref_metrics[key], rtol=1e-5)
  for got, want in zip(jax.tree.leaves(stats), jax.tree.leaves(ref_stats)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)  # global-batch BatchNorm
  assert_same_gradient(grads, ref_grads, rtol=2e-4)
  (_, _), one_chunk = value_and_grad(setup, batch, rng, B)
  # One chunk: bit-equal arithmetic on one device; on 8, GSPMD partitions the reductions of the
  # two programs differently (measured 2e-5).
  assert_same_gradient(one_chunk, ref_grads, rtol=1e-6 if mesh_name == "1 device" else 1e-4)

  # The jitted, sharded, donating train step with the key set: same metrics and update.
  states = {m: jax.tree.map(jnp.copy, setup["state"]) for m in (0, microbatch)}
  out = {m: host(make_step(setup, m)(states[m], batch)) for m in states}
  (s0, m0), (s1, m1) = out[0], out[microbatch]
  assert m1["finite"] == 1.0
  for key in ("loss", "grad_norm", "param_norm", "lr"):
    np.testing.assert_allclose(m1[key], m0[key], rtol=1e-4)
  for got, want in zip(jax.tree.leaves(s1["batch_stats"]), jax.tree.leaves(s0["batch_stats"])):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  before = flat(host(setup["state"]["params"]))
  step_size = np.abs(flat(s0["params"]) - before).max()
  # Adam's first step is about lr * sign(gradient): compare where the gradient is not float32
  # noise around zero (there the sign is a coin flip), to 1% of a step plus the rounding of
  # parameter + update.
  g = np.abs(flat(ref_grads))
  real = g > 1e-3 * g.max()
  assert real.sum() > 1000
  diff = np.abs(flat(s1["params"]) - flat(s0["params"]))[real]
  assert np.all(diff <= 1e-2 * step_size + 2 * np.spacing(np.abs(before[real]))), diff.max()


@pytest.mark.slow
def test_ten_steps_give_the_same_loss_curve(fast_compile):  # noqa: F811
  """8 devices (data 2 x fsdp 4), 10 updates from the same state and batches."""
  setup = build(tiny(gumbel=False).replace(multi_label=K), "8 devices")
  curves = {}
  for m in (0, 8):
    state, step, losses = jax.tree.map(jnp.copy, setup["state"]), make_step(setup, m), []
    for s in range(10):
      state, metrics = step(state, data(s, setup))
      losses.append(float(metrics["loss"]))
    curves[m] = np.array(losses)
  assert curves[0][-1] < curves[0][0] - 0.05  # it trains, so the curve is a real check
  np.testing.assert_allclose(curves[8], curves[0], rtol=1e-4)


def test_a_chunk_size_that_does_not_fit_is_refused(fast_compile):  # noqa: F811
  setup = build(tiny(gumbel=False).replace(multi_label=K), "8 devices")
  batch = data(0, setup)
  with pytest.raises(ValueError, match=r"microbatch_size=5 must divide the global batch "
                                       r"input.batch_size=16 \(e.g. 4\)"):
    make_step(setup, 5)(setup["state"], batch)
  with pytest.raises(ValueError, match=r"microbatch_size=4 must be a multiple of the 8 devices"):
    make_step(setup, 4)(setup["state"], batch)
  with pytest.raises(ValueError, match=r"microbatch_size must be >= 0"):
    chunked.check_microbatch(16, -1)
  config = tiny_config(**{"input.batch_size": 16, "microbatch_size": 6})
  with pytest.raises(ValueError, match=r"microbatch_size=6 must divide the global batch"):
    config_lib.validate_config(config)
  config.microbatch_size = 8
  config_lib.validate_config(config)


def test_the_small_compute_recipe_config():
  yfcc = load_config_file("groupvit_gcc_yfcc")
  assert yfcc.get_config().microbatch_size == 0  # off by default
  config = yfcc.get_config("microbatch=256")
  assert (config.microbatch_size, config.input.batch_size) == (256, 4096)
  assert config.model.dtype == "bfloat16" and not config.model.remat
  config.input.train_shards = "/data/{00000..00009}.tar"
  config_lib.validate_config(config)
  local = yfcc.get_config("runlocal,microbatch=256")
  assert (local.microbatch_size, local.input.batch_size) == (4, 8)
  config_lib.validate_config(local)
