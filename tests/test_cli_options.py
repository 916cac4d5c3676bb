"""The CLI's options come from the package's registries; one DatasetLayoutError for every reader."""

import pytest

from groupvit_jax.classification import imagenet_data
from groupvit_jax.cli import evaluate_imagenet
from groupvit_jax.cli.main import build_parser, main as cli_main
from groupvit_jax.dataset_errors import DatasetLayoutError
from groupvit_jax.segmentation import datasets as seg_datasets


def _subparser(name):
  parser = build_parser()
  sub = next(a for a in parser._actions if a.dest == "command")  # pylint: disable=protected-access
  return sub.choices[name]


def _option(parser, flag):
  return next(a for a in parser._actions if flag in a.option_strings)  # pylint: disable=protected-access


def test_evaluate_dataset_choices_are_the_registry_and_imagenet():
  choices = _option(_subparser("evaluate"), "--dataset").choices
  assert sorted(choices) == sorted([*seg_datasets.DATASETS, "imagenet"])


def test_evaluate_has_every_imagenet_option_once():
  evaluate = _subparser("evaluate")
  flags = [f for a in evaluate._actions for f in a.option_strings]  # pylint: disable=protected-access
  assert len(flags) == len(set(flags))
  for flag in [*evaluate_imagenet.COMMON_OPTIONS, *evaluate_imagenet.IMAGENET_OPTIONS]:
    assert flag in flags, flag
  assert _option(evaluate, "--output").required  # evaluate's own version of a common option


def test_labels_file_names_the_classes_and_ground_truth_labels_the_images(tmp_path, capsys):
  """``--labels-file`` is the list of class names (classify); ImageNet's per-image labels are
  ``--ground-truth`` (evaluate), so one flag never means two things."""
  assert "--labels-file" not in [f for a in _subparser("evaluate")._actions  # pylint: disable=protected-access
                                 for f in a.option_strings]
  assert "class name" in _option(_subparser("classify"), "--labels-file").help
  with pytest.raises(SystemExit):
    cli_main(["evaluate", "--dataset", "imagenet", "--checkpoint", "x", "--data-root",
              str(tmp_path), "--output", str(tmp_path / "o.json"), "--labels-file", "l.txt"])
  assert "unrecognized arguments: --labels-file" in capsys.readouterr().err


def test_one_dataset_layout_error_for_segmentation_and_imagenet(tmp_path):
  assert seg_datasets.DatasetLayoutError is DatasetLayoutError
  assert imagenet_data.DatasetLayoutError is DatasetLayoutError
  with pytest.raises(DatasetLayoutError, match="Expected the official layout") as seg:
    seg_datasets.open_dataset("voc", str(tmp_path), "val")
  with pytest.raises(DatasetLayoutError, match="no such directory") as imagenet:
    imagenet_data.open_imagenet(str(tmp_path / "missing"))
  for err in (seg.value, imagenet.value):  # both old ``except`` clauses still catch it
    assert isinstance(err, FileNotFoundError) and isinstance(err, ValueError)
