"""A small GroupViT trained from scratch on the synthetic shapes world with text supervision only
(``make demo``; see groupvit_jax/demo.py and input_pipeline/synthetic_world.py).

Arguments select the variants of the ablation study in miniature
(experiments/shapes_ablations.py):

  configs/shapes.py                         # 2-stage GroupViT, hard assignment, multi-label K=3
  configs/shapes.py:hard=False              # soft assignment
  configs/shapes.py:multi_label=0           # contrastive loss only
  configs/shapes.py:stages=1                # 1-stage GroupViT
  configs/shapes.py:vit=True                # the plain-ViT baseline (no grouping)

The model (round 3 of experiments/results/shapes_demo_notes.md): width 96, 64 px images in 8 px
patches, 1 + 2 + 1 Transformer blocks, 16 group tokens then 4, and a linear projection head
(``proj_num_layers=1``, an option of the official ``ProjectMLP``). Four final groups rather
than eight, because the losses see the mean of the final groups: with eight, most hold no
pixels and the class directions are learnt on their global tokens instead of on the objects'
groups; the BatchNorm head, whose statistics come from pooled tokens, distorts single groups.
The ViT baseline has ``vit_depth=4`` blocks.

The lead of round 5: ``depths=0/0/0,assign_std=0.2`` (no Transformer blocks: the image encoder
is the patch embedding and the two GroupingBlocks, 478k parameters, as many as the 4-block ViT;
the assignment's q/k projections start at std 0.2 instead of the reference's 0.02). Blocks
before or between the groupings let every token attend to the whole image, so each group's
embedding carries the image's classes; without them 74-85% of object groups are named right,
against 33-44% with blocks between them. Other probing knobs: ``gumbel=False`` trains with the
plain argmax assignment; ``depths`` / ``groups`` set blocks and group tokens per stage.

The lead of round 6, ``make demo``'s default (groupvit_jax/demo.py VARIANTS['round6']):
``stages=1,depths=0/0/0,groups=16/16,patch=4,assign_std=0.2,group_residual=False,vit_depth=2``.
``group_residual=False`` drops the reference's ``z = out + p`` in the GroupingBlock (spec 1.5
step 5), so a segment is the mean of its own tokens and carries nothing of the rest of the image;
``patch`` is the patch size (8 by default, 4 in round 6: thin shapes need the finer grid);
``vit_depth=2`` gives the ViT baseline the round-6 GroupViT's parameter count.

The world's captions name colours, relations and counts, so colour jitter, RandAugment and
flips are off (they would make captions false); only a mild random crop remains.
"""

from groupvit_jax.model_config import GroupViTConfig, TextConfig, VisionConfig
from groupvit_jax.train import config_lib

HEADS = 4


def shapes_model(stages: int, hard: bool, multi_label: int, vit: bool, width: int = 96,
                 text_width: int = 64, text_layers: int = 2, image_size: int = 64,
                 proj_layers: int = 1, pos_embed: str = "normal", depths: str = "1/2/1",
                 groups: str = "16/4", gumbel: bool = True, assign_std: float = 0.02,
                 vit_depth: int = 4, group_residual: bool = True,
                 patch: int = 8) -> GroupViTConfig:
  """``depths`` / ``groups``: the 2-stage model's blocks per stage and group tokens per grouping
  stage ('/'-separated); the 1-stage model keeps the same total depth. ``vit_depth``: blocks of
  the ViT baseline (4: the default GroupViT's depth, and as many parameters as the block-free
  ``depths=0/0/0`` GroupViT)."""
  common = dict(img_size=image_size, patch_size=patch, embed_dim=width, drop_path_rate=0.0,
                hard_assignment=hard, gumbel=gumbel, pos_embed_init=pos_embed,
                assign_qk_init_std=assign_std, group_token_residual=group_residual)
  d = tuple(int(v) for v in depths.split("/"))
  g = tuple(int(v) for v in groups.split("/"))
  if len(d) != 3 or len(g) != 2:
    raise ValueError(f"depths needs 3 entries and groups 2, got {depths!r} and {groups!r}")
  if vit:
    vision = VisionConfig(depths=(vit_depth,), num_heads=(HEADS,), num_group_tokens=(0,),
                          num_output_groups=(), **common)
  elif stages == 1:  # the first stage's tokens, merged straight to the final number of groups
    vision = VisionConfig(depths=(d[0], d[1] + d[2]), num_heads=(HEADS,) * 2,
                          num_group_tokens=(g[0], 0), num_output_groups=(g[1],), **common)
  elif stages == 2:
    vision = VisionConfig(depths=d, num_heads=(HEADS,) * 3, num_group_tokens=g + (0,),
                          num_output_groups=g, **common)
  else:
    raise ValueError(f"stages must be 1 or 2, got {stages}")
  text = TextConfig(context_length=24, width=text_width, layers=text_layers, heads=HEADS)
  return GroupViTConfig(vision=vision, text=text, proj_dim=128, proj_hidden_dim=512,
                        proj_num_layers=proj_layers, multi_label=multi_label)


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, stages=2, hard=True, multi_label=3, vit=False, steps=900,
                             batch=64, width=96, text_width=64, text_layers=2, lr=5e-4, seed=0,
                             proj_layers=1, pos_embed="normal", depths="1/2/1", groups="16/4",
                             gumbel=True, assign_std=0.02, vit_depth=4,
                             group_residual=True, patch=8)
  model = shapes_model(arg.stages, arg.hard, arg.multi_label, arg.vit, arg.width, arg.text_width,
                       arg.text_layers, proj_layers=arg.proj_layers, pos_embed=arg.pos_embed,
                       depths=arg.depths, groups=arg.groups, gumbel=arg.gumbel,
                       assign_std=arg.assign_std, vit_depth=arg.vit_depth,
                       group_residual=arg.group_residual, patch=arg.patch)
  config = config_lib.base_config(model)
  config.seed = arg.seed
  config.steps_per_epoch = arg.steps
  config.num_epochs = 1
  config.log_every_steps = 50
  config.input.backend = "webdataset"
  config.input.train_shards = ""  # set by the demo: DATA/train/shapes-*.tar
  config.input.batch_size = arg.batch
  config.input.shuffle_buffer = 2000
  config.input.num_workers = 0  # measured: a decode worker does not speed up 2 cores
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
  config.evals.retrieval.every_steps = 10**9  # off (the demo evaluates segmentation at the end)
  return config
