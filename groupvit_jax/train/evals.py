"""Periodic evaluations during training (``config.evals.<name>``).

Each entry has a ``type`` (a key of ``EVAL_TYPES``), ``every_steps`` (0 turns it off: the one
switch) and type-specific keys. An
evaluator class is built once with ``(eval_config, context)`` and called with an ``EvalContext``
at its steps; it returns ``EvalResult(scalars, images)``, written to the metric writer as
``<name>/<key>``. Evaluations run on every process with identical inputs (the model's arrays are
global), and only process 0 writes.

To add one (e.g. zero-shot segmentation on the VOC sample): implement the class, add
``'type': 'module:Class'`` to ``EVAL_TYPES`` and a config entry with its keys.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
from typing import Any, Protocol

import numpy as np

# type -> "module:Class" (imported lazily: configs import this module).
EVAL_TYPES: dict[str, str] = {
    "retrieval": "groupvit_jax.train.retrieval:RetrievalEval",
    "segmentation": "groupvit_jax.train.segmentation_eval:SegmentationEval",
}


@dataclasses.dataclass
class EvalContext:
  """What an evaluator may use: the model view of the current state and the run's mesh.

  model: a ``GroupViT`` whose variables are the train state's (global, sharded) arrays.
  graphdef / state: the functional pair, for evaluators that jit their own functions.
  mesh: the training mesh. step: updates applied so far.
  """
  model: Any
  graphdef: Any
  state: Any
  mesh: Any
  step: int


@dataclasses.dataclass
class EvalResult:
  scalars: dict[str, float]
  images: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # [N, H, W, 3] uint8


class Evaluator(Protocol):

  def __init__(self, eval_config, *, model_config, input_config):
    ...

  def __call__(self, ctx: EvalContext) -> EvalResult:
    ...


def _load(type_name: str):
  if type_name not in EVAL_TYPES:
    raise ValueError(f"unknown eval type {type_name!r}; known: {sorted(EVAL_TYPES)}")
  module, cls = EVAL_TYPES[type_name].split(":")
  return getattr(importlib.import_module(module), cls)


class PeriodicEvals:
  """Builds the configured evaluators and runs the due ones."""

  def __init__(self, evals_config, *, model_config, input_config, total_steps: int):
    self._evals = {}
    self._total = total_steps
    for name, ev in evals_config.items():
      if int(ev.every_steps) <= 0:
        logging.info("eval %s off: every_steps=0", name)
        continue
      evaluator = _load(ev.type)(ev, model_config=model_config, input_config=input_config)
      if getattr(evaluator, "disabled_reason", None):
        logging.info("eval %s off: %s", name, evaluator.disabled_reason)
        continue
      self._evals[name] = (int(ev.every_steps), evaluator)

  @property
  def names(self) -> list[str]:
    return list(self._evals)

  def due(self, step: int) -> list[str]:
    return [n for n, (every, _) in self._evals.items()
            if step % every == 0 or step == self._total]

  def run(self, names: list[str], ctx: EvalContext, writer) -> dict[str, float]:
    """Runs ``names`` and writes their scalars and images; returns all scalars."""
    out = {}
    for name in names:
      t0 = time.perf_counter()
      result = self._evals[name][1](ctx)
      scalars = {f"{name}/{k}": float(v) for k, v in result.scalars.items()}
      scalars[f"{name}/seconds"] = time.perf_counter() - t0
      writer.write_scalars(ctx.step, scalars)
      if result.images:
        writer.write_images(ctx.step, {f"{name}/{k}": v for k, v in result.images.items()})
      logging.info("eval %s at step %d: %s", name, ctx.step,
                   ", ".join(f"{k} {v:.4g}" for k, v in scalars.items()))
      out.update(scalars)
    return out
