"""A seconds-long configuration for tests and smoke runs: the tiny model (width 32, 32 px
images, 1 block per stage) with the multi-label loss (K=3), synthetic data, batch 16, 6 steps.

  python -m groupvit_jax.train --config configs/tiny.py --workdir /tmp/tiny
  python -m groupvit_jax.train --config configs/tiny.py --workdir /tmp/tiny \
    --config.input.backend=webdataset --config.input.train_shards='/data/shards/*.tar'
"""

from groupvit_jax.model_config import tiny
from groupvit_jax.train import config_lib


def get_config(arg=None):
  del arg
  config = config_lib.base_config(tiny().replace(multi_label=3))
  config.steps_per_epoch = 3
  config.num_epochs = 2  # total_steps = 6
  config.optim.warmup_steps = 2
  config.log_every_steps = 1
  config.input.backend = "synthetic"
  config.input.batch_size = 16
  config.input.shuffle_buffer = 16
  config.input.cycle_length = 2
  config.input.num_workers = 0
  config.ckpt.every_steps = 2
  config.ckpt.keep = 2
  config.evals.retrieval.every_steps = 3
  config.evals.retrieval.num_samples = 16
  config.evals.retrieval.batch_size = 8
  config.evals.retrieval.resize = 36
  return config
