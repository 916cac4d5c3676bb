"""model_config: per-stage configs, the assignment-rule table, departures from the reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import groupvit_jax as gv
from groupvit_jax.cli.main import main as cli_main
from groupvit_jax.convert import hf_config
from groupvit_jax.model_config import (REFERENCE_DEPARTURES, GroupViTConfig, ReferenceDepartureError,
                                       VisionConfig, check_reference_compatible, departures,
                                       gcc_redcap, gcc_yfcc, one_stage, tiny)
from groupvit_jax.models.assign import ASSIGN_RULES, AssignAttention


def test_stages_of_the_released_model_follow_the_spec():
  """Spec 1.1-1.3: depths 6/3/3, group tokens 64/8/0 merged to 64/8; stage s > 0 projects the
  previous stage's group tokens; drop-path rates rise linearly 0..0.1 over all 12 blocks."""
  stages = VisionConfig().stages()
  rates = [0.1 * i / 11 for i in range(12)]
  assert [s.depth for s in stages] == [6, 3, 3]
  assert [(s.num_group_token, s.num_output_group, s.num_prev_group_token) for s in stages] == [
      (64, 64, 0), (8, 8, 64), (0, 0, 8)]
  assert [s.groups for s in stages] == [True, True, False]
  np.testing.assert_allclose(sum((list(s.drop_path) for s in stages), []), rates, rtol=1e-12)
  assert {(s.dim, s.num_heads, s.eps, s.act, s.assign_rule) for s in stages} == {
      (384, 6, 1e-5, "gelu", "gumbel_straight_through")}


@pytest.mark.parametrize("hard, gumbel, rule", [(True, True, "gumbel_straight_through"),
                                                (True, False, "hard_argmax"),
                                                (False, True, "soft"), (False, False, "soft")])
def test_assignment_rule_is_chosen_from_the_table(hard, gumbel, rule):
  cfg = VisionConfig(hard_assignment=hard, gumbel=gumbel)
  assert cfg.assign_rule == rule and rule in ASSIGN_RULES
  model = gv.GroupViT(tiny(hard_assignment=hard, gumbel=gumbel), rngs=nnx.Rngs(0))
  assert {l.downsample.assign.rule for l in model.img_encoder.layers if l.downsample} == {rule}


def test_soft_rule_assigns_by_the_softmax_over_groups_in_training_and_inference():
  attn = AssignAttention(8, rule="soft", dtype=jnp.float32, param_dtype=jnp.float32,
                         rngs=nnx.Rngs(1))
  rng = np.random.RandomState(0)
  q = jnp.asarray(rng.randn(1, 3, 8), jnp.float32)
  k = jnp.asarray(rng.randn(1, 10, 8), jnp.float32)
  logits = (np.asarray(attn.q_proj(q))[0] @ np.asarray(attn.k_proj(k))[0].T) / np.sqrt(8)
  want = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)  # over groups
  for train in (False, True):
    _, maps = attn(q, k, train=train)
    np.testing.assert_allclose(np.asarray(maps["hard"][0]), want, atol=1e-5)


def test_unknown_assignment_rule_is_refused():
  with pytest.raises(ValueError, match="unknown assignment rule 'sparse'"):
    AssignAttention(8, rule="sparse", dtype=jnp.float32, param_dtype=jnp.float32,
                    rngs=nnx.Rngs(0))


def test_reference_models_have_no_departures():
  for cfg in (gcc_yfcc(), gcc_redcap(), one_stage(), tiny(), tiny(hard_assignment=False,
                                                                  gumbel=False)):
    assert departures(cfg) == {}
    check_reference_compatible(cfg, "transformers")


@pytest.mark.parametrize("field, value", [("group_token_residual", False), ("gumbel", False),
                                          ("assign_qk_init_std", 0.2),
                                          ("pos_embed_init", "sincos2d")])
def test_every_departure_is_named_and_refused(field, value):
  assert REFERENCE_DEPARTURES[field][0] == VisionConfig().__getattribute__(field)  # the default
  cfg = tiny(**{field: value})
  (name, why), = departures(cfg).items()
  assert name.startswith(f"model.vision.{field}={value!r}") and why
  with pytest.raises(ReferenceDepartureError, match=f"model.vision.{field}"):
    check_reference_compatible(cfg, "transformers")


def test_exporters_refuse_the_demo_model_without_writing(tmp_path, capsys):
  """The demo's model drops the segment residual: a transformers or official checkpoint of it
  would run a different forward."""
  model = gv.GroupViT(tiny(group_token_residual=False, assign_qk_init_std=0.2),
                      rngs=nnx.Rngs(0))
  with pytest.raises(ReferenceDepartureError, match="group_token_residual=False") as err:
    gv.export_hf(model, str(tmp_path / "hf"))
  assert "assign_qk_init_std=0.2" in str(err.value)
  assert not (tmp_path / "hf").exists()
  with pytest.raises(ReferenceDepartureError, match="transformers"):
    hf_config.to_hf(model.config)
  with pytest.raises(ReferenceDepartureError, match="official"):
    gv.convert.load.to_official_state_dict(model)
  gv.save_pretrained(model, str(tmp_path / "native"))  # the own format records the fields
  assert not gv.load_pretrained(str(tmp_path / "native")).config.vision.group_token_residual
  assert cli_main(["convert", str(tmp_path / "native"), str(tmp_path / "out"), "--to", "hf"]) == 2
  err = capsys.readouterr().err
  assert "group_token_residual" in err and "Traceback" not in err
  assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_departure_fields_round_trip_through_json():
  cfg = tiny(gumbel=False, group_token_residual=False, pos_embed_init="sincos2d")
  assert GroupViTConfig.from_json(cfg.to_json()) == cfg
  assert jax.tree.leaves(cfg.vision.stages()[0].drop_path) == [0.0]
