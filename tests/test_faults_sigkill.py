"""SIGKILL (docs/reliability.md): the entry point is killed with no chance to save, at three
moments (while an asynchronous save is in flight, while restoring at start-up, and mid-epoch
right after a step), and the same command run again each time resumes from the last complete
checkpoint and ends with the losses of an uninterrupted run over the same shards (same data
order). Nothing is ever set aside: Orbax commits a step by renaming its folder, so a kill leaves
only a temporary folder that is never listed."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from groupvit_jax.train import loop
from train_testlib import REPO, fast_compile, subprocess_env, tiny_config, write_shards  # noqa: F401

MESH = (("data", 2), ("fsdp", 4))


def losses(workdir) -> dict[int, dict]:
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return {r["step"]: r for r in rows if "loss" in r}  # the last row of each step


def run_until(cmd, env, marker: str | None) -> str:
  """Runs ``cmd``; SIGKILLs it as soon as a stderr line holds ``marker`` (None: to the end)."""
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  log = []
  for line in proc.stderr:
    log.append(line)
    if marker is not None and marker in line:
      proc.send_signal(signal.SIGKILL)
      break
  proc.stderr.close()
  rc = proc.wait(timeout=600)
  text = "".join(log)
  if marker is None:
    assert rc == 0, text[-3000:]
  else:
    assert rc == -signal.SIGKILL, (rc, text[-3000:])
  return text


@pytest.mark.slow
def test_sigkill_at_three_moments_then_the_same_final_state(tmp_path, tmp_path_factory,
                                                            fast_compile):  # noqa: F811
  write_shards(tmp_path / "shards", num_shards=4, per_shard=10)
  shards = str(tmp_path / "shards" / "*.tar")
  overrides = {"mesh": MESH, "input.backend": "webdataset", "input.train_shards": shards}
  reference = str(tmp_path / "uninterrupted")
  loop.train_and_evaluate(tiny_config(**overrides), reference)

  workdir = tmp_path / "killed"
  cache = tmp_path_factory.getbasetemp() / "jax_cache"
  cmd = [sys.executable, "-m", "groupvit_jax.train", "--config", "configs/tiny.py",
         "--workdir", str(workdir), "--config.input.backend=webdataset",
         f"--config.input.train_shards={shards}", f"--config.mesh={MESH}",
         f"--config.jax_cache_dir={cache}"]
  env = subprocess_env()
  run_until(cmd, env, "checkpoint 4 started (async)")  # the save of step 4 is in flight
  log = run_until(cmd, env, "resuming from")  # killed while restoring
  assert "resuming from" in log
  log = run_until(cmd, env, "step 5/6 |")  # killed mid-run, after a logged step
  log = run_until(cmd, env, None)
  assert "step 6/6 |" in log
  names = os.listdir(workdir / "checkpoints")
  assert not any(".corrupt-" in n for n in names), names
  want, got = losses(reference), losses(workdir)
  assert sorted(got) == sorted(want) == [1, 2, 3, 4, 5, 6]
  for s in want:
    for key in ("loss", "loss_itc", "loss_ml", "grad_norm", "param_norm"):
      np.testing.assert_allclose(got[s][key], want[s][key], rtol=1e-6, err_msg=f"step {s} {key}")
