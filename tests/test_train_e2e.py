"""Done-when, end to end: the entry point trains the tiny config on 8 simulated devices over a
folder of shards holding a corrupt image and an empty caption, is stopped with SIGTERM (exit
status 0, checkpoint saved), and the same command resumes and finishes with the losses of an
uninterrupted run of the same command."""

import json
import os
import signal
import subprocess
import sys

import numpy as np

from train_testlib import REPO, subprocess_env, write_shards


def test_entry_point_preempted_then_resumed(tmp_path, tmp_path_factory):
  write_shards(tmp_path / "shards", num_shards=4, per_shard=10, corrupt=[(1, 3)],
               empty_caption=[(2, 5)])
  workdir = tmp_path / "run"
  cache = tmp_path_factory.getbasetemp() / "jax_cache"  # shared with the in-process tests
  cmd = [sys.executable, "-m", "groupvit_jax.train", "--config", "configs/tiny.py",
         "--workdir", str(workdir), "--config.input.backend=webdataset",
         f"--config.input.train_shards={tmp_path}/shards/*.tar",
         "--config.mesh=(('data', 2), ('fsdp', 4))", f"--config.jax_cache_dir={cache}"]
  env = subprocess_env()
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True)
  log = []
  for line in proc.stderr:
    log.append(line)
    if "step 1/6 |" in line:
      proc.send_signal(signal.SIGTERM)  # a preemption notice while training
      break
  _, err = proc.communicate(timeout=600)
  log = "".join(log) + err
  assert proc.returncode == 0, log[-3000:]
  assert "preempted: checkpoint" in log, log[-3000:]
  saved = sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())
  assert saved and max(saved) < 6

  second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert second.returncode == 0, second.stderr[-3000:]
  assert f"resuming from {workdir}/checkpoints/{max(saved)}" in second.stderr
  assert "step 6/6 |" in second.stderr and "ETA" in second.stderr
  rows = [json.loads(x) for x in open(workdir / "metrics.jsonl")]
  losses = {r["step"]: r for r in rows if "loss" in r}
  assert sorted(losses) == [1, 2, 3, 4, 5, 6]
  last = losses[6]
  # 96 good samples = 2.5 passes over the 38 good ones: each bad sample met at least twice
  assert last["skipped_image_total"] >= 2 and last["skipped_caption_total"] >= 2
  assert f"skipped: {int(last['skipped_image_total'])} images" in second.stderr
  assert sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())[-1] == 6
  assert json.load(open(workdir / "config.json"))["input"]["backend"] == "webdataset"

  # The same command without the preemption: the resumed run (data iterator position, skip
  # counts and train state restored) gives its losses. The in-process resume test is
  # bit-identical; 1e-6 leaves room for a different XLA autotuning choice between processes.
  straight = tmp_path / "straight"
  ref_cmd = [straight if str(a) == str(workdir) else a for a in cmd]
  third = subprocess.run([str(a) for a in ref_cmd], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
  assert third.returncode == 0, third.stderr[-3000:]
  ref = {r["step"]: r for r in map(json.loads, open(straight / "metrics.jsonl")) if "loss" in r}
  assert sorted(ref) == sorted(losses)
  for s in sorted(ref):
    for key in ("loss", "loss_itc", "grad_norm", "skipped_image_total"):
      np.testing.assert_allclose(losses[s][key], ref[s][key], rtol=1e-6, err_msg=f"{s} {key}")
