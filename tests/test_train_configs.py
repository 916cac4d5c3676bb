"""Training configs: every file resolves to a valid model and recipe, ablation switches, and the
entry point refuses unknown override keys."""

import subprocess
import sys

import pytest

from groupvit_jax.model_config import GroupViTConfig, gcc_redcap, gcc_yfcc
from groupvit_jax.train import config_lib
from train_testlib import REPO, load_config_file, subprocess_env


def _model(config) -> GroupViTConfig:
  return GroupViTConfig.from_dict(config.model.to_dict())


def test_released_recipes_follow_the_spec():
  yfcc = load_config_file("groupvit_gcc_yfcc").get_config()
  redcap = load_config_file("groupvit_gcc_redcap").get_config()
  assert _model(yfcc) == gcc_yfcc() and _model(yfcc).multi_label == 3
  assert _model(redcap) == gcc_redcap() and _model(redcap).multi_label == 0
  # epoch = floor(total_len / 4096): 6997 (YFCC recipe), 6326 (RedCaps recipe); 30 epochs, 2 warm-up
  assert (yfcc.steps_per_epoch, yfcc.total_steps, yfcc.optim.warmup_steps) == (6997, 209910, 13994)
  assert (redcap.steps_per_epoch, redcap.total_steps, redcap.optim.warmup_steps) == (6326, 189780,
                                                                                       12652)
  o = yfcc.optim
  assert (o.base_lr, o.warmup_lr, o.min_lr, o.weight_decay, o.clip_norm) == (1.6e-3, 4e-6, 4e-5,
                                                                            0.05, 5.0)
  assert yfcc.input.batch_size == 4096 and yfcc.input.shuffle_buffer == 10000
  assert yfcc.input.augment.randaugment == "rand-m9-mstd0.5-inc1"
  assert yfcc.input.augment.random_erasing == 0.25
  # derived keys follow the model section
  assert (yfcc.input.multi_label, yfcc.input.image_size, yfcc.input.context_length) == (3, 224, 77)
  yfcc.steps_per_epoch = 10
  assert (yfcc.total_steps, yfcc.optim.warmup_steps) == (300, 20)


@pytest.mark.parametrize("arg,check", [
    ("", lambda m: m.vision.depths == (6, 6) and m.vision.num_group_tokens == (64, 0)
     and m.vision.num_output_groups == (8,) and m.vision.hard_assignment and m.multi_label == 3),
    ("hard=False", lambda m: not m.vision.hard_assignment),
    ("multi_label=0", lambda m: m.multi_label == 0 and not m.has_multi_label_scale),
    ("group_tokens=16,output_tokens=4", lambda m: m.vision.num_group_tokens == (16, 0)
     and m.vision.num_output_groups == (4,)),
    ("group_tokens=32", lambda m: m.vision.num_group_tokens == (32, 0)),
    ("output_tokens=16", lambda m: m.vision.num_output_groups == (16,)),
    ("stages=2", lambda m: m.vision.num_group_tokens == (64, 8, 0)),
])
def test_ablations(arg, check):
  config = load_config_file("groupvit_ablation").get_config(arg)
  assert check(_model(config))
  config.input.train_shards = "/data/*.tar"
  config_lib.validate_config(config)


def test_ablation_data_switch_and_bad_args():
  module = load_config_file("groupvit_ablation")
  assert module.get_config("data=cc_yfcc").steps_per_epoch == 6997
  assert module.get_config("").steps_per_epoch == (2_891_445 + 11_156_203) // 4096
  with pytest.raises(ValueError, match="unknown"):
    module.get_config("groups=3")


def test_tiny_and_runlocal_configs_validate():
  config_lib.validate_config(load_config_file("tiny").get_config())
  local = load_config_file("groupvit_gcc_yfcc").get_config("runlocal")
  assert local.input.backend == "synthetic" and local.total_steps == 10
  config_lib.validate_config(local)


def test_validate_config_names_the_problem():
  config = load_config_file("groupvit_gcc_redcap").get_config()
  with pytest.raises(ValueError, match="train_shards is empty"):
    config_lib.validate_config(config)
  config.input.train_shards = "x/*.tar"
  config.optim.warmup_steps = config.total_steps
  with pytest.raises(ValueError, match="warmup_steps"):
    config_lib.validate_config(config)


def test_entry_point_refuses_unknown_override(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "groupvit_jax.train", "--config", "configs/tiny.py", "--workdir",
       str(tmp_path / "w"), "--config.optim.learning_rate=0.1"],
      cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "learning_rate" in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("arg,maps", [
    ("", [(2, 16, 64), (2, 4, 16)]),  # 2 stages: 64 patches -> 16 groups -> 4
    ("hard=False", [(2, 16, 64), (2, 4, 16)]),
    ("stages=1", [(2, 4, 64)]),  # 16 group tokens merged straight to 4 groups
    ("vit=True", []),
])
def test_shapes_variants_build_the_models_the_ablations_compare(arg, maps):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from groupvit_jax.models.groupvit import GroupViT  # pylint: disable=g-import-not-at-top
  model_cfg = _model(config_lib.load_config(str(REPO / "configs" / "shapes.py"),
                                            ",".join(filter(None, ["preset=two_stage_blocks", arg]))))
  assert sum(model_cfg.vision.depths) == 4  # every default variant has the depth of the ViT
  assert model_cfg.proj_num_layers == 1 and model_cfg.multi_label == 3
  assert model_cfg.vision.hard_assignment == (arg != "hard=False")
  out = GroupViT(model_cfg, rngs=nnx.Rngs(0))(np.zeros((2, 64, 64, 3), np.float32))
  assert [m.shape for m in out.soft_maps] == maps
  with pytest.raises(ValueError, match="depths needs 3 entries"):
    config_lib.load_config(str(REPO / "configs" / "shapes.py"), "depths=3/3")


def test_shapes_vit_baseline_is_the_size_of_the_groupvit():
  """Table 4's baseline is 'a ViT of the same size': its 4 blocks hold as many parameters as the
  block-free GroupViT's two grouping stages (preset ``two_stage_no_blocks``, within 5%)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from groupvit_jax.models.groupvit import GroupViT  # pylint: disable=g-import-not-at-top

  def image_params(arg):
    model = GroupViT(_model(config_lib.load_config(str(REPO / "configs" / "shapes.py"), arg)),
                     rngs=nnx.Rngs(0))
    leaves = jax.tree_util.tree_leaves(nnx.state(model.img_encoder, nnx.Param))
    return sum(int(np.prod(x.shape)) for x in leaves)

  groupvit = image_params("preset=two_stage_no_blocks")
  vit = image_params("preset=two_stage_no_blocks,vit=True")
  assert abs(vit - groupvit) < 0.05 * groupvit, (groupvit, vit)
  assert image_params("vit=True,vit_depth=0") < 0.1 * groupvit  # the knob reaches the model
  # make demo's models (the default): a 1-stage block-free GroupViT and its 2-block ViT baseline.
  groupvit, vit = image_params(""), image_params("vit=True")
  assert abs(vit - groupvit) < 0.05 * groupvit, (groupvit, vit)
  # the GPU preset: the released design and its 9-block ViT baseline.
  groupvit = image_params("preset=reference_any_colour")
  vit = image_params("preset=reference_any_colour,vit=True")
  assert abs(vit - groupvit) < 0.05 * groupvit, (groupvit, vit)


def test_reference_preset_keeps_the_released_design():
  """Preset ``reference_any_colour`` departs from the reference in nothing (blocks before, between
  and after two grouping stages, the segment residual, Gumbel, q/k init 0.02) and trains on a
  world where shapes take any colour."""
  from groupvit_jax import shapes_config  # pylint: disable=g-import-not-at-top
  from groupvit_jax.model_config import departures  # pylint: disable=g-import-not-at-top
  from input_pipeline import synthetic_world  # pylint: disable=g-import-not-at-top
  cfg = _model(config_lib.load_config(str(REPO / "configs" / "shapes.py"),
                                      "preset=reference_any_colour"))
  assert departures(cfg) == {}
  assert cfg.vision.depths == (2, 2, 1) and cfg.vision.num_output_groups == (32, 8)
  world = synthetic_world.WORLDS[shapes_config.PRESETS["reference_any_colour"].world]
  assert world.kind_colors is None and world.background_nouns


def test_shapes_assignment_knobs_reach_the_model_config():
  default = _model(config_lib.load_config(str(REPO / "configs" / "shapes.py"),
                                          "preset=two_stage_blocks"))
  assert default.vision.gumbel and default.vision.assign_qk_init_std == 0.02  # the reference's
  tuned = _model(config_lib.load_config(str(REPO / "configs" / "shapes.py"),
                                        "preset=two_stage_blocks,gumbel=False,assign_std=0.1,"
                                        "depths=1/2/0"))
  assert not tuned.vision.gumbel and tuned.vision.assign_qk_init_std == 0.1
  assert tuned.vision.depths == (1, 2, 0)
