"""Why a shapes-world GroupViT segments well or badly: the numbers behind
experiments/results/shapes_demo_notes.md.

For a trained model (a training workdir or any checkpoint ``load_pretrained`` reads) and the
world's val split (folder layout, as ``make demo`` writes it) it prints:

- image-level AUC per class: do images that contain the class rank higher by the cosine between
  the image embedding and "a photo of a {class}."? (is the word learnt at all?)
- per grouping stage: groups used per image, and the *oracle* mIoU that naming every group with
  its majority ground-truth label would reach (is the grouping good enough?);
- object-group naming accuracy: for groups mostly covering one object, how often the group's
  argmax class is that object's (are groups named, not just images?);
- mean confidence ``max A`` (spec 5.4) of object groups and of background groups, and the mean
  cosine between group and image embeddings (are group embeddings local or global?);
- how often a background group's top class is one present in the image (the image's class
  leaking into the background group) and, per grouping stage, the mean gap between the best and
  second-best assignment logit (next to the Gumbel noise, std 1.3, that training adds);
- mIoU under the shapes protocol for a range of background thresholds, and (not a protocol of
  the reference: a diagnostic) with background wherever a group's best class *cosine* is below a
  threshold: ``A``'s softmax keeps only differences between classes, so a group that is far from
  every class can still look confident;
- with ``--stuff-names``: the mIoU when the vocabulary also holds the background kinds' names
  and a pixel given one of them counts as background.

    python experiments/shapes_diagnostics.py --checkpoint runs/shapes/groupvit --eval-root data/shapes/eval
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9, 0.95)
COSINE_THRESHOLDS = (0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)


def _forward(model, text):
  """jitted: images uint8 [B, h, w, 3] -> per-stage group maps, the group class scores
  A [B, G, N] of spec 5.4 (``dense.class_table``, no background column), image-text cosines
  [B, N], group-image cosines [B, G], per-stage mean top-1 minus top-2 assignment logit [B],
  group-class cosines [B, G, N]."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation import dense  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.segmenter import _normalize  # pylint: disable=g-import-not-at-top
  graphdef, state = nnx.split(model)

  @jax.jit
  def fn(state, images):
    m = nnx.merge(graphdef, state)
    enc = m.encode_image(_normalize(images))
    hw, patch = images.shape[1:3], m.config.vision.patch_size
    stages = [jnp.argmax(dense.upsample_group_maps(s, hw, patch), -1)
              for s in dense.compose_stage_maps(enc["soft"], enc["tokens"])]
    groups_x = m.project_groups(enc["tokens"])
    g, a = dense.l2_normalize(groups_x), dense.l2_normalize(enc["image_x"])
    affinity = dense.class_table(groups_x, enc["image_x"], text, m.scale(), None)
    gaps = []
    for soft in enc["soft"]:  # [B, S, L]; log-softmax differences are logit differences
      top2 = jax.lax.top_k(jnp.log(jnp.swapaxes(soft, 1, 2) + 1e-12), 2)[0]  # [B, L, 2]
      gaps.append((top2[..., 0] - top2[..., 1]).mean(-1))
    return stages, affinity, a @ text.T, jnp.einsum("bgd,bd->bg", g, a), gaps, g @ text.T

  return lambda images: fn(state, images)


def diagnose(model, dataset, batch: int = 100) -> dict:
  """The numbers above for ``model`` on a folder-layout ``dataset`` (with background)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.miou import ConfusionMatrix  # pylint: disable=g-import-not-at-top
  from groupvit_jax.class_embeddings import class_embeddings  # pylint: disable=g-import-not-at-top
  names = list(dataset.prompt_classes)
  n_cls = len(names) + 1
  text = jnp.asarray(class_embeddings(model, names, "simple"), jnp.float32)
  fwd = _forward(model, text)
  examples = list(dataset)
  labels = np.stack([ex.label for ex in examples])
  outs = [fwd(jnp.asarray(np.stack([ex.image for ex in examples[i:i + batch]])))
          for i in range(0, len(examples), batch)]
  stages = [np.concatenate([np.asarray(o[0][s]) for o in outs]) for s in range(len(outs[0][0]))]
  affinities, image_sim, group_cos, class_cos = (np.concatenate([np.asarray(o[k]) for o in outs])
                                                 for k in (1, 2, 3, 5))
  gaps = [float(np.concatenate([np.asarray(o[4][s]) for o in outs]).mean())
          for s in range(len(outs[0][4]))]
  present = np.stack([[(lab == c + 1).any() for c in range(len(names))] for lab in labels])
  auc = {}
  for c, name in enumerate(names):
    pos, neg = image_sim[present[:, c], c], image_sim[~present[:, c], c]
    auc[name] = float((pos[:, None] > neg[None]).mean()) if len(pos) and len(neg) else float("nan")
  per_stage = []
  for groups in stages:
    oracle, used = ConfusionMatrix(n_cls), []
    for g, lab in zip(groups, labels):
      pred = np.zeros_like(lab)
      for k in np.unique(g):
        pred[g == k] = np.bincount(lab[g == k], minlength=n_cls).argmax()
      oracle.update(pred, lab)
      used.append(len(np.unique(g)))
    per_stage.append({"groups_used": float(np.mean(used)), "oracle_miou": oracle.metrics()["mIoU"],
                      "assign_logit_gap": gaps[len(per_stage)]})
  final = stages[-1]
  named = total = bg_groups = bg_leaks = 0
  conf_obj, conf_bg = [], []
  by_thr = {t: ConfusionMatrix(n_cls) for t in THRESHOLDS}
  by_cos = {t: ConfusionMatrix(n_cls) for t in COSINE_THRESHOLDS}
  for g, lab, affinity, cos in zip(final, labels, affinities, class_cos):
    used = np.unique(g)
    for k in used:
      hist = np.bincount(lab[g == k], minlength=n_cls)
      major = hist.argmax()
      if major > 0 and hist[major] > 0.5 * hist.sum():
        total += 1
        named += int(affinity[k].argmax() + 1 == major)
        conf_obj.append(affinity[k].max())
      elif major == 0:
        conf_bg.append(affinity[k].max())
        bg_groups += 1
        bg_leaks += int((lab == affinity[k].argmax() + 1).any())
    for t, conf in by_thr.items():
      thr = min(t, affinity[used].max())  # the adaptive rule
      row = np.where(affinity.max(-1) < thr, 0, affinity.argmax(-1) + 1)
      conf.update(row[g], lab)
    for t, conf in by_cos.items():
      conf.update(np.where(cos.max(-1) < t, 0, cos.argmax(-1) + 1)[g], lab)
  return {
      "image_auc": auc, "stages": per_stage,
      "object_groups_named": f"{named}/{total}",
      "object_group_naming_accuracy": named / max(total, 1),
      "confidence_object_groups": float(np.mean(conf_obj)) if conf_obj else float("nan"),
      "confidence_background_groups": float(np.mean(conf_bg)) if conf_bg else float("nan"),
      "group_image_cosine": float(group_cos.mean()),
      "background_groups_named_as_present_class": bg_leaks / max(bg_groups, 1),
      "miou_by_threshold": {t: c.metrics()["mIoU"] for t, c in by_thr.items()},
      "miou_by_cosine_threshold": {t: c.metrics()["mIoU"] for t, c in by_cos.items()},
  }


def stuff_vocabulary_miou(model, dataset, stuff_names) -> float:
  """mIoU (background + the dataset's classes) when the vocabulary is the classes plus
  ``stuff_names`` and a pixel labelled with a stuff name counts as background."""
  from groupvit_jax.segmentation.miou import ConfusionMatrix  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.protocols import SHAPES  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.segmenter import Segmenter  # pylint: disable=g-import-not-at-top
  names = list(dataset.prompt_classes)
  seg = Segmenter.from_protocol(model, SHAPES, names + list(stuff_names), None)
  conf = ConfusionMatrix(len(names) + 1)
  truth = {}

  def images():
    for ex in dataset:
      truth[ex.key] = ex.label
      yield ex.key, ex.image

  for key, labels in seg.segment_stream(images()):
    conf.update(np.where(labels < len(names), labels + 1, 0), truth.pop(key), name=key)
  return float(conf.metrics()["mIoU"])


def report(out: dict) -> None:
  print("image-level AUC  ", {k: round(v, 3) for k, v in out["image_auc"].items()})
  for s, row in enumerate(out["stages"]):
    print(f"stage {s + 1}: {row['groups_used']:.2f} groups used per image, oracle mIoU "
          f"{row['oracle_miou']:.3f}, assignment logit gap {row['assign_logit_gap']:.2f}")
  print(f"object groups named right {out['object_groups_named']}; confidence object "
        f"{out['confidence_object_groups']:.3f} / background {out['confidence_background_groups']:.3f}"
        f"; group-image cosine {out['group_image_cosine']:.3f}; background groups named as a "
        f"class in the image {out['background_groups_named_as_present_class']:.0%}")
  print("mIoU by background threshold", {t: round(v, 3) for t, v in out["miou_by_threshold"].items()})
  print("mIoU by cosine background threshold (diagnostic)",
        {t: round(v, 3) for t, v in out["miou_by_cosine_threshold"].items()})
  if "stuff_vocabulary_miou" in out:
    print(f"mIoU with the stuff names in the vocabulary {out['stuff_vocabulary_miou']:.3f}")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--checkpoint", required=True)
  p.add_argument("--eval-root", required=True, help="folder-layout root (DATA/eval)")
  p.add_argument("--split", default="val")
  p.add_argument("--stuff-names", default="",
                 help="comma-separated background names to add to the vocabulary, e.g. "
                 "noise,stripes,checkerboard,gradient,wall (input_pipeline.synthetic_world.STUFF_NAMES)")
  p.add_argument("--batch", type=int, default=100, help="images per forward")
  p.add_argument("--json", default="", help="also write the numbers to this JSON file")
  args = p.parse_args(argv)
  from groupvit_jax import load_pretrained  # pylint: disable=g-import-not-at-top
  from groupvit_jax.segmentation.datasets import open_dataset  # pylint: disable=g-import-not-at-top
  model = load_pretrained(args.checkpoint)
  dataset = open_dataset("folder", args.eval_root, args.split)
  out = diagnose(model, dataset, batch=args.batch)
  if args.stuff_names:
    out["stuff_vocabulary_miou"] = stuff_vocabulary_miou(model, dataset, args.stuff_names.split(","))
  report(out)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1, default=float)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
