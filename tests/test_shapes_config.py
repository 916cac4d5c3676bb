"""shapes_config: make demo's configuration, its presets, and the demo from an installed copy."""

import os
import shutil
import subprocess
import sys

import pytest

from groupvit_jax import shapes_config
from groupvit_jax.model_config import GroupViTConfig, TextConfig, VisionConfig
from input_pipeline import synthetic_world as sw

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# make demo's model as it was measured in experiments/results/shapes_demo_notes.md (round 6:
# ``stages=1,depths=0/0/0,groups=16/16,patch=4,assign_std=0.2,group_residual=False,vit_depth=2,
# steps=350`` on the 2-stage 1/2/1 defaults of that time), written out field by field.
_COMMON = dict(img_size=64, patch_size=4, embed_dim=96, drop_path_rate=0.0, hard_assignment=True,
               gumbel=True, pos_embed_init="normal", assign_qk_init_std=0.2,
               group_token_residual=False)
_TEXT = TextConfig(context_length=24, width=64, layers=2, heads=4)
DEMO_GROUPVIT = GroupViTConfig(
    vision=VisionConfig(depths=(0, 0), num_heads=(4, 4), num_group_tokens=(16, 0),
                        num_output_groups=(16,), **_COMMON),
    text=_TEXT, proj_dim=128, proj_hidden_dim=512, proj_num_layers=1, multi_label=3)
DEMO_VIT = DEMO_GROUPVIT.replace(vision=VisionConfig(depths=(2,), num_heads=(4,),
                                                     num_group_tokens=(0,), num_output_groups=(),
                                                     **_COMMON))
DEMO_RECIPE = {"seed": 0, "total_steps": 700, "steps_per_epoch": 700, "num_epochs": 1,
               "log_every_steps": 50, "input.backend": "webdataset", "input.batch_size": 64,
               "input.shuffle_buffer": 2000, "input.num_workers": 0,
               "input.augment.crop_scale": (0.7, 1.0), "input.augment.hflip": 0.0,
               "input.augment.randaugment": "", "input.augment.random_erasing": 0.0,
               "optim.base_lr": 5e-4, "optim.warmup_lr": 1e-5, "optim.min_lr": 1e-5,
               "optim.reference_batch": 64, "optim.warmup_steps": 70, "optim.weight_decay": 0.05,
               "ckpt.every_steps": 500, "ckpt.keep": 1, "evals.retrieval.every_steps": 0}


def _get(config, dotted):
  for key in dotted.split("."):
    config = config[key]
  return tuple(config) if isinstance(config, (list, tuple)) else config


def _model(config) -> GroupViTConfig:
  return GroupViTConfig.from_dict(config.model.to_dict())


@pytest.mark.parametrize("arg, want", [(None, DEMO_GROUPVIT), ("vit=True", DEMO_VIT)])
def test_default_is_the_demo_model_and_recipe_as_measured(arg, want):
  config = shapes_config.get_config(arg)
  assert _model(config) == want
  assert {k: _get(config, k) for k in DEMO_RECIPE} == DEMO_RECIPE
  named = shapes_config.get_config(",".join(filter(None, ["preset=demo", arg])))
  assert named.to_dict() == config.to_dict()


def test_presets_are_the_earlier_models_of_the_notes():
  """two_stage_no_blocks (round 5): 2 stages without blocks, 8 px patches, 16 -> 4 groups, the
  reference's residual; two_stage_blocks (round 3): the same with 1 + 2 + 1 blocks and the
  reference's assignment init, on the world without background nouns."""
  no_blocks = _model(shapes_config.get_config("preset=two_stage_no_blocks")).vision
  assert (no_blocks.depths, no_blocks.num_group_tokens, no_blocks.num_output_groups) == (
      (0, 0, 0), (16, 4, 0), (16, 4))
  assert (no_blocks.patch_size, no_blocks.assign_qk_init_std) == (8, 0.2)
  assert no_blocks.group_token_residual
  blocks = _model(shapes_config.get_config("preset=two_stage_blocks")).vision
  assert blocks == VisionConfig(**{**_COMMON, "patch_size": 8, "assign_qk_init_std": 0.02,
                                   "group_token_residual": True}, depths=(1, 2, 1),
                                num_heads=(4, 4, 4), num_group_tokens=(16, 4, 0),
                                num_output_groups=(16, 4))
  vit = _model(shapes_config.get_config("preset=two_stage_blocks,vit=True")).vision
  assert vit.depths == (4,)
  for name in ("two_stage_no_blocks", "two_stage_blocks"):
    assert shapes_config.get_config(f"preset={name}").total_steps == 900
  assert sw.WORLDS[shapes_config.PRESETS["demo"].world] == sw.DEMO_WORLD
  assert sw.DEMO_WORLD == sw.NAMED_BACKGROUNDS_WORLD != sw.COLOURED_KINDS_WORLD


def test_user_arguments_come_after_the_preset_and_unknown_ones_are_named():
  config = shapes_config.get_config("preset=two_stage_blocks,patch=4,steps=10")
  assert _model(config).vision.patch_size == 4 and config.total_steps == 10
  with pytest.raises(ValueError, match="preset='round6' unknown"):
    shapes_config.get_config("preset=round6")
  with pytest.raises(ValueError, match="'stage' unknown"):
    shapes_config.get_config("stage=2")


def test_configs_shapes_file_is_the_package_config():
  from groupvit_jax.train import config_lib  # pylint: disable=g-import-not-at-top
  for arg in (None, "vit=True", "preset=two_stage_blocks,hard=False"):
    assert (config_lib.load_config(os.path.join(REPO, "configs", "shapes.py"), arg).to_dict()
            == shapes_config.get_config(arg).to_dict())


@pytest.mark.slow
def test_demo_resolves_its_config_from_a_non_editable_install(tmp_path):
  """``pip install .`` copies the package: the demo must not read files of the checkout."""
  source, target = tmp_path / "source", tmp_path / "site"
  source.mkdir()  # a copy of what pip reads: the build writes build/ next to its source
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(os.path.join(REPO, name), source / name)
  for package in ("groupvit_jax", "input_pipeline"):
    shutil.copytree(os.path.join(REPO, package), source / package,
                    ignore=shutil.ignore_patterns("__pycache__"))
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                  "--no-build-isolation", "--no-compile", "--target", str(target), str(source)],
                 check=True, capture_output=True, timeout=600, cwd=tmp_path)
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  script = (
      "import groupvit_jax, groupvit_jax.demo as demo, groupvit_jax.shapes_config as sc\n"
      f"assert groupvit_jax.__file__.startswith({str(target)!r}), groupvit_jax.__file__\n"
      "world, arg = demo.preset('demo')\n"
      "cfg = sc.get_config(arg)\n"
      "print(cfg.total_steps, cfg.model.vision.patch_size, world.background_nouns)\n")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["PYTHONPATH"] = str(target)
  out = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ["700", "4", "True"]
  helped = subprocess.run([sys.executable, "-m", "groupvit_jax.demo", "--help"], cwd=elsewhere,
                          env=env, capture_output=True, text=True, timeout=300)
  assert helped.returncode == 0 and "two_stage_blocks" in helped.stdout, helped.stderr[-2000:]
