"""``make demo``'s configuration (groupvit_jax/shapes_config.py, where the presets and arguments
are documented), for the trainer:

  python -m groupvit_jax.train --config configs/shapes.py --workdir runs/shapes  # the demo's model
  configs/shapes.py:hard=False                     # soft assignment
  configs/shapes.py:multi_label=0                  # contrastive loss only
  configs/shapes.py:stages=2,groups=16/8           # 2 grouping stages
  configs/shapes.py:vit=True                       # the plain-ViT baseline (no grouping)
  configs/shapes.py:preset=two_stage_blocks        # a named preset (shapes_config.PRESETS)

Training needs the world's shards (``--config.input.train_shards``): ``make demo`` writes them, or
``python -m input_pipeline.world_files --out DIR``.
"""

from groupvit_jax.shapes_config import get_config  # noqa: F401  pylint: disable=unused-import
