"""Faults in the checkpoint folder (docs/reliability.md): a corrupt or partial latest checkpoint is
named, set aside as ``<step>.corrupt-<reason>`` (never deleted, never listed by Orbax again) and
the run resumes from the newest step that restores, with the uninterrupted run's losses; no
restorable step at all stops the entry point with the list of what was tried, status 1 and no
traceback; a checkpoint of another model is refused, not set aside."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from groupvit_jax.train import checkpointing, loop
from train_testlib import (REPO, abstract_training_setup, fast_compile,  # noqa: F401
                           subprocess_env, tiny_config)

MESH = (("data", 2), ("fsdp", 4))
OVERRIDES = {"mesh": MESH, "ckpt.keep": 3}  # checkpoints 2, 4 and 6


def last_rows(workdir) -> dict[int, dict]:
  """{step: the last metrics row with a loss for that step} (a resumed run appends rows)."""
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return {r["step"]: r for r in rows if "loss" in r}


def step_names(workdir) -> list[str]:
  return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


# Ways a step folder goes bad after (or while) it was written.
def truncate_arrays(step_dir: pathlib.Path) -> None:
  for f in (step_dir / "state").rglob("d/*"):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def delete_arrays(step_dir: pathlib.Path) -> None:
  for f in (step_dir / "state").rglob("d/*"):
    f.unlink()


def delete_metadata(step_dir: pathlib.Path) -> None:
  (step_dir / "state" / "_METADATA").unlink()


def delete_commit_marker(step_dir: pathlib.Path) -> None:
  (step_dir / checkpointing.COMMIT_MARKER).unlink()


def delete_data_item(step_dir: pathlib.Path) -> None:
  shutil.rmtree(step_dir / "data")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fast_compile):  # noqa: F811
  """An uninterrupted 6-step run keeping checkpoints 2, 4 and 6."""
  workdir = str(tmp_path_factory.mktemp("faults_ckpt") / "full")
  loop.train_and_evaluate(tiny_config(**OVERRIDES), workdir)
  assert step_names(workdir) == ["2", "4", "6"]
  return workdir


def copy_of(trained, tmp_path) -> pathlib.Path:
  work = tmp_path / "run"
  shutil.copytree(trained, work)
  return work


def test_corrupt_latest_steps_are_set_aside_and_the_resumed_losses_match(trained, tmp_path,
                                                                          caplog):
  work = copy_of(trained, tmp_path)
  truncate_arrays(work / "checkpoints" / "6")  # the disk fault of the report: OUT_OF_RANGE reads
  delete_commit_marker(work / "checkpoints" / "4")
  result = loop.train_and_evaluate(tiny_config(**OVERRIDES), str(work))
  assert result["step"] == 6
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert any(f"checkpoint {work}/checkpoints/6 is corrupt (does not read back" in w and
             "6.corrupt-unreadable" in w for w in warnings), warnings
  assert any(f"checkpoint {work}/checkpoints/4 is corrupt (uncommitted)" in w for w in warnings)
  # kept under names Orbax never lists; the resumed run wrote 4 and 6 afresh from step 2
  names = step_names(work)
  assert {"4.corrupt-uncommitted", "6.corrupt-unreadable"} <= set(names)
  assert [n for n in names if n.isdigit()] == ["2", "4", "6"]
  assert (work / "checkpoints" / "6.corrupt-unreadable" / "state" / "_METADATA").exists()
  full, resumed = last_rows(trained), last_rows(work)
  for s in range(3, 7):
    for key in ("loss", "loss_itc", "loss_ml", "grad_norm", "param_norm"):
      assert resumed[s][key] == full[s][key], (s, key)  # the same curve from step 2 on


def _target_and_data(config):
  s = abstract_training_setup(config, MESH)
  return s["target"], s["data"]


@pytest.mark.parametrize("corrupt,reason", [(delete_arrays, "unreadable"),
                                            (delete_metadata, "missing-metadata"),
                                            (delete_data_item, "missing-data")])
def test_each_partial_checkpoint_falls_back_to_the_previous_step(trained, tmp_path, corrupt,
                                                                 reason):
  work = copy_of(trained, tmp_path)
  corrupt(work / "checkpoints" / "6")
  config = tiny_config(**OVERRIDES)
  target, data = _target_and_data(config)
  with checkpointing.make_manager(str(work / "checkpoints"), config.ckpt) as mngr:
    step, state = checkpointing.restore_latest(mngr, target, data)
  assert step == 4 and int(state["step"]) == 4
  assert json.loads(data.get_state())["source"]["step"] == 4  # the data position of step 4
  assert step_names(work) == ["2", "4", f"6.corrupt-{reason}"]
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  with ocp.CheckpointManager(str(work / "checkpoints"), item_names=checkpointing.ITEMS) as m:
    assert list(m.all_steps(read=True)) == [2, 4]  # the folder set aside is never read again


def test_a_checkpoint_of_another_model_is_refused_not_set_aside(trained, tmp_path):
  work = copy_of(trained, tmp_path)
  config = tiny_config(**OVERRIDES, **{"model.text.width": 48})
  target, data = _target_and_data(config)
  with pytest.raises(checkpointing.CheckpointError, match=r"another model.*arrays saved"):
    with checkpointing.make_manager(str(work / "checkpoints"), config.ckpt) as mngr:
      checkpointing.restore_latest(mngr, target, data)
  assert step_names(work) == ["2", "4", "6"]


def test_no_restorable_checkpoint_is_a_clear_error(trained, tmp_path):
  work = copy_of(trained, tmp_path)
  for step, corrupt in (("2", delete_commit_marker), ("4", truncate_arrays),
                        ("6", delete_metadata)):
    corrupt(work / "checkpoints" / step)
  cmd = [sys.executable, "-m", "groupvit_jax.train", "--config", "configs/tiny.py",
         "--workdir", str(work), f"--config.mesh={MESH}", "--config.ckpt.keep=3"]
  proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 1, proc.stderr[-3000:]
  err = proc.stderr
  assert "Traceback" not in err, err[-3000:]
  assert f"error: no checkpoint in {work}/checkpoints restores; tried, newest first:" in err
  for name in ("6.corrupt-missing-metadata", "4.corrupt-unreadable", "2.corrupt-uncommitted"):
    assert name in err and (work / "checkpoints" / name).is_dir()
  assert "train step:" not in err  # stopped before compiling
