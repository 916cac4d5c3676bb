"""Hub names: a Hugging Face cache laid out the way huggingface_hub lays it out
(``models--org--name/{blobs,snapshots/<commit>,refs/<branch>}``), holding small checkpoints made
by transformers, read fully offline; and the errors when a name is not cached."""

import shutil

import numpy as np
import pytest

import groupvit_jax as gv
from groupvit_jax.cli.main import build_parser, main as cli_main
from hub_cache import add_snapshot
from reference_models import TINY_HF, assert_parity, make_hf_model

REPO = "testorg/groupvit-tiny"
COMMITS = {"main": "a" * 40, "v1": "b" * 40}  # branch/tag -> commit
SEEDS = {"main": 0, "v1": 1}
X = np.random.RandomState(0).randn(2, 32, 32, 3).astype(np.float32)
IDS = gv.tokenize(["a cat on a mat", "two dogs"], context_length=16)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
  """A hub cache holding REPO at two revisions (main and tag v1, different weights)."""
  base = tmp_path_factory.mktemp("hub")
  cache, models = base / "hub", {}
  for ref, commit in COMMITS.items():
    hf = make_hf_model(TINY_HF, seed=SEEDS[ref])
    hf.save_pretrained(str(base / f"src_{ref}"))
    add_snapshot(cache, REPO, ref, commit, base / f"src_{ref}")
    models[ref] = hf
  return base, models


@pytest.fixture
def offline_cache(hub_cache, monkeypatch):
  base, models = hub_cache
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  monkeypatch.setenv("HF_HUB_CACHE", str(base / "hub"))
  return base, models


def test_hub_name_loads_from_offline_cache(offline_cache):
  _, models = offline_cache
  model = gv.load_pretrained(REPO)
  assert_parity(model, models["main"], X, IDS)
  again = gv.load_pretrained("hf://" + REPO)  # explicit prefix, same weights
  np.testing.assert_array_equal(np.asarray(again.get_text_features(IDS)),
                                np.asarray(model.get_text_features(IDS)))


@pytest.mark.parametrize("revision", ["v1", COMMITS["v1"]])
def test_revision_by_tag_or_commit(offline_cache, revision):
  _, models = offline_cache
  assert_parity(gv.load_pretrained(REPO, revision=revision), models["v1"], X, IDS)


def test_hf_home_locates_the_cache(hub_cache, monkeypatch, tmp_path):
  base, models = hub_cache
  shutil.copytree(base / "hub", tmp_path / "home" / "hub", symlinks=True)
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  monkeypatch.delenv("HF_HUB_CACHE", raising=False)
  monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
  assert_parity(gv.load_pretrained(REPO), models["main"], X, IDS)


def test_not_cached_offline_names_repo_and_fetch_command(offline_cache):
  with pytest.raises(FileNotFoundError) as e:
    gv.load_pretrained("nvidia/groupvit-gcc-yfcc")
  msg = str(e.value)
  assert "nvidia/groupvit-gcc-yfcc" in msg and "hf download nvidia/groupvit-gcc-yfcc" in msg
  assert "HF_HUB_OFFLINE" in msg
  with pytest.raises(FileNotFoundError, match="hf download testorg/groupvit-tiny --revision v9"):
    gv.load_pretrained(REPO, revision="v9")


def test_local_path_wins_and_revision_needs_a_hub_name(offline_cache, tiny_checkpoint,
                                                       monkeypatch):
  # A local folder named like a repo id is read from disk, not from the hub.
  parent = tiny_checkpoint.parent
  monkeypatch.chdir(parent.parent)
  local = f"{parent.name}/{tiny_checkpoint.name}"
  assert gv.load_pretrained(local).config == gv.load_pretrained(str(tiny_checkpoint)).config
  with pytest.raises(ValueError, match="hub names only"):
    gv.load_pretrained(str(tiny_checkpoint), revision="main")


def test_cli_error_is_one_line_with_the_fetch_command(offline_cache, tmp_path, capsys):
  img = tmp_path / "x.png"
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
  rc = cli_main(["segment", "--checkpoint", "nvidia/groupvit-gcc-redcaps", "--revision", "main",
                 "--image", str(img), "--classes", "cat", "--output", str(tmp_path / "o")])
  err = capsys.readouterr().err
  assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
  assert "hf download nvidia/groupvit-gcc-redcaps --revision main" in err


def test_cli_classify_reads_a_hub_name(offline_cache, voc_root, capsys):
  img = voc_root / "VOC2012" / "JPEGImages" / "2007_000033.jpg"
  rc = cli_main(["classify", "--checkpoint", REPO, "--revision", "v1", "--image", str(img),
                 "--labels", "aeroplane,dog,car", "--templates", "simple", "--json"])
  out, err = capsys.readouterr()
  assert rc == 0, err
  assert "aeroplane" in out


def test_every_checkpoint_command_takes_revision():
  parser = build_parser()
  subparsers = next(a for a in parser._actions if a.dest == "command").choices  # pylint: disable=protected-access
  with_checkpoint = [name for name, p in subparsers.items()
                     if "--checkpoint" in p._option_string_actions]  # pylint: disable=protected-access
  assert set(with_checkpoint) >= {"segment", "evaluate", "classify", "concepts", "export"}
  for name, p in subparsers.items():
    if name in with_checkpoint or name == "convert":
      assert "--revision" in p._option_string_actions, name  # pylint: disable=protected-access
