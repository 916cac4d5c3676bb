"""Non-finite steps (docs/reliability.md): with ``max_consecutive_nonfinite_steps=2`` two
poisoned updates in a row are skipped (state unchanged, counted in the metrics and the log), the
third stops the run naming the step, the metric and the last good checkpoint."""

import json
import os

import numpy as np
import pytest

from groupvit_jax.train import loop
from input_pipeline import synthetic
from train_testlib import fast_compile, tiny_config  # noqa: F401  (fixture)

MESH = (("data", 2), ("fsdp", 4))


def test_nonfinite_steps_are_skipped_then_the_run_stops(tmp_path, monkeypatch, caplog,
                                                        fast_compile):  # noqa: F811
  real = synthetic.synthetic_batch

  def poisoned(seed, step, *args, **kw):
    out = real(seed, step, *args, **kw)
    if step >= 3:  # the batches of updates 4, 5 and 6
      out["image"][0, 0, 0, 0] = np.inf
    return out

  monkeypatch.setattr(synthetic, "synthetic_batch", poisoned)
  workdir = str(tmp_path / "nan")
  config = tiny_config(mesh=MESH, max_consecutive_nonfinite_steps=2)
  with pytest.raises(loop.NonFiniteLossError) as info:
    loop.train_and_evaluate(config, workdir)
  msg = str(info.value)
  assert msg.startswith("non-finite loss") and "at step 6" in msg, msg
  assert "3 non-finite steps in a row" in msg and f"{workdir}/checkpoints/4" in msg, msg
  rows = {}
  for line in open(os.path.join(workdir, "metrics.jsonl")):
    r = json.loads(line)
    if "loss" in r:
      rows[r["step"]] = r
  assert sorted(rows) == [1, 2, 3, 4, 5]  # the step that stopped the run is not logged
  assert [rows[s]["nonfinite_skipped_total"] for s in range(1, 6)] == [0, 0, 0, 1, 2]
  assert [rows[s]["finite"] for s in range(1, 6)] == [1, 1, 1, 0, 0]
  # param_norm is read before the update: the state after the skipped update 4 is the state
  # after update 3 (and update 3 did change it)
  assert rows[5]["param_norm"] == rows[4]["param_norm"] != rows[3]["param_norm"]
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert any("non-finite loss" in w and "at step 4: update skipped" in w for w in warnings)
  # Rerun on clean data: it resumes from checkpoint 4 (saved after one skip) and the count goes
  # on from there instead of restarting at 0.
  monkeypatch.setattr(synthetic, "synthetic_batch", real)
  loop.train_and_evaluate(config, workdir)
  resumed = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  resumed = [r for r in resumed if "loss" in r and r["step"] > 4][-2:]
  assert [r["step"] for r in resumed] == [5, 6]
  assert [r["nonfinite_skipped_total"] for r in resumed] == [1, 1]
  assert [r["finite"] for r in resumed] == [1, 1]
  assert any("at step 5: update skipped, state unchanged (2 in a row, at most 2" in w
             for w in warnings)
