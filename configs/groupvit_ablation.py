"""The paper's ablations (section 4.2; Tables 1-3): 1-stage GroupViT on CC3M + CC12M by default.

Arguments after the file name pick the variant (defaults = the paper's best ablation model:
1 stage, hard assignment, multi-label loss K=3, 64 group tokens, 8 output tokens):

  configs/groupvit_ablation.py:hard=False              # Table 1: soft assignment
  configs/groupvit_ablation.py:multi_label=0           # Table 1: no multi-label loss
  configs/groupvit_ablation.py:group_tokens=16,output_tokens=4   # Table 2 (also 16/8, 32/8, 64/16)
  configs/groupvit_ablation.py:stages=2                # Table 3: the 2-stage model (64 -> 8)
  configs/groupvit_ablation.py:data=cc_yfcc            # Table 3: CC + YFCC14M

The training recipe is the released one (30 epochs, 2 warm-up, batch 4096); the paper does not
list separate hyper-parameters for its ablations.
"""

from groupvit_jax.model_config import GroupViTConfig, VisionConfig
from groupvit_jax.train import config_lib

DATA = {"cc": ("cc3m", "cc12m"), "cc_yfcc": ("cc3m", "cc12m", "yfcc14m")}


def ablation_model(stages: int, hard: bool, multi_label: int, group_tokens: int,
                   output_tokens: int) -> GroupViTConfig:
  if stages == 1:  # group_tokens mixed down to output_tokens after 6 blocks, then 6 blocks
    vision = VisionConfig(depths=(6, 6), num_heads=(6, 6), num_group_tokens=(group_tokens, 0),
                          num_output_groups=(output_tokens,), hard_assignment=hard)
  elif stages == 2:  # the released layout: group_tokens groups, then output_tokens groups
    vision = VisionConfig(depths=(6, 3, 3), num_heads=(6, 6, 6),
                          num_group_tokens=(group_tokens, output_tokens, 0),
                          num_output_groups=(group_tokens, output_tokens), hard_assignment=hard)
  else:
    raise ValueError(f"stages must be 1 or 2, got {stages}")
  return GroupViTConfig(vision=vision, multi_label=multi_label)


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, stages=1, hard=True, multi_label=3, group_tokens=64,
                             output_tokens=8, data="cc", runlocal=False)
  if arg.data not in DATA:
    raise ValueError(f"data must be one of {sorted(DATA)}, got {arg.data!r}")
  model = ablation_model(arg.stages, arg.hard, arg.multi_label, arg.group_tokens,
                         arg.output_tokens)
  config = config_lib.base_config(model, datasets=DATA[arg.data])
  if arg.runlocal:
    config_lib.make_local(config)
  return config
