"""``train_and_evaluate(config, workdir)``: the impure training loop around the pure step.

Start: validate the config, write it to ``WORKDIR/config.json``, build the mesh, the data
iterator and the checkpoint manager, restore or initialise the state (order in
``config_lib``), compile the step once (ahead of time, so it can never recompile) and log its
FLOPs and memory. Loop: fetch a batch, dispatch the step, read the *previous* step's metrics
(one step behind, so the host never stalls the device), log, checkpoint, evaluate, and stop
cleanly on SIGTERM. A step whose loss or gradient is non-finite leaves the state unchanged (see
``step.py``); up to ``max_consecutive_nonfinite_steps`` such steps in a row are skipped and
counted (``nonfinite_skipped_total`` in the metrics), one more raises ``NonFiniteLossError``
after the last good checkpoint is safely on disk.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import jax
import numpy as np
from etils import epath
from flax import nnx
from jax.experimental import multihost_utils

from groupvit_jax import optim
from groupvit_jax import sharding as shd
from groupvit_jax.convert import workdir as workdir_layout
from groupvit_jax.train import checkpointing, config_lib, distributed, evals as evals_lib
from groupvit_jax.train import metrics as metrics_lib
from groupvit_jax.train import state as state_lib, step as step_lib
from input_pipeline import pipeline


class NonFiniteLossError(FloatingPointError):
  """The loss or gradient became NaN/inf; the message names the step, the metric and the
  checkpoint kept."""


def nonfinite_metrics(m: dict[str, float]) -> list[str]:
  """Names of the step metrics that are NaN/inf (``finite`` itself excluded), loss first."""
  order = sorted(m, key=lambda k: (k != "loss", k != "grad_norm", k))
  return [k for k in order if k != "finite" and not np.isfinite(m[k])]


def enable_compilation_cache(directory: str) -> None:
  """Persistent XLA compilation cache (a restarted or resumed run skips compilation)."""
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir", checkpointing.absolute(directory))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  compilation_cache.reset_cache()  # takes effect even if something compiled before


def _write_config(config, workdir: str) -> None:
  if jax.process_index() == 0:
    (epath.Path(workdir) / workdir_layout.CONFIG_FILE).write_text(
        config.to_json_best_effort(indent=2, sort_keys=True))


def _flat_hparams(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flat_hparams(v, key + "."))
    else:
      out[key] = v if isinstance(v, (int, float, str, bool)) else str(v)
  return out


def _check_batch(config, mesh, rules) -> None:
  """The global batch must split evenly over the mesh axes of the ``batch`` rule."""
  b = int(config.input.batch_size)
  dp = shd.data_parallel_size(mesh, rules)
  if b % dp:
    raise ValueError(f"input.batch_size {b} must be divisible by the data-parallel size {dp} "
                     f"(mesh {dict(mesh.shape)}, batch over {shd.batch_axes(rules)})")


def _parameter_overview(state) -> None:
  from clu import parameter_overview  # pylint: disable=g-import-not-at-top
  flat = {"/".join(map(str, p)): v.get_value() for p, v in nnx.to_flat_state(state["params"])}
  parameter_overview.log_parameter_overview(flat, include_stats=jax.process_count() == 1,
                                            msg="GroupViT parameters")


def _init_state(config, cfg, tx, mesh, rules, mngr, abstract, shardings, data_iter):
  """Resume order: workdir checkpoint > ckpt.resume_from > ckpt.model_init > random init."""
  target = state_lib.with_shardings(abstract, shardings)
  found = checkpointing.restore_latest(mngr, target, data_iter)
  if found is not None:
    logging.info("resuming from %s/%d", mngr.directory, found[0])
    return found[1]
  if config.ckpt.resume_from:
    directory, step = checkpointing.resolve_resume_from(config.ckpt.resume_from)
    logging.info("starting from %s/%d (ckpt.resume_from)", directory, step)
    other = checkpointing.make_manager(directory, config.ckpt, read_only=True)
    try:
      return checkpointing.restore(other, step, target, data_iter)
    finally:
      other.close()
  _, state, _ = state_lib.create_train_state(cfg, tx, mesh, rules, int(config.seed))
  if config.ckpt.model_init:
    from groupvit_jax.convert import load_pretrained  # pylint: disable=g-import-not-at-top
    logging.info("initialising the model from %s (ckpt.model_init)", config.ckpt.model_init)
    _, params, stats = state_lib.split_model(load_pretrained(config.ckpt.model_init, config=cfg))
    state["params"] = jax.device_put(params, shardings["params"])
    state["batch_stats"] = jax.device_put(stats, shardings["batch_stats"])
  return state


def _abstract_batch(config, shardings) -> dict[str, jax.ShapeDtypeStruct]:
  return {key: jax.ShapeDtypeStruct(shape, dtype, sharding=shardings[key])
          for key, (shape, dtype) in pipeline.batch_spec(config.input).items()}


def _global_skips(data_iter) -> dict[str, int]:
  keys = sorted(data_iter.skipped)
  local = np.array([data_iter.skipped[k] for k in keys], np.int64)
  if jax.process_count() > 1:
    local = np.asarray(multihost_utils.process_allgather(local)).reshape(-1, len(keys)).sum(0)
  return {f"{k}_total": int(v) for k, v in zip(keys, local)}


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Trains as ``config`` says, in ``workdir``; resumes from its latest checkpoint if any.

  Returns:
    The last logged scalars plus ``step`` and ``preempted``.
  Raises:
    NonFiniteLossError: the loss became NaN/inf (the state at that step is not saved).
  """
  config_lib.validate_config(config)
  workdir = checkpointing.absolute(workdir)  # local or remote (gs://...)
  checkpointing.check_writable(workdir, 0)  # a file in the way, no permission: before any work
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  if config.jax_cache_dir:
    enable_compilation_cache(config.jax_cache_dir)
  _write_config(config, workdir)
  cfg = state_lib.model_config(config)
  mesh = state_lib.make_mesh(config.mesh)
  rules = state_lib.rules_from_config(config.sharding_rules)
  _check_batch(config, mesh, rules)
  total = int(config.total_steps)
  global_batch = int(config.input.batch_size)
  logging.info("mesh %s over %d devices (%d processes); global batch %d", dict(mesh.shape),
               jax.device_count(), jax.process_count(), global_batch)
  tx, schedule = optim.make_optimizer(config.optim, global_batch=global_batch, total_steps=total)
  logging.info(optim.describe(optim.schedule_params(config.optim, global_batch=global_batch,
                                                    total_steps=total)))
  writer = metrics_lib.create_writer(workdir)
  writer.write_hparams(_flat_hparams(config.to_dict()))
  data_iter = pipeline.make_train_iter(config.input, mesh=mesh, rules=rules, seed=int(config.seed))
  graphdef, abstract = state_lib.abstract_state(cfg, tx)
  shardings = state_lib.state_shardings(abstract, tx, mesh, rules)
  if jax.process_index() == 0:  # room for a new save while the last one is kept
    checkpointing.check_writable(checkpointing.checkpoint_dir(workdir),
                                 2 * checkpointing.state_bytes(abstract))
  mngr = checkpointing.make_manager(checkpointing.checkpoint_dir(workdir), config.ckpt)
  state = _init_state(config, cfg, tx, mesh, rules, mngr, abstract, shardings, data_iter)
  start = int(jax.device_get(state["step"]))
  if jax.process_index() == 0:
    _parameter_overview(state)

  batch_sh = pipeline.batch_shardings(mesh, rules, config.input)
  train_step = step_lib.make_train_step(
      graphdef=graphdef, tx=tx, schedule=schedule, shardings=shardings, batch_shardings=batch_sh,
      mesh=mesh, rules=rules, multi_label=cfg.multi_label,
      multi_label_weight=cfg.multi_label_loss_weight,
      microbatch_size=int(config.get("microbatch_size", 0)))
  lowered = train_step.lower(state_lib.with_shardings(abstract, shardings),
                             _abstract_batch(config, batch_sh))
  flops = metrics_lib.step_flops(lowered)
  compiled = lowered.compile()
  distributed.align_processes("train_step_compiled")
  metrics_lib.log_memory(compiled)
  peak = metrics_lib.peak_flops_per_device(override=config.peak_flops_per_device)
  logging.info("train step: %s GFLOPs per step; peak %s TFLOP/s per device",
               f"{flops / 1e9:.3g}" if flops else "?", f"{peak / 1e12:.0f}" if peak else "unknown")
  throughput = metrics_lib.Throughput(global_batch=global_batch, step_flops=flops, peak=peak)
  periodic = evals_lib.PeriodicEvals(config.evals, model_config=cfg, input_config=config.input,
                                     total_steps=total)

  report, flushing = metrics_lib.progress_report(total, writer, int(config.log_every_steps))
  guard = checkpointing.PreemptionGuard(multi_process=jax.process_count() > 1)
  last: dict[str, Any] = {}
  pending = None  # (step, device metrics) of the step dispatched last
  max_skips = int(config.max_consecutive_nonfinite_steps)
  # The total goes on from the restored checkpoint (saved with the data position).
  nonfinite = {"in_a_row": 0, "total": data_iter.run_counters.get("nonfinite_skipped_total", 0)}

  def resolve():
    """Reads the pending step's metrics: stop on non-finite, log on log steps."""
    nonlocal pending, last
    if pending is None:
      return
    step, dev_metrics = pending
    pending = None
    m = {k: float(v) for k, v in jax.device_get(dev_metrics).items()}
    if m["finite"] < 1.0:
      nonfinite["in_a_row"] += 1
      nonfinite["total"] += 1
      bad = ", ".join(nonfinite_metrics(m)) or "loss"
      if nonfinite["in_a_row"] > max_skips:
        checkpointing.wait_until_finished(mngr)
        kept = mngr.latest_step()
        raise NonFiniteLossError(
            f"non-finite {bad} at step {step} (loss {m['loss']}, grad norm {m['grad_norm']}; "
            f"{nonfinite['in_a_row']} non-finite steps in a row, "
            f"max_consecutive_nonfinite_steps={max_skips}): the run stops and this update was "
            f"not applied. Last good checkpoint: "
            f"{f'{mngr.directory}/{kept}' if kept is not None else 'none yet'}. Lower "
            f"optim.base_lr or raise optim.warmup_steps, then rerun the same command to resume.")
      logging.warning("non-finite %s at step %d: update skipped, state unchanged (%d in a row, "
                      "at most %d; %d skipped in this run)", bad, step, nonfinite["in_a_row"],
                      max_skips, nonfinite["total"])
    else:
      nonfinite["in_a_row"] = 0
    m["nonfinite_skipped_total"] = nonfinite["total"]
    data_iter.run_counters["nonfinite_skipped_total"] = nonfinite["total"]
    if step % int(config.log_every_steps) == 0 or step == total:
      m.update(throughput.update(step))
      m.update(_global_skips(data_iter))
      writer.write_scalars(step, m)
      logging.info("%s", metrics_lib.log_line(step, total, m))
      last = dict(m)

  throughput.reset(start)
  preempted = False
  step = start
  try:
    with flushing:
      for step in range(start + 1, total + 1):
        with report.timed("data", wait_jax_async_dispatch=False):
          batch, _ = next(data_iter)
        with jax.transfer_guard("disallow"):
          state, dev_metrics = compiled(state, batch)
        resolve()  # the previous step's metrics
        pending = (step, dev_metrics)
        report(step)
        stop = guard.should_stop(mngr, step)
        due_evals = periodic.due(step)
        if stop or due_evals or step == total or mngr.should_save(step):
          resolve()  # never save or evaluate a state whose loss was not checked
        if due_evals:
          with report.timed("eval"):
            ctx = evals_lib.EvalContext(model=state_lib.model_from_state(graphdef, state),
                                        graphdef=graphdef, state=state, mesh=mesh, step=step)
            last.update(periodic.run(due_evals, ctx, writer))
          throughput.reset(step)
        with report.timed("checkpoint", wait_jax_async_dispatch=False):
          saved = checkpointing.save(mngr, step, state, data_iter, force=stop or step == total)
        if saved:
          logging.info("checkpoint %d started (async)", step)
          throughput.reset(step)
        if stop:
          preempted = True
          logging.warning("preempted: checkpoint %d saved; exiting so the same command resumes",
                          step)
          break
      resolve()
    checkpointing.wait_until_finished(mngr)
  finally:
    mngr.close()
    data_iter.close()
    guard.restore_handler()
    writer.flush()
  last.update(step=step, preempted=preempted)
  if jax.process_index() == 0:
    (epath.Path(workdir) / "last_metrics.json").write_text(json.dumps(
        {k: v for k, v in last.items() if isinstance(v, (int, float, bool))}, indent=2))
  return last
