"""Zero-shot image classification (spec 5.1) and the ImageNet-1k top-1/top-5 evaluation.

Protocol of the reference (``validate_cls`` + ``zero_shot_pred``): class embeddings from the
7-template ``subset`` set (mean of unnormalised text embeddings, then L2-normalised); images resized
to a shorter side of 256 (PIL bilinear), center-cropped to 224, ImageNet mean/std; logits =
L2-normalised image embedding @ class embeddings^T, *without* the logit scale; top-1/top-5
accuracy over all images. Probabilities (``classify``) are ``softmax(scale * logits)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from groupvit_jax import sharding as shd
from groupvit_jax.classification.image_batches import Batch, eval_resize, iter_batches
from groupvit_jax.classification.imagenet_classes import IMAGENET_CLASSES
from groupvit_jax.classification.imagenet_data import LabelledImages
from groupvit_jax.class_embeddings import class_embeddings, get_templates
from groupvit_jax.image_io import load_image
from groupvit_jax.models import l2_normalize

TOPK = (1, 5)


def zeroshot_logits(model, pixel_values: jax.Array, class_emb: jax.Array) -> jax.Array:
  """Traceable. pixel_values [B, H, W, 3] normalised; class_emb [N, D] L2-normalised ->
  float32 [B, N] cosine similarities (no logit scale)."""
  return l2_normalize(model.encode_image(pixel_values)["image_x"]) @ class_emb.T


def topk_hits(logits: jax.Array, labels: jax.Array, ks: Sequence[int] = TOPK) -> jax.Array:
  """logits [B, N], labels int [B] -> bool [B, len(ks)]: is the label among the k best classes.

  Ties go to the lower class index (``lax.top_k``); k larger than N counts every label as a hit.
  """
  k_max = min(max(ks), logits.shape[-1])
  _, top = jax.lax.top_k(logits, k_max)
  match = top == labels[:, None]
  return jnp.stack([match[:, :min(k, k_max)].any(-1) for k in ks], axis=-1)


def softmax_probabilities(logits: np.ndarray, scale: float) -> np.ndarray:
  """[B, N] cosine logits -> float32 [B, N] ``softmax(scale * logits)`` over classes."""
  return np.asarray(jax.nn.softmax(scale * jnp.asarray(logits, jnp.float32), axis=-1))


def distinct_class_embeddings(model, class_names: Sequence[str],
                              templates: str | Sequence[str] = "subset") -> np.ndarray:
  """``prompts.class_embeddings`` for a list that may repeat a name verbatim (CLIP's ImageNet list
  names classes 657/744 'missile' and 836/837 'sunglasses'): each name is embedded once and its
  row shared. Returns float32 [len(class_names), D]."""
  distinct = list(dict.fromkeys(class_names))
  emb = class_embeddings(model, distinct, templates)
  row = {name: i for i, name in enumerate(distinct)}
  return emb[[row[name] for name in class_names]]


def round_batch_size(batch_size: int, mesh: Mesh) -> int:
  """The smallest multiple of the mesh's batch-parallel size that holds ``batch_size``."""
  n = shd.data_parallel_size(mesh)
  return -(-batch_size // n) * n


class ZeroShotClassifier:
  """Jitted zero-shot classifier over fixed-size batches sharded along the batch axis.

  Every call must pass exactly ``batch_size`` rows (``iter_batches`` pads the last batch), so the
  functions compile once. ``num_traces`` counts traces (for tests).
  """

  def __init__(self, model, class_emb: np.ndarray, *, batch_size: int, mesh: Mesh | None = None,
               ks: Sequence[int] = TOPK):
    self.mesh = mesh if mesh is not None else shd.data_mesh()
    self.batch_size = round_batch_size(batch_size, self.mesh)
    self.ks = tuple(ks)
    self.num_traces = 0
    graphdef, state = nnx.split(model)
    state_sh = shd.state_shardings(state, self.mesh)
    repl = NamedSharding(self.mesh, PartitionSpec())
    rows = NamedSharding(self.mesh, shd.logical_to_spec((shd.BATCH,), (self.batch_size,),
                                                        self.mesh))
    self._state = jax.device_put(state, state_sh)
    self._emb = jax.device_put(jnp.asarray(class_emb, jnp.float32), repl)
    self._rows = rows

    def logits(state, emb, images):
      self.num_traces += 1
      return zeroshot_logits(nnx.merge(graphdef, state), images, emb)

    def hits(state, emb, images, labels, mask):
      return topk_hits(logits(state, emb, images), labels, self.ks) & mask[:, None]

    self._logits = jax.jit(logits, in_shardings=(state_sh, repl, rows), out_shardings=rows)
    self._hits = jax.jit(hits, in_shardings=(state_sh, repl, rows, rows, rows), out_shardings=rows)

  def _check(self, images: np.ndarray) -> None:
    if images.shape[0] != self.batch_size:
      raise ValueError(f"batches must have {self.batch_size} rows (pad the last one), got "
                       f"{images.shape[0]}")

  def logits(self, images: np.ndarray) -> jax.Array:
    """images float32 [batch_size, S, S, 3] normalised -> [batch_size, N] cosine logits."""
    self._check(images)
    return self._logits(self._state, self._emb, images)

  def hits(self, batch: Batch) -> jax.Array:
    """bool [batch_size, len(ks)] top-k hits, False on padding rows."""
    self._check(batch.images)
    return self._hits(self._state, self._emb, batch.images, batch.labels, batch.mask)


def protocol(templates: str | Sequence[str], image_size: int, resize: int) -> dict:
  """How the numbers were computed (written next to them in the results JSON)."""
  temps = get_templates(templates)
  return {
      "class_names": "CLIP ImageNet-1k names (GroupViT datasets/imagenet_template.py)",
      "class_order": "sorted WordNet ids (n01440764 ... n15075141)",
      "templates": templates if isinstance(templates, str) else list(temps),
      "num_templates": len(temps),
      "class_embedding": "mean of unnormalised text embeddings over templates, then L2-normalised",
      "preprocessing": f"PIL resize shorter side to {resize} (bilinear), center crop "
                       f"{image_size}, ImageNet mean/std",
      "logits": "normalised image embedding @ class embeddings (cosine), no logit scale",
      "metrics": "top-1 / top-5 accuracy as fractions from 0 to 1",
  }


def evaluate(model, data: LabelledImages, *, class_names: Sequence[str] = IMAGENET_CLASSES,
             templates: str | Sequence[str] = "subset", batch_size: int = 64,
             image_size: int | None = None, num_workers: int | None = None,
             max_images: int | None = None, progress: bool = True,
             mesh: Mesh | None = None) -> dict:
  """Zero-shot top-1/top-5 accuracy of ``model`` on ``data`` (labels index ``class_names``).

  Returns a dict with ``top1``, ``top5`` (fractions from 0 to 1, like every ``evaluate``
  metric), ``num_images``, ``top1_correct``,
  ``top5_correct`` and ``protocol``.
  """
  image_size = image_size or model.config.vision.img_size
  resize = eval_resize(image_size)
  emb = distinct_class_embeddings(model, class_names, templates)
  clf = ZeroShotClassifier(model, emb, batch_size=batch_size, mesh=mesh)
  total = len(data) if max_images is None else min(len(data), max_images)
  if total == 0:
    raise ValueError(f"{data.root}: no images to evaluate")
  items = itertools.islice(data.items(), total)
  correct = np.zeros(len(TOPK), np.int64)
  seen = 0
  with tqdm(total=total, unit="img", desc="imagenet", disable=not progress) as bar:
    for batch in iter_batches(items, data.read, batch_size=clf.batch_size, image_size=image_size,
                              resize=resize, num_workers=num_workers):
      correct += np.asarray(clf.hits(batch)).sum(axis=0)
      seen += batch.num_valid
      bar.update(batch.num_valid)
      bar.set_postfix(top1=f"{100 * correct[0] / seen:.2f}", top5=f"{100 * correct[1] / seen:.2f}")
  return {
      "top1": float(correct[0]) / seen,
      "top5": float(correct[1]) / seen,
      "num_images": seen,
      "top1_correct": int(correct[0]),
      "top5_correct": int(correct[1]),
      "protocol": protocol(templates, image_size, resize),
  }


def classify_files(model, paths: Sequence[str], class_names: Sequence[str], *,
                   templates: str | Sequence[str] = "subset", image_size: int | None = None,
                   batch_size: int = 16, num_workers: int | None = None) -> np.ndarray:
  """Cosine logits float32 [len(paths), len(class_names)] of image files against class names."""
  image_size = image_size or model.config.vision.img_size
  emb = class_embeddings(model, class_names, templates)
  clf = ZeroShotClassifier(model, emb, batch_size=min(batch_size, len(paths)))
  out = []
  for batch in iter_batches(((p, 0) for p in paths), load_image, batch_size=clf.batch_size,
                            image_size=image_size, num_workers=num_workers):
    out.append(np.asarray(clf.logits(batch.images))[:batch.num_valid])
  return np.concatenate(out)
