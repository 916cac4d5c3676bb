"""What the files in ``configs/`` share: the full key set with the reference recipe's values
(``base_config``), ``parse_arg`` for coarse ``--config file.py:key=value`` switches, and
``validate_config``. It lives in the package so config files load from any working directory.

Every key the trainer reads is declared here; ``--config.x=y`` overrides fail on unknown keys
(the config is locked by the entry point).

Resume order (first that applies):
  1. the latest checkpoint in ``WORKDIR/checkpoints`` (the same command resumes a run);
  2. ``ckpt.resume_from``: a checkpoint step directory or another workdir (full train state,
     including the data iterator position);
  3. ``ckpt.model_init``: any weights ``groupvit_jax.load_pretrained`` reads (parameters and
     BatchNorm statistics only; the optimizer starts fresh at step 0);
  4. random initialisation from ``seed``.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from groupvit_jax import sharding
from groupvit_jax.optim import REFERENCE_BATCH
from groupvit_jax.model_config import GroupViTConfig
from groupvit_jax.train import chunked
from groupvit_jax.train.evals import EVAL_TYPES

# webdataset lengths of the official training data (spec section 4).
DATASET_LENGTHS = {"cc3m": 2_891_445, "cc12m": 11_156_203, "yfcc14m": 14_615_499,
                   "redcaps12m": 11_866_987}


def steps_per_epoch(datasets, batch: int = REFERENCE_BATCH) -> int:
  """``floor(total_len / global_batch)`` as the reference counts an epoch."""
  return sum(DATASET_LENGTHS[d] for d in datasets) // batch


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """``'stages=1,hard=False,runlocal'`` -> ConfigDict typed after ``defaults`` (big_vision style).

  A bare ``key`` sets a bool default to True. Unknown keys are an error.
  """
  out = ml_collections.ConfigDict(defaults)
  if not arg:
    return out
  for item in arg.split(","):
    item = item.strip()
    if not item:
      continue
    key, eq, value = item.partition("=")
    if key not in defaults:
      raise ValueError(f"config argument {key!r} unknown; known: {sorted(defaults)}")
    default = defaults[key]
    if not eq:
      if not isinstance(default, bool):
        raise ValueError(f"config argument {key!r} needs a value ({key}=...)")
      out[key] = True
    elif isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config argument {key}={value!r}: expected true/false")
      out[key] = value.lower() in ("true", "1")
    else:
      out[key] = type(default)(value)
  return out


def load_config(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of the config file at ``path`` (like ``--config path:arg``)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  name = "config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such config file")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def model_section(model: GroupViTConfig) -> ml_collections.ConfigDict:
  """``config.model``: the ``GroupViTConfig`` fields (read back with ``GroupViTConfig.from_dict``)."""
  return ml_collections.ConfigDict(model.to_dict())


def base_config(model: GroupViTConfig, *, datasets=("cc3m", "cc12m"), num_epochs: int = 30,
                warmup_epochs: int = 2) -> ml_collections.ConfigDict:
  """The reference recipe (spec section 4) around ``model``."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Samples of the global batch per chunk (over all devices; 0 = off): the step encodes in chunks
  # and back-propagates cached feature gradients, giving the full-batch gradient with one chunk's
  # activation memory (groupvit_jax/train/chunked.py, docs/training.md).
  c.microbatch_size = 0
  c.steps_per_epoch = steps_per_epoch(datasets)
  c.num_epochs = num_epochs
  c.total_steps = c.get_ref("steps_per_epoch") * c.get_ref("num_epochs")
  c.log_every_steps = 50
  # Non-finite loss/gradient: skip up to this many updates in a row (state unchanged, counted as
  # nonfinite_skipped_total), stop on the next one. 0 = stop on the first.
  c.max_consecutive_nonfinite_steps = 0
  c.jax_cache_dir = ""  # persistent compilation cache ('' = off)
  c.peak_flops_per_device = config_dict.placeholder(float)  # for MFU; None = from device kind

  c.model = model_section(model)

  c.input = ml_collections.ConfigDict()
  c.input.backend = "webdataset"  # webdataset | tfds | synthetic
  c.input.train_shards = ""  # glob / brace range / comma list / JSON list; local or gs:// etc.
  c.input.batch_size = REFERENCE_BATCH  # global, over all hosts
  c.input.image_size = c.model.vision.get_ref("img_size")
  c.input.multi_label = c.model.get_ref("multi_label")
  c.input.context_length = c.model.text.get_ref("context_length")
  c.input.shuffle_buffer = 10_000  # per host (split over its workers); webdataset's buffer
  c.input.cycle_length = 4  # shards read at once per worker
  c.input.num_workers = 8  # decode processes per host (0 = in the main process)
  c.input.worker_buffer_size = 2  # batches buffered per worker
  c.input.tfds_name = ""  # TFDS backend: prepared dataset name or version directory
  c.input.tfds_data_dir = ""
  c.input.tfds_split = "train"
  c.input.tfds_image_key = "image"
  c.input.tfds_text_key = "caption"
  c.input.augment = ml_collections.ConfigDict()
  c.input.augment.crop_scale = (0.08, 1.0)
  c.input.augment.crop_ratio = (3 / 4, 4 / 3)
  c.input.augment.hflip = 0.5
  c.input.augment.randaugment = "rand-m9-mstd0.5-inc1"  # '' = off
  c.input.augment.random_erasing = 0.25  # probability; 0 = off

  c.optim = ml_collections.ConfigDict()
  c.optim.base_lr = 1.6e-3
  c.optim.warmup_lr = 4e-6
  c.optim.min_lr = 4e-5
  c.optim.reference_batch = REFERENCE_BATCH  # every rate is scaled by batch_size / this
  c.optim.warmup_steps = c.get_ref("steps_per_epoch") * warmup_epochs
  c.optim.weight_decay = 0.05
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.clip_norm = 5.0

  c.mesh = (("data", -1), ("fsdp", 1))
  c.sharding_rules = tuple(sharding.DEFAULT_RULES)

  c.ckpt = ml_collections.ConfigDict()
  c.ckpt.every_steps = 1000
  c.ckpt.keep = 3
  c.ckpt.async_save = True
  c.ckpt.resume_from = ""
  c.ckpt.model_init = ""

  c.evals = ml_collections.ConfigDict()
  c.evals.retrieval = retrieval_eval()
  c.evals.segmentation = segmentation_eval()
  return c


def retrieval_eval(shards: str = "", every_steps: int = 5000) -> ml_collections.ConfigDict:
  """Image-text retrieval on held-out shards (disabled while ``shards`` is empty)."""
  return ml_collections.ConfigDict(dict(
      type="retrieval", every_steps=every_steps, shards=shards, num_samples=1024, batch_size=256,
      resize=256))


def segmentation_eval(dataset: str = "voc", data_root: str = "", every_steps: int = 5000,
                      limit: int = 0) -> ml_collections.ConfigDict:
  """Zero-shot segmentation (mIoU + pictures) on a registered dataset, e.g. the PASCAL VOC sample:
  ``--config.evals.segmentation.data_root=../shared/data/VOCdevkit``. Off while ``data_root`` is
  empty."""
  return ml_collections.ConfigDict(dict(
      type="segmentation", every_steps=every_steps, dataset=dataset, data_root=data_root,
      split="val", protocol="", limit=limit, num_images=4))


def validate_config(config) -> None:
  """Checks that need no devices (the trainer checks the mesh/batch fit at start)."""
  problems = []
  if config.total_steps <= 0:
    problems.append(f"total_steps must be > 0, got {config.total_steps}")
  if config.optim.warmup_steps < 0 or config.optim.warmup_steps >= max(config.total_steps, 1):
    problems.append(f"optim.warmup_steps {config.optim.warmup_steps} must be in "
                    f"[0, total_steps={config.total_steps})")
  from input_pipeline.pipeline import BACKENDS  # pylint: disable=g-import-not-at-top
  if config.input.backend not in BACKENDS:
    problems.append(f"input.backend must be one of {sorted(BACKENDS)}, got "
                    f"{config.input.backend!r}")
  if config.input.backend == "webdataset" and not str(config.input.train_shards).strip():
    problems.append("input.train_shards is empty (webdataset backend): pass "
                    "--config.input.train_shards='/data/cc3m/{00000..00331}.tar'")
  if config.input.backend == "tfds" and not config.input.tfds_name:
    problems.append("input.tfds_name is empty (tfds backend)")
  if config.input.batch_size <= 0:
    problems.append(f"input.batch_size must be > 0, got {config.input.batch_size}")
  if config.max_consecutive_nonfinite_steps < 0:
    problems.append("max_consecutive_nonfinite_steps must be >= 0")
  if config.get("microbatch_size", 0):
    try:
      chunked.check_microbatch(int(config.input.batch_size), int(config.microbatch_size))
    except ValueError as e:
      problems.append(str(e))
  if config.log_every_steps <= 0:
    problems.append("log_every_steps must be > 0")
  if config.ckpt.every_steps <= 0 or config.ckpt.keep < 1:
    problems.append("ckpt.every_steps must be > 0 and ckpt.keep >= 1")
  if config.model.multi_label < 0:
    problems.append("model.multi_label must be >= 0")
  for name, ev in config.evals.items():
    if ev.every_steps < 0:
      problems.append(f"evals.{name}.every_steps must be >= 0 (0: off), got {ev.every_steps}")
    if ev.type not in EVAL_TYPES:
      problems.append(f"evals.{name}.type {ev.type!r} unknown; known: {sorted(EVAL_TYPES)}")
  try:
    GroupViTConfig.from_dict(config.model.to_dict())
  except (ValueError, TypeError) as e:
    problems.append(f"model: {e}")
  if problems:
    raise ValueError("invalid config:\n  " + "\n  ".join(problems))


def make_local(config) -> None:
  """``:runlocal``: a few steps on synthetic data at batch 8 (checks a recipe end to end)."""
  config.input.backend = "synthetic"
  config.input.batch_size = 8
  config.input.num_workers = 0
  config.total_steps = 10
  config.optim.warmup_steps = 2
  config.log_every_steps = 1
  config.ckpt.every_steps = 5
