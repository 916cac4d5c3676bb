"""The training step: a pure function of ``(state, batch)`` compiled once with explicit shardings.

Losses run on the global (batch-sharded) arrays, so the similarity matrices span the whole global
batch (the reference's all-gather + DDP average) and the projectors' BatchNorm statistics are
global-batch statistics (the reference's SyncBN); GSPMD inserts the collectives.

A step whose loss or gradient is not finite leaves the state unchanged (``finite`` = 0 in the
metrics); the loop skips up to ``max_consecutive_nonfinite_steps`` such steps in a row and then
stops with a message, so no checkpoint ever holds a non-finite state.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from groupvit_jax import losses, sharding as shd
from groupvit_jax.train import chunked, state as state_lib

Batch = dict[str, jax.Array]


def loss_fn(params, batch_stats, graphdef, batch: Batch, rng: jax.Array, *, multi_label: int,
            multi_label_weight: float):
  """Total loss of one global batch.

  Args:
    params / batch_stats: the model's variables.
    batch: ``image`` [B, H, W, 3] float32 normalised; ``text`` [B, 1+K, L] int32 (caption, then
      K prompts).
    rng: key for the Gumbel noise and drop-path of this step.
  Returns:
    ``(loss, (metrics, new_batch_stats))``.
  """
  # Rebuild the statistics' Variables at this trace level so BatchNorm may update them.
  batch_stats = jax.tree.map(lambda x: x, batch_stats)
  model = nnx.merge(graphdef, params, batch_stats)
  k_gumbel, k_drop = jax.random.split(rng)
  rngs = nnx.Rngs(gumbel=k_gumbel, drop_path=k_drop)
  image_x = model.encode_image(batch["image"], train=True, rngs=rngs)["image_x"]  # [B, D]
  # Captions and prompts share one text-projector batch, as in the reference (spec 3.2).
  text_x = model.encode_text(batch["text"], train=True)  # [B, 1+K, D]
  loss, metrics = contrastive_losses(model, image_x, text_x, multi_label=multi_label,
                                     multi_label_weight=multi_label_weight)
  new_stats = nnx.state(model, nnx.BatchStat)
  return loss, (metrics, new_stats)


def contrastive_losses(model, image_x: jax.Array, text_x: jax.Array, *, multi_label: int,
                       multi_label_weight: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Image-text contrastive loss (+ weighted multi-label loss) over the global batch.

  Args:
    image_x: [B, D] projected images; text_x: [B, 1+K, D] projected caption then K prompts.
  Returns:
    ``(loss, metrics)``.
  """
  image_x = shd.constrain(image_x, (shd.BATCH, None))
  text_x = shd.constrain(text_x, (shd.BATCH, None, None))
  loss_itc = losses.contrastive_loss(image_x, text_x[:, 0], model.scale())
  metrics = {"loss_itc": loss_itc, "logit_scale": model.scale()}
  loss = loss_itc
  if multi_label:
    loss_ml = multi_label_weight * losses.multi_label_contrastive_loss(
        image_x, text_x[:, 1:1 + multi_label], model.multi_label_scale())
    metrics.update(loss_ml=loss_ml, multi_label_logit_scale=model.multi_label_scale())
    loss = loss + loss_ml
  return loss, metrics


def train_step(state: state_lib.TrainState, batch: Batch, *, graphdef, tx: optax.GradientTransformation,
               schedule: Callable, multi_label: int, multi_label_weight: float,
               microbatch_size: int = 0):
  """One update. Pure: the step's randomness is ``fold_in(state.rng, state.step)``.

  ``microbatch_size`` > 0 computes the same gradient in chunks of that many samples
  (``chunked.value_and_grad``: one chunk's activations in memory, one extra forward).

  Returns:
    ``(new_state, metrics)``: metrics are float32 scalars (``loss``, ``loss_itc``, ``loss_ml``,
    ``logit_scale``, ``lr``, ``grad_norm``, ``param_norm``, ``finite``).
  """
  step = state["step"]
  rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), step)
  if microbatch_size:
    grad_fn = functools.partial(chunked.value_and_grad, microbatch_size=microbatch_size)
  else:
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (loss, (metrics, new_stats)), grads = grad_fn(
      state["params"], state["batch_stats"], graphdef, batch, rng, multi_label=multi_label,
      multi_label_weight=multi_label_weight)
  updates, new_opt = tx.update(grads, state["opt_state"], state["params"])
  new_params = optax.apply_updates(state["params"], updates)
  grad_norm = optax.global_norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  new_state = {"step": step + 1, "params": new_params, "batch_stats": new_stats,
               "opt_state": new_opt, "rng": state["rng"]}
  # Keep the last good state when anything is non-finite (the loop counts the skip or stops).
  keep_old = {k: v for k, v in state.items() if k != "step"}
  keep_old["step"] = step + 1
  new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, keep_old)
  metrics = {k: v.astype(jnp.float32) for k, v in metrics.items()}
  metrics.update(loss=loss.astype(jnp.float32), lr=jnp.asarray(schedule(step), jnp.float32),
                 grad_norm=grad_norm.astype(jnp.float32),
                 param_norm=optax.global_norm(state["params"]).astype(jnp.float32),
                 finite=finite.astype(jnp.float32))
  return new_state, metrics


def make_train_step(*, graphdef, tx, schedule, shardings, batch_shardings: dict[str, Any],
                    mesh, rules, multi_label: int, multi_label_weight: float,
                    microbatch_size: int = 0, wrap: Callable | None = None) -> Callable:
  """``jax.jit(train_step)`` with explicit in/out shardings and the state donated.

  ``microbatch_size`` (samples per chunk over all devices, 0 = off) must divide the global batch
  and be a multiple of the devices on the batch mesh axes; checked when the step is traced.

  Logical-axis rules are active while tracing, so ``sharding.constrain`` inside the model pins
  activations to the batch axes. ``wrap`` decorates the pure step before ``jit`` (tests use
  ``chex.assert_max_traces``). The returned callable has ``.lower(state, batch)`` for AOT.
  """
  batch_devices = chunked.batch_devices(mesh, rules)

  def fn(state, batch):
    chunked.check_microbatch(batch["image"].shape[0], microbatch_size, batch_devices)
    return train_step(state, batch, graphdef=graphdef, tx=tx, schedule=schedule,
                      multi_label=multi_label, multi_label_weight=multi_label_weight,
                      microbatch_size=microbatch_size)

  if wrap is not None:
    fn = wrap(fn)
  repl = state_lib.replicated(mesh)
  jitted = jax.jit(fn, in_shardings=(shardings, batch_shardings), out_shardings=(shardings, repl),
                   donate_argnums=(0,))

  def run(state, batch):
    with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
      return jitted(state, batch)

  def lower(state, batch):
    with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
      return jitted.lower(state, batch)

  run.lower = lower
  run.jitted = jitted
  return run
