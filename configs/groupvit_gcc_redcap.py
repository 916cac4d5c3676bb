"""The released ``group_vit_gcc_redcap_30e`` recipe (spec section 4).

2-stage GroupViT-S without the multi-label loss (the reference found it better for RedCaps),
CC3M + CC12M + RedCaps12M (6,326 updates per epoch at batch 4096), 30 epochs, 2 warm-up epochs.

  python -m groupvit_jax.train --config configs/groupvit_gcc_redcap.py --workdir runs/redcap \
    --config.input.train_shards='gs://BUCKET/{cc3m,cc12m,redcaps12m}/*.tar'
"""

from groupvit_jax.model_config import gcc_redcap
from groupvit_jax.train import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False)
  config = config_lib.base_config(gcc_redcap(), datasets=("cc3m", "cc12m", "redcaps12m"))
  if arg.runlocal:
    config_lib.make_local(config)
  return config
