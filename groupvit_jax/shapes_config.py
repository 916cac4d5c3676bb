"""The training configuration of ``make demo``: a small GroupViT trained from scratch on the
synthetic shapes world (input_pipeline/synthetic_world.py) with text supervision only. It lives in
the package so the demo runs from an installed copy; configs/shapes.py exposes it to the trainer
(``python -m groupvit_jax.train --config configs/shapes.py:ARG``).

``get_config()`` with no argument is the demo's model: a 1-stage GroupViT without Transformer
blocks (the image encoder is the patch embedding and one GroupingBlock), 64 px images in 4 px
patches, 16 group tokens merged to 16 segments, each segment the mean of its own tokens
(``group_residual=False``), assignment q/k projections started at std 0.2; the pixel-wise ViT
baseline (``vit=True``) has 2 blocks, as many parameters. How the demo got there is told in
experiments/results/shapes_demo_notes.md.

Arguments (``key=value``, comma-separated, after the preset's):
  preset=NAME            one of ``PRESETS`` (default ``demo``)
  hard=False             soft assignment (Table 1)
  multi_label=0          contrastive loss only (Table 3)
  stages=2               2 grouping stages (Table 2; ``groups`` sets group tokens per stage)
  vit=True               the plain-ViT baseline, no grouping (Table 4)
  depths=A/B/C, groups=S1/S2, patch, width, assign_std, group_residual, gumbel, pos_embed,
  workers (decode worker processes), ...

The world's captions name colours, relations and counts, so colour jitter, RandAugment and flips
are off (they would make captions false); only a mild random crop remains.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from groupvit_jax.model_config import GroupViTConfig, TextConfig, VisionConfig
from groupvit_jax.train import config_lib

HEADS = 4
# Blocks of the ViT baseline of preset ``reference_any_colour``: as many image-encoder parameters
# as its GroupViT (tests/test_train_configs.py checks 5%).
VIT_DEPTH_REFERENCE = 9

# make demo trains its ViT baseline for this many steps unless --steps/--baseline-steps say
# otherwise: its 256 tokens cost 3.7x the GroupViT's step, and the demo has ~20 minutes on 2 cores.
# (Trained 700 steps on seed 0 it scored 0.203 against 0.571 for the GroupViT: README.)
BASELINE_STEPS = 350

# The arguments of the demo's model (``preset=demo``) and their meaning.
DEFAULTS: dict[str, Any] = dict(
    stages=1, hard=True, multi_label=3, vit=False,
    steps=700,  # 350 gave 0.51-0.59 over seeds and machines, 700 moved every seed up (demo_seeds)
    batch=64, width=96, text_width=64, text_layers=2, lr=5e-4, seed=0,
    proj_layers=1,  # a linear projection head (an option of the official ProjectMLP)
    pos_embed="normal",
    depths="0/0/0",  # blocks per stage of the 2-stage model; the 1-stage model has the same total
    groups="16/16",  # group tokens per grouping stage (1 stage: tokens / segments)
    gumbel=True, assign_std=0.2,
    vit_depth=2,  # the ViT baseline's blocks: the GroupViT's parameter count
    group_residual=False,  # a departure from the reference (model_config.REFERENCE_DEPARTURES)
    patch=4,
    workers=0)  # decode worker processes; measured: one does not speed up 2 cores


@dataclasses.dataclass(frozen=True)
class ShapesPreset:
  """A named configuration: the synthetic world it trains on (synthetic_world.WORLDS) and the
  arguments that differ from ``DEFAULTS``."""

  world: str
  args: dict[str, Any]
  about: str


PRESETS = {
    "demo": ShapesPreset("named_backgrounds", {}, "make demo's model (see the module docstring)"),
    "two_stage_no_blocks": ShapesPreset(
        "named_backgrounds",
        dict(stages=2, groups="16/4", patch=8, group_residual=True, vit_depth=4, steps=900),
        "2 stages without Transformer blocks, 8 px patches, 16 then 4 segments, the reference's "
        "segment residual; the ViT baseline has 4 blocks"),
    "two_stage_blocks": ShapesPreset(
        "coloured_kinds",
        dict(stages=2, depths="1/2/1", groups="16/4", patch=8, assign_std=0.02,
             group_residual=True, vit_depth=4, steps=900),
        "the 2-stage model with 1 + 2 + 1 Transformer blocks and the reference's assignment "
        "(the configuration of experiments/results/shapes_ablations_two_stage_blocks.md)"),
    # The released design scaled down, for one GPU for a few minutes (docs/shapes_demo.md): does
    # grouping emerge where a kind can only be named from its geometry?
    "reference_any_colour": ShapesPreset(
        "any_colour",
        dict(stages=2, depths="2/2/1", groups="32/8", patch=4, width=128, assign_std=0.02,
             group_residual=True, gumbel=True, vit_depth=VIT_DEPTH_REFERENCE, steps=2000,
             batch=256, lr=1e-3, workers=12),
        "the released design (Transformer blocks before, between and after 2 grouping stages, "
        "32 then 8 segments, the reference's segment residual and assignment init) on the "
        "any-colour world, sized for a few minutes of one GPU; the ViT baseline has as many "
        "parameters"),
}
DEFAULT_PRESET = "demo"


def preset_of(arg: str | None) -> str:
  """The ``preset=NAME`` in ``arg`` (the last one), else ``DEFAULT_PRESET``."""
  name = DEFAULT_PRESET
  for item in (arg or "").split(","):
    key, _, value = item.strip().partition("=")
    if key == "preset":
      name = value
  if name not in PRESETS:
    raise ValueError(f"config argument preset={name!r} unknown; known: {sorted(PRESETS)}")
  return name


def shapes_model(arg) -> GroupViTConfig:
  """The GroupViT (or, with ``vit``, the ViT baseline) of the parsed arguments ``arg``."""
  common = dict(img_size=64, patch_size=arg.patch, embed_dim=arg.width, drop_path_rate=0.0,
                hard_assignment=arg.hard, gumbel=arg.gumbel, pos_embed_init=arg.pos_embed,
                assign_qk_init_std=arg.assign_std, group_token_residual=arg.group_residual)
  d = tuple(int(v) for v in arg.depths.split("/"))
  g = tuple(int(v) for v in arg.groups.split("/"))
  if len(d) != 3 or len(g) != 2:
    raise ValueError(f"depths needs 3 entries and groups 2, got {arg.depths!r} and {arg.groups!r}")
  if arg.vit:
    vision = VisionConfig(depths=(arg.vit_depth,), num_heads=(HEADS,), num_group_tokens=(0,),
                          num_output_groups=(), **common)
  elif arg.stages == 1:  # the first stage's tokens, merged straight to the final number of groups
    vision = VisionConfig(depths=(d[0], d[1] + d[2]), num_heads=(HEADS,) * 2,
                          num_group_tokens=(g[0], 0), num_output_groups=(g[1],), **common)
  elif arg.stages == 2:
    vision = VisionConfig(depths=d, num_heads=(HEADS,) * 3, num_group_tokens=g + (0,),
                          num_output_groups=g, **common)
  else:
    raise ValueError(f"stages must be 1 or 2, got {arg.stages}")
  text = TextConfig(context_length=24, width=arg.text_width, layers=arg.text_layers, heads=HEADS)
  return GroupViTConfig(vision=vision, text=text, proj_dim=128, proj_hidden_dim=512,
                        proj_num_layers=arg.proj_layers, multi_label=arg.multi_label)


def get_config(arg=None):
  preset = PRESETS[preset_of(arg)]
  arg = config_lib.parse_arg(arg, preset=DEFAULT_PRESET, **{**DEFAULTS, **preset.args})
  config = config_lib.base_config(shapes_model(arg))
  config.seed = arg.seed
  config.steps_per_epoch = arg.steps
  config.num_epochs = 1
  config.log_every_steps = 50
  config.input.backend = "webdataset"
  config.input.train_shards = ""  # set by the demo: DATA/train/shapes-*.tar
  config.input.batch_size = arg.batch
  config.input.shuffle_buffer = 2000
  config.input.num_workers = arg.workers
  config.input.augment.crop_scale = (0.7, 1.0)
  config.input.augment.hflip = 0.0
  config.input.augment.randaugment = ""
  config.input.augment.random_erasing = 0.0
  config.optim.base_lr = arg.lr
  config.optim.warmup_lr = 1e-5
  config.optim.min_lr = 1e-5
  config.optim.reference_batch = arg.batch  # rates as given, not rescaled by batch/4096
  config.optim.warmup_steps = config.get_ref("total_steps") // 10  # follows --config.total_steps
  config.optim.weight_decay = 0.05
  config.ckpt.every_steps = 500
  config.ckpt.keep = 1
  config.evals.retrieval.every_steps = 0  # off (the demo evaluates segmentation at the end)
  return config
