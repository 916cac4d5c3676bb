"""The released ``group_vit_gcc_yfcc_30e`` recipe (spec section 4).

2-stage GroupViT-S (64 then 8 group tokens), multi-label contrastive loss with K=3 prompts,
CC3M + CC12M + YFCC14M (6,997 updates per epoch at batch 4096), 30 epochs, 2 warm-up epochs.

  python -m groupvit_jax.train --config configs/groupvit_gcc_yfcc.py --workdir runs/yfcc \
    --config.input.train_shards='gs://BUCKET/{cc3m,cc12m,yfcc14m}/{00000..01999}.tar'

``:runlocal`` shrinks it to a synthetic-data smoke run on this machine. ``:microbatch=N`` keeps the
batch of 4096 on small hardware (one 8-GPU host, a v4-8): the step encodes in chunks of N samples
and back-propagates cached feature gradients, the same loss and gradient as the full batch, with
bf16 compute; blocks are not rematerialised (with chunks remat saves no memory in the compiled
estimates and costs a forward; docs/training.md, "The batch of 4096 on small hardware").
"""

from groupvit_jax.model_config import gcc_yfcc
from groupvit_jax.train import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, microbatch=0)
  config = config_lib.base_config(gcc_yfcc(), datasets=("cc3m", "cc12m", "yfcc14m"))
  if arg.microbatch:
    config.microbatch_size = arg.microbatch
    config.model.dtype = "bfloat16"
  if arg.runlocal:
    config_lib.make_local(config)
    if arg.microbatch:  # two chunks of the smoke run's batch
      config.microbatch_size = config.input.batch_size // 2
  return config
