"""Bad shards in a real run (docs/reliability.md): a shard that is not a tar, is truncated
mid-member, cannot be read (a directory), has gone missing since the listing (a dangling link) or
is empty is skipped, named in a warning and counted in the metrics (``skipped_shard_total``), and training goes on over the good ones;
when every shard is bad the run stops with an error listing them, never cycling for ever."""

import os
import pathlib
import signal
import tarfile

import pytest

from groupvit_jax.train import loop
from train_testlib import fast_compile, tiny_config, write_shards  # noqa: F401  (fixture)

MESH = (("data", 2), ("fsdp", 4))


def write_bad_shards(directory: pathlib.Path, good_tar: pathlib.Path) -> list[str]:
  """One shard per fault; returns their paths."""
  directory.mkdir(parents=True, exist_ok=True)
  not_tar = directory / "b_not_a_tar.tar"
  not_tar.write_bytes(b"this is a text file, not a tar archive\n" * 50)
  with tarfile.open(good_tar) as tar:
    middle = tar.getmembers()[len(tar.getmembers()) // 2]
  cut = middle.offset_data + middle.size // 2  # inside a member's bytes
  (directory / "b_truncated.tar").write_bytes(good_tar.read_bytes()[:cut])
  (directory / "b_unreadable.tar").mkdir()  # opening it fails (IsADirectoryError)
  os.symlink(directory / "gone.tar", directory / "b_missing.tar")  # deleted after the listing
  (directory / "b_empty.tar").write_bytes(b"")
  return sorted(str(p) for p in directory.glob("b_*.tar"))


def config_for(pattern: str):
  return tiny_config(mesh=MESH, **{"input.backend": "webdataset", "input.train_shards": pattern,
                                   "ckpt.every_steps": 100})


def test_bad_shards_are_skipped_named_and_counted(tmp_path, caplog, fast_compile):  # noqa: F811
  good = write_shards(tmp_path / "shards", num_shards=2, per_shard=10)
  bad = write_bad_shards(tmp_path / "shards", pathlib.Path(good[0]))
  result = loop.train_and_evaluate(config_for(str(tmp_path / "shards" / "*.tar")),
                                   str(tmp_path / "run"))
  assert result["step"] == 6 and result["loss"] > 0
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  for path in bad:
    if "truncated" in path:  # holds a few samples before the cut: read, then named
      assert any(f"shard {path} is truncated or corrupt after" in w for w in warnings), path
    else:
      assert any(f"shard {path} yielded no samples (" in w for w in warnings), path
  counts = [int(w.split("(")[1].split()[0]) for w in warnings if "yielded no samples" in w]
  assert counts == list(range(1, len(counts) + 1)) and len(counts) >= 4  # a running count
  # ... and in the metrics: each empty read of a bad shard consumed by the 6 steps (readers run
  # ahead of training, so the warnings may name a few more).
  assert 4 <= result["skipped_shard_total"] <= len(counts), (result, len(counts))


def test_all_shards_bad_stops_with_the_list(tmp_path, fast_compile):  # noqa: F811
  good = write_shards(tmp_path / "good", num_shards=1, per_shard=4)
  bad = write_bad_shards(tmp_path / "shards", pathlib.Path(good[0]))
  truncated = tmp_path / "shards" / "b_truncated.tar"
  truncated.unlink()  # it holds samples
  bad.remove(str(truncated))

  def hung(signum, frame):
    raise TimeoutError("the run still cycles over the bad shards after 600 s")

  previous = signal.signal(signal.SIGALRM, hung)
  signal.alarm(600)  # a hang fails the test instead of the suite
  try:
    with pytest.raises(ValueError, match="none of the 4 shards read by this data worker") as info:
      loop.train_and_evaluate(config_for(str(tmp_path / "shards" / "b_*.tar")),
                              str(tmp_path / "run"))
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
  for path in bad:
    assert path in str(info.value)


@pytest.mark.slow
def test_a_killed_decode_worker_stops_the_run_naming_it(tmp_path, monkeypatch,
                                                        fast_compile):  # noqa: F811
  import multiprocessing  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  from groupvit_jax.train import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top
  write_shards(tmp_path / "shards", num_shards=2, per_shard=10)
  config = config_for(str(tmp_path / "shards" / "*.tar"))
  config.input.num_workers = 1
  config.input.worker_buffer_size = 1
  real_log_line = metrics_lib.log_line
  killed = {}

  def log_line_then_kill_the_worker(step, total, scalars):
    if step == 1:
      workers = multiprocessing.active_children()
      assert workers, "no worker process to kill"
      for w in workers:
        os.kill(w.pid, signal.SIGKILL)
      killed["at"] = time.monotonic()
    return real_log_line(step, total, scalars)

  monkeypatch.setattr(metrics_lib, "log_line", log_line_then_kill_the_worker)
  with pytest.raises(pipeline.DataWorkerError, match=r"data decode worker process died \("
                     r"Worker process was terminated unexpectedly with exit code -9"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert time.monotonic() - killed["at"] < 60  # noticed within grain's 1 s queue timeout
