"""The ``classify`` command and the ImageNet evaluation command end to end on a tiny random
checkpoint, checked against predictions computed independently with numpy."""

import argparse
import json
import os
import shutil

import numpy as np
import pytest

from groupvit_jax.cli import evaluate_imagenet
from groupvit_jax.cli.main import main
from groupvit_jax.classification.imagenet_classes import IMAGENET_CLASSES, imagenet_synsets
from groupvit_jax.class_embeddings import class_embeddings
from groupvit_jax.image_io import load_image
from groupvit_jax.preprocessing import preprocess_images
from imagenet_testdata import write_image


def _cosines(model, paths, names):
  """numpy restatement: normalised image features @ class embeddings^T (crop 32, resize 36)."""
  x = preprocess_images([load_image(p) for p in paths], image_size=32, resize=36)
  f = np.asarray(model.get_image_features(x))
  f = f / np.linalg.norm(f, axis=-1, keepdims=True)
  distinct = list(dict.fromkeys(names))
  emb = class_embeddings(model, distinct, "subset")
  return f @ emb[[distinct.index(n) for n in names]].T


def test_classify_prints_ranked_probabilities(tmp_path, tiny_checkpoint, tiny_model, capsys):
  paths = [write_image(tmp_path / "a.jpg", None, size=(64, 48), seed=1),
           write_image(tmp_path / "b.png", None, size=(40, 90), seed=2)]
  names = ["cat", "dog", "car"]
  args = ["classify", "--checkpoint", str(tiny_checkpoint), "--image", *paths,
          "--labels", "cat, dog,car"]
  assert main(args + ["--json"]) == 0
  got = json.loads(capsys.readouterr().out)
  cos = _cosines(tiny_model, paths, names)
  z = float(tiny_model.scale()) * cos
  probs = np.exp(z - z.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  for r, p, c, path in zip(got, probs, cos, paths):
    assert r["image"] == path
    order = np.argsort(-p, kind="stable")
    assert [pred["label"] for pred in r["predictions"]] == [names[i] for i in order]
    np.testing.assert_allclose([pred["probability"] for pred in r["predictions"]], p[order],
                               atol=1e-5)
    np.testing.assert_allclose([pred["cosine"] for pred in r["predictions"]], c[order], atol=1e-5)
  assert np.ptp(cos) > 1e-4  # the labels really score differently

  assert main(args + ["--top-k", "2"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == paths[0] and lines[3] == paths[1] and len(lines) == 6
  first = lines[1].split()
  assert first[:2] == ["1.", got[0]["predictions"][0]["label"]]
  assert float(first[2].rstrip("%")) == pytest.approx(
      100 * got[0]["predictions"][0]["probability"], abs=0.006)


@pytest.mark.parametrize("extra, message", [
    (["--image", "missing.jpg", "--labels", "cat,dog"], "no such image file: missing.jpg"),
    (["--labels", "cat"], "at least two labels"),
    (["--labels", "cat,,dog"], "empty label"),
    (["--labels", "cat,Cat"], "duplicate class names"),
    (["--labels", "cat,dog", "--templates", "photo of"], "template containing '{}'"),
])
def test_classify_user_errors(tmp_path, tiny_checkpoint, capsys, extra, message):
  image = write_image(tmp_path / "a.jpg")
  args = ["classify", "--checkpoint", str(tiny_checkpoint)]
  if "--image" not in extra:
    args += ["--image", image]
  assert main(args + extra) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_evaluate_imagenet_end_to_end(tmp_path, tiny_checkpoint, tiny_model, capsys):
  """Images are put into the folders of classes chosen from their independently computed ranking,
  so the expected accuracy is known: 3 top-1 hits, 1 top-5-only hit, 2 misses of 6 images."""
  src = [write_image(tmp_path / "src" / f"{i}.jpg", None, size=(50 + 9 * i, 44), seed=10 + i)
         for i in range(6)]
  cos = _cosines(tiny_model, src, IMAGENET_CLASSES)
  order = np.argsort(-cos, axis=1, kind="stable")
  rank_of_label = [0, 0, 0, 3, 20, 500]  # 0-based rank of the true class per image
  synsets = imagenet_synsets()
  root = tmp_path / "val"
  lines = []
  for i, (path, rank) in enumerate(zip(src, rank_of_label)):
    label = int(order[i, rank])
    os.makedirs(root / synsets[label], exist_ok=True)
    shutil.copy(path, root / synsets[label] / f"ILSVRC2012_val_{i:08d}.JPEG")
    lines.append(f"{i}.jpg {synsets[label]}")
  out = tmp_path / "res" / "results.json"
  argv = ["--checkpoint", str(tiny_checkpoint), "--data-root", str(root), "--output", str(out),
          "--batch-size", "4"]
  assert evaluate_imagenet.main(argv) == 0
  res = json.loads(out.read_text())
  assert (res["num_images"], res["top1_correct"], res["top5_correct"]) == (6, 3, 4)
  assert res["top1"] == pytest.approx(0.5) and res["top5"] == pytest.approx(4 / 6)
  assert res["dataset"] == "imagenet" and res["layout"] == "folders"
  assert res["protocol"]["templates"] == "subset" and res["protocol"]["num_templates"] == 7
  assert "resize shorter side to 36" in res["protocol"]["preprocessing"]
  captured = capsys.readouterr()
  assert "top-1 50.00%  top-5 66.67%" in captured.out
  assert "imagenet" in captured.err and "6/6" in captured.err  # the progress bar

  # The same images as a flat folder with a 'FILE SYNSET' labels file.
  (tmp_path / "labels.txt").write_text("\n".join(lines) + "\n")
  argv = ["--checkpoint", str(tiny_checkpoint), "--data-root", str(tmp_path / "src"),
          "--ground-truth", str(tmp_path / "labels.txt"), "--output", str(out)]
  assert evaluate_imagenet.main(argv) == 0
  res = json.loads(out.read_text())
  assert (res["layout"], res["num_images"], res["top1_correct"], res["top5_correct"]) == (
      "flat", 6, 3, 4)

  # Through the shared `groupvit-jax evaluate` command (its --limit is --max-images here).
  from groupvit_jax.cli.main import main as cli_main
  argv = ["evaluate", "--dataset", "imagenet", "--checkpoint", str(tiny_checkpoint), "--data-root",
          str(root), "--output", str(out), "--limit", "5"]
  assert cli_main(argv) == 0
  res = json.loads(out.read_text())
  assert res["num_images"] == 5 and res["protocol"]["templates"] == "subset"


def test_evaluate_imagenet_wrong_layout_is_one_error_line(tmp_path, tiny_checkpoint, capsys):
  (tmp_path / "train").mkdir()
  argv = ["--checkpoint", str(tiny_checkpoint), "--data-root", str(tmp_path)]
  assert evaluate_imagenet.main(argv) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "Expected one of" in err and "Traceback" not in err


def test_add_arguments_without_the_common_options_fits_a_parser_that_has_them():
  parser = argparse.ArgumentParser()
  parser.add_argument("--dataset", required=True)
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--data-root", required=True)
  parser.add_argument("--output", default="results.json")
  parser.add_argument("--batch-size", type=int, default=None)
  evaluate_imagenet.add_arguments(parser, common=False)
  args = parser.parse_args(["--dataset", "imagenet", "--checkpoint", "c", "--data-root", "d",
                            "--batch-size", "8", "--layout", "flat"])
  assert (args.output, args.batch_size, args.layout, args.templates) == (
      "results.json", 8, "flat", None)  # None: run() uses the reference's "subset"
