"""The training loop in-process on 8 simulated devices: a run stopped by SIGTERM resumes and
reproduces the uninterrupted losses exactly; a non-finite loss stops the run keeping the last
good checkpoint; the periodic evaluation writes scalars and images; the log line; and
``load_pretrained(workdir)``."""

import json
import os
import signal

import jax
import numpy as np
import pytest

from groupvit_jax import load_pretrained
from groupvit_jax.train import loop, metrics as metrics_lib, state as state_lib
from input_pipeline import synthetic
from train_testlib import (abstract_training_setup, fast_compile,  # noqa: F401  (fixture)
                           tiny_config, write_shards)

MESH = (("data", 2), ("fsdp", 4))


def eval_rows(workdir, key):
  """{step: metrics row} of the metrics.jsonl rows that hold ``key``."""
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return {r["step"]: r for r in rows if key in r}


def read_metrics(workdir):
  return eval_rows(workdir, "loss")


def tensorboard_tags(workdir):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(workdir, size_guidance={"tensors": 0})
  acc.Reload()
  return acc.Tags()["tensors"]


def steps_on_disk(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fast_compile):  # noqa: F811
  """6 steps in one go, with the retrieval evaluation on held-out shards and the segmentation
  evaluation on a 4-image split of the shapes world (folder layout), both every 3 steps."""
  from input_pipeline.synthetic_world import WorldConfig
  from input_pipeline.world_files import write_split
  root = tmp_path_factory.mktemp("loop")
  write_shards(root / "heldout", num_shards=2, per_shard=6, corrupt=[(0, 2)])
  write_split(str(root / "world"), WorldConfig(image_size=32), 0, "val", 4, progress=False)
  config = tiny_config(**{"mesh": MESH, "evals.retrieval.shards": str(root / "heldout/*.tar"),
                          "evals.segmentation.dataset": "folder",
                          "evals.segmentation.data_root": str(root / "world"),
                          "evals.segmentation.every_steps": 3,
                          "evals.segmentation.num_images": 2})
  workdir = str(root / "full")
  result = loop.train_and_evaluate(config, workdir)
  return workdir, result


def test_uninterrupted_run(uninterrupted):
  workdir, result = uninterrupted
  m = read_metrics(workdir)
  assert sorted(m) == [1, 2, 3, 4, 5, 6] and result["step"] == 6 and not result["preempted"]
  assert all(np.isfinite(r["loss"]) and r["loss_ml"] > 0 and r["loss_itc"] > 0 for r in m.values())
  assert steps_on_disk(workdir) == [4, 6]  # every 2 steps, keep 2
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert saved["model"]["multi_label"] == 3 and saved["total_steps"] == 6


def test_retrieval_eval_writes_scalars_and_images(uninterrupted):
  workdir, result = uninterrupted
  evals = eval_rows(workdir, "retrieval/image_to_text_r@1")
  assert sorted(evals) == [3, 6]
  for r in evals.values():
    assert r["retrieval/n"] == 11  # 12 held-out samples, one corrupt image skipped
    for k in ("image_to_text_r@1", "image_to_text_r@5", "text_to_image_r@1", "text_to_image_r@5"):
      assert 0.0 <= r[f"retrieval/{k}"] <= 1.0
    assert r["retrieval/image_to_text_r@5"] >= r["retrieval/image_to_text_r@1"]
  tags = tensorboard_tags(workdir)
  assert "retrieval/similarity" in tags
  assert "loss" in tags and "images_per_sec" in tags


def test_segmentation_eval_writes_miou_and_pictures(uninterrupted):
  workdir, _ = uninterrupted
  evals = eval_rows(workdir, "segmentation/mIoU")
  assert sorted(evals) == [3, 6]
  for r in evals.values():
    assert 0.0 <= r["segmentation/mIoU"] <= 1.0 and 0.0 <= r["segmentation/aAcc"] <= 1.0
    assert "segmentation/iou/background" in r  # every class present in the data has an IoU
  tags = tensorboard_tags(workdir)
  assert "segmentation/overlays" in tags and "segmentation/groups" in tags


def test_sigterm_resume_reproduces_the_losses(uninterrupted, tmp_path, monkeypatch):
  full = read_metrics(uninterrupted[0])
  workdir = str(tmp_path / "resumed")
  config = tiny_config(mesh=MESH, **{"ckpt.every_steps": 100})  # saves: preemption + last step
  real_log_line = metrics_lib.log_line

  def log_line_then_sigterm(step, total, scalars):  # preemption notice after step 2 is logged
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)
    return real_log_line(step, total, scalars)

  monkeypatch.setattr(metrics_lib, "log_line", log_line_then_sigterm)
  handler_before = signal.getsignal(signal.SIGTERM)
  first = loop.train_and_evaluate(config, workdir)
  monkeypatch.setattr(metrics_lib, "log_line", real_log_line)
  stopped = first["step"]
  assert first["preempted"] and 2 <= stopped < 6
  assert steps_on_disk(workdir) == [stopped]  # saved because of the preemption
  assert signal.getsignal(signal.SIGTERM) == handler_before  # the loop's handler is removed
  second = loop.train_and_evaluate(config, workdir)  # the same call resumes
  assert second["step"] == 6 and not second["preempted"]
  resumed = read_metrics(workdir)
  assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
  for s in range(1, 7):
    for key in ("loss", "loss_itc", "loss_ml", "grad_norm", "lr"):
      assert resumed[s][key] == full[s][key], (s, key)  # bit-identical


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch,
                                                                  fast_compile):  # noqa: F811
  real = synthetic.synthetic_batch

  def poisoned(seed, step, *args, **kw):
    out = real(seed, step, *args, **kw)
    if step == 3:  # the batch of update 4
      out["image"][0, 0, 0, 0] = np.inf
    return out

  monkeypatch.setattr(synthetic, "synthetic_batch", poisoned)
  workdir = str(tmp_path / "nan")
  with pytest.raises(loop.NonFiniteLossError, match=r"step 4.*checkpoints/2"):
    loop.train_and_evaluate(tiny_config(mesh=MESH), workdir)
  assert steps_on_disk(workdir) == [2]
  model = load_pretrained(os.path.join(workdir, "checkpoints", "2"))
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(
      state_lib.split_model(model)[1]))


def test_log_line_shows_progress():
  line = metrics_lib.log_line(10, 100, {"loss": 4.5, "loss_itc": 2.0, "loss_ml": 2.5, "lr": 1e-4,
                                        "images_per_sec": 321.0, "mfu": 0.42,
                                        "skipped_image_total": 3, "skipped_caption_total": 1})
  assert line == ("step 10/100 | loss 4.5000 (itc 2.0000 ml 2.5000) | lr 1.000e-04 | "
                  "321.0 img/s | MFU 42.0% | skipped: 3 images, 1 captions")


def test_load_pretrained_reads_the_workdir(uninterrupted):
  workdir, _ = uninterrupted
  model = load_pretrained(workdir)
  assert model.config.multi_label == 3 and model.multi_label_logit_scale is not None
  from groupvit_jax.convert import workdir as workdir_lib
  cfg, flat = workdir_lib.read(os.path.join(workdir, "checkpoints", "6"))
  assert cfg == model.config and "img_encoder/pos_embed" in flat
  assert "img_projector/linear_hidden/1/mean" in flat  # BatchNorm statistics come along
  x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  older = load_pretrained(os.path.join(workdir, "checkpoints", "4"))
  assert not np.allclose(np.asarray(model.get_image_features(x)),
                         np.asarray(older.get_image_features(x)))
  np.testing.assert_allclose(np.asarray(model.logit_scale.get_value()), flat["logit_scale"])


def _init_state_with(tmp_path, **overrides):
  from groupvit_jax.train import checkpointing
  config = tiny_config(mesh=MESH, **overrides)
  s = abstract_training_setup(config, MESH)
  mngr = checkpointing.make_manager(str(tmp_path / "fresh" / "checkpoints"), config.ckpt)
  state = loop._init_state(config, s["cfg"], s["tx"], s["mesh"], s["rules"], mngr,  # pylint: disable=protected-access
                           s["abstract"], s["shardings"], s["data"])
  mngr.close()
  return state, s["data"]


def test_resume_from_and_model_init(uninterrupted, tmp_path, fast_compile):  # noqa: F811
  workdir, _ = uninterrupted
  trained = load_pretrained(workdir)
  state, data = _init_state_with(tmp_path, **{"ckpt.model_init": workdir})
  assert int(state["step"]) == 0 and json.loads(data.get_state())["source"]["step"] == 0
  np.testing.assert_array_equal(np.asarray(state["params"]["logit_scale"].get_value()),
                                np.asarray(trained.logit_scale.get_value()))
  assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(state["opt_state"][1][0].mu))
  state, data = _init_state_with(tmp_path, **{"ckpt.resume_from": f"{workdir}/checkpoints/4"})
  assert int(state["step"]) == 4 and json.loads(data.get_state())["source"]["step"] == 4
  assert any(np.any(np.asarray(x)) for x in jax.tree.leaves(state["opt_state"][1][0].mu))



def _without_tensorflow(monkeypatch):
  """Makes ``from clu import metric_writers`` / ``periodic_actions`` (both import TensorFlow)
  raise ImportError, as on a host without the ``tf`` extra."""
  import sys  # pylint: disable=g-import-not-at-top
  import clu  # pylint: disable=g-import-not-at-top
  for name in ("metric_writers", "periodic_actions"):
    monkeypatch.setitem(sys.modules, f"clu.{name}", None)
    monkeypatch.delattr(clu, name, raising=False)  # `from clu import x` looks here first


def test_writer_without_tensorflow_keeps_metrics_jsonl(tmp_path, monkeypatch):
  """A host without the ``tf`` extra still trains: the metrics go to metrics.jsonl."""
  _without_tensorflow(monkeypatch)
  writer = metrics_lib.create_writer(str(tmp_path))
  writer.write_hparams({"lr": 1.0})
  writer.write_scalars(3, {"loss": np.float32(2.5)})
  writer.write_images(3, {"overlay": np.zeros((1, 4, 4, 3), np.uint8)})
  writer.flush()
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows == [{"step": 3, "loss": 2.5}]
  assert not list(tmp_path.glob("events.out.tfevents*"))


def test_training_runs_without_tensorflow(tmp_path, monkeypatch, fast_compile):  # noqa: F811
  """The loop itself (progress report, flushing) needs no TensorFlow: 2 steps, losses logged."""
  _without_tensorflow(monkeypatch)
  config = tiny_config(**{"mesh": MESH, "num_epochs": 1,
                          "steps_per_epoch": 2, "optim.warmup_steps": 1,
                          "evals.retrieval.every_steps": 0,
                          "evals.segmentation.every_steps": 0})
  loop.train_and_evaluate(config, str(tmp_path))
  assert sorted(read_metrics(str(tmp_path))) == [1, 2]
  assert not list(tmp_path.glob("events.out.tfevents*"))
