"""A host that dies in a multi-process run (docs/reliability.md): 2 processes x 4 simulated CPU
devices (jax.distributed over localhost) train the tiny config; process 1 is SIGKILLed after
step 3; process 0 exits with an error naming the lost task within the heartbeat timeout
(``--heartbeat_timeout_s``) plus a bounded margin, never waiting for ever; running both again
resumes from the last checkpoint and finishes."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from train_testlib import REPO, subprocess_env

MESH = (("data", 2), ("fsdp", 4))
HEARTBEAT_S = 10
MARGIN_S = 90  # start-up of the error path on a busy 2-core machine


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def start_both(workdir, logs_dir, tag: str):
  port = free_port()
  env = subprocess_env(devices=4)
  procs, logs = [], []
  for i in range(2):
    log = logs_dir / f"{tag}_{i}.log"
    with open(log, "w") as f:
      procs.append(subprocess.Popen(
          [sys.executable, "-m", "groupvit_jax.train", "--config", "configs/tiny.py",
           "--workdir", str(workdir), f"--config.mesh={MESH}",
           f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}",
           f"--heartbeat_timeout_s={HEARTBEAT_S}"],
          cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=f))
    logs.append(log)
  return procs, logs


def wait_for(log, marker: str, procs, timeout: float = 600) -> None:
  end = time.monotonic() + timeout
  while time.monotonic() < end:
    if marker in log.read_text():
      return
    if any(p.poll() is not None for p in procs):
      raise AssertionError(f"a process ended before {marker!r}:\n{log.read_text()[-3000:]}")
    time.sleep(0.2)
  raise AssertionError(f"no {marker!r} in {log} after {timeout} s")


@pytest.mark.slow
def test_a_dead_host_stops_the_survivor_then_both_resume(tmp_path):
  # No shared compilation cache: a process that skips compiling can reach the first collective
  # more than Gloo's 30 s ahead of its peer on a busy machine, which fails the rerun.
  workdir = tmp_path / "run"
  procs, logs = start_both(workdir, tmp_path, "first")
  try:
    wait_for(logs[1], "step 3/6 |", procs)
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    rc = procs[0].wait(timeout=HEARTBEAT_S + MARGIN_S)
    waited = time.monotonic() - killed_at
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  survivor = logs[0].read_text()
  assert rc != 0, survivor[-3000:]
  assert waited < HEARTBEAT_S + MARGIN_S
  # JAX's coordination service names the lost process (task 1), whichever path ends the survivor
  assert ("Task 1 heartbeat timeout" in survivor or
          "stopped sending heartbeats):\n1" in survivor), survivor[-3000:]
  saved = sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())
  assert saved and saved[-1] >= 2

  procs, logs = start_both(workdir, tmp_path, "second")
  for p in procs:
    assert p.wait(timeout=600) == 0
  again = logs[0].read_text()
  assert f"resuming from {workdir}/checkpoints/{saved[-1]}" in again, again[-3000:]
  assert "step 6/6 |" in again
