"""The reference optimizer (spec section 4): AdamW with a weight-decay mask, timm's per-update
cosine schedule with linear warm-up, rates scaled by batch/4096, and torch's global-norm clipping.

Reference behaviour reproduced here:
- ``torch.optim.AdamW(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)``; a parameter is *not*
  decayed only when it is 1-D or its name ends in ``bias`` (so the 0-D logit scales are decayed).
- timm 0.4.12 ``CosineLRScheduler(t_initial=T, warmup_t=Tw, cycle_limit=1, warmup_prefix=False,
  t_in_epochs=False)`` stepped after every update: update ``k`` runs with ``lr(k-1)`` (update 0
  with the warm-up start ``lr(0)``); ``t`` counts from the start of training.
- base, warm-up and minimum rates are each multiplied by ``global_batch / 4096``.
- ``torch.nn.utils.clip_grad_norm_(max_norm=5.0)``: scale by ``max_norm / (norm + 1e-6)`` when
  that is below 1.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

REFERENCE_BATCH = 4096  # the batch the reference's rates are given for (spec section 4)


class ScheduleParams(NamedTuple):
  """Absolute (already batch-scaled) rates and step counts of the schedule."""
  base_lr: float
  warmup_lr: float
  min_lr: float
  warmup_steps: int
  total_steps: int


def schedule_params(optim_config, *, global_batch: int, total_steps: int) -> ScheduleParams:
  """Scales ``config.optim``'s rates by ``global_batch / reference_batch`` (spec 4)."""
  factor = global_batch / optim_config.reference_batch
  return ScheduleParams(
      base_lr=optim_config.base_lr * factor, warmup_lr=optim_config.warmup_lr * factor,
      min_lr=optim_config.min_lr * factor, warmup_steps=int(optim_config.warmup_steps),
      total_steps=int(total_steps))


def timm_cosine_lr(t, p: ScheduleParams):
  """timm's ``CosineLRScheduler._get_lr(t)`` for one cycle, traceable; ``t``: update count."""
  t = jnp.asarray(t, jnp.float32)
  warm = p.warmup_lr + t * (p.base_lr - p.warmup_lr) / max(p.warmup_steps, 1)
  cosine = p.min_lr + 0.5 * (p.base_lr - p.min_lr) * (1.0 + jnp.cos(jnp.pi * t / p.total_steps))
  after = jnp.where(t >= p.total_steps, p.min_lr, cosine)  # cycle_limit=1: min_lr after the cycle
  if p.warmup_steps <= 0:
    return after
  return jnp.where(t < p.warmup_steps, warm, after)


def make_schedule(p: ScheduleParams) -> Callable[[Any], jax.Array]:
  """``count`` (updates applied so far) -> the rate the next update uses: ``lr(max(count-1, 0))``."""

  def schedule(count):
    return timm_cosine_lr(jnp.maximum(jnp.asarray(count, jnp.int32) - 1, 0), p)

  return schedule


def _path_names(path) -> list[str]:
  names = []
  for k in path:
    name = getattr(k, "key", getattr(k, "name", getattr(k, "idx", None)))
    names.append(str(name))
  return names


def decay_mask(params) -> Any:
  """True where weight decay applies: ``ndim != 1`` and the parameter is not a bias (spec 4)."""

  def decays(path, x):
    names = [n for n in _path_names(path) if n not in ("value", "raw_value")]
    return bool(jnp.ndim(x) != 1 and not (names and names[-1] == "bias"))

  return jax.tree_util.tree_map_with_path(decays, params)


class ClipState(NamedTuple):
  pass


def clip_by_global_norm_torch(max_norm: float) -> optax.GradientTransformation:
  """``torch.nn.utils.clip_grad_norm_``: ``g * min(1, max_norm / (||g|| + 1e-6))``."""

  def init(params):
    del params
    return ClipState()

  def update(updates, state, params=None):
    del params
    norm = optax.global_norm(updates)
    coef = jnp.minimum(1.0, max_norm / (norm + 1e-6))
    return jax.tree.map(lambda g: (g * coef).astype(g.dtype), updates), state

  return optax.GradientTransformation(init, update)


def make_optimizer(optim_config, *, global_batch: int, total_steps: int
                   ) -> tuple[optax.GradientTransformation, Callable[[Any], jax.Array]]:
  """The training optimizer and its schedule (``schedule(step)`` = rate of update ``step``).

  Args:
    optim_config: ``config.optim`` (base_lr, warmup_lr, min_lr, reference_batch, warmup_steps,
      weight_decay, b1, b2, eps, clip_norm).
    global_batch: images per update over all hosts.
    total_steps: updates in the run (the cosine's period).
  """
  if total_steps <= 0:
    raise ValueError(f"total_steps must be > 0, got {total_steps}")
  params = schedule_params(optim_config, global_batch=global_batch, total_steps=total_steps)
  schedule = make_schedule(params)
  chain = []
  if optim_config.clip_norm and optim_config.clip_norm > 0:
    chain.append(clip_by_global_norm_torch(float(optim_config.clip_norm)))
  chain.append(optax.adamw(schedule, b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps,
                           weight_decay=optim_config.weight_decay, mask=decay_mask))
  return optax.chain(*chain), schedule


def describe(p: ScheduleParams) -> str:
  return (f"lr: base {p.base_lr:.3g}, warm-up {p.warmup_lr:.3g} over {p.warmup_steps} updates, "
          f"min {p.min_lr:.3g}, cosine over {p.total_steps} updates (t from 0, timm)")


__all__ = ["REFERENCE_BATCH", "ScheduleParams", "clip_by_global_norm_torch", "decay_mask",
           "describe", "make_optimizer", "make_schedule", "schedule_params", "timm_cosine_lr"]
