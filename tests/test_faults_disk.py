"""Disk faults (docs/reliability.md): an unwritable workdir or a disk without room for two train
states is refused before compiling, naming the path; a save that fails mid-run (the disk fills)
stops the run with the error and leaves the previous checkpoint intact and loadable."""

import errno
import os
import shutil

import numpy as np
import orbax.checkpoint as ocp
import pytest

from groupvit_jax import load_pretrained
from groupvit_jax.train import checkpointing, loop
from train_testlib import fast_compile, tiny_config  # noqa: F401  (fixture)

MESH = (("data", 2), ("fsdp", 4))


def test_unwritable_workdir_is_refused_before_any_work(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  with pytest.raises(checkpointing.CheckpointError, match=f"cannot write to {blocker}/run: "):
    loop.train_and_evaluate(tiny_config(mesh=MESH), str(blocker / "run"))


def test_full_disk_is_refused_before_compiling(tmp_path, monkeypatch, caplog,
                                               fast_compile):  # noqa: F811
  usage = shutil.disk_usage(tmp_path)
  monkeypatch.setattr(checkpointing.shutil, "disk_usage",
                      lambda path: usage._replace(free=2**20))  # 1 MiB left
  workdir = tmp_path / "run"
  with pytest.raises(checkpointing.CheckpointError,
                     match=rf"not enough disk space for checkpoints in {workdir}/checkpoints: "
                           rf"1.0 MiB free, \d+.\d MiB needed"):
    loop.train_and_evaluate(tiny_config(mesh=MESH), str(workdir))
  assert not any("train step:" in r.getMessage() for r in caplog.records)  # not compiled


def test_a_failing_save_stops_the_run_and_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, fast_compile):  # noqa: F811
  real_save = ocp.CheckpointManager.save

  def save_fills_the_disk_at_step_4(self, step, *args, **kw):
    if step == 4:
      raise OSError(errno.ENOSPC, "No space left on device", f"{self.directory}/4")
    return real_save(self, step, *args, **kw)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save_fills_the_disk_at_step_4)
  workdir = tmp_path / "run"
  with pytest.raises(checkpointing.CheckpointError,
                     match=r"saving a checkpoint in .* failed \(OSError: .*No space left on "
                           r"device.*Committed checkpoints are intact: \[2\]"):
    loop.train_and_evaluate(tiny_config(mesh=MESH), str(workdir))
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2"]
  model = load_pretrained(str(workdir / "checkpoints" / "2"))  # intact and complete
  assert np.isfinite(np.asarray(model.logit_scale.get_value())).all()
