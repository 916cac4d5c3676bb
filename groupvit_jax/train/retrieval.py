"""A cheap periodic evaluation: image-text retrieval on held-out webdataset shards.

The first ``num_samples`` good samples of ``shards`` (file order, corrupt ones skipped) are read
once, with the evaluation transform (shorter side ``resize``, center crop to the model's image
size). At each evaluation, image and caption embeddings (BatchNorm in eval mode) give the cosine
similarity matrix S [N, N]; recall@k image->text is the fraction of rows whose own caption is
among the k highest, text->image likewise over columns. S is also written as an image.
"""

from __future__ import annotations

import logging

import jax
import numpy as np
from flax import nnx

from groupvit_jax.models.groupvit import l2_normalize
from groupvit_jax.tokenizer import tokenize
from groupvit_jax.train.evals import EvalContext, EvalResult
from input_pipeline import augment, samples, shards as shards_lib, webdataset


def load_pairs(shard_spec, num_samples: int, *, image_size: int, resize: int,
               context_length: int) -> tuple[np.ndarray, np.ndarray, int]:
  """``(images f32 [N, S, S, 3], texts i32 [N, L], skipped)`` from the shards in file order."""
  transform = augment.EvalTransform(image_size=image_size, resize=resize)
  images, captions, skipped = [], [], 0
  for path in shards_lib.expand_shards(shard_spec):
    for raw in webdataset.iter_tar_samples(path):
      caption = samples.decode_caption(raw["caption"]) if raw["caption"] is not None else ""
      try:
        img = samples.decode_image(raw["image"]) if raw["image"] is not None else None
      except (OSError, ValueError, SyntaxError):
        img = None
      if img is None or not caption:
        skipped += 1
        continue
      images.append(transform(img))
      captions.append(caption)
      if len(images) == num_samples:
        return np.stack(images), tokenize(captions, context_length), skipped
  if not images:
    raise ValueError(f"retrieval eval: no usable sample in {shard_spec!r}")
  return np.stack(images), tokenize(captions, context_length), skipped


def recall_at_k(sims: np.ndarray, k: int) -> float:
  """Fraction of rows i whose column i is among the k largest of the row."""
  own = np.diag(sims)[:, None]
  rank = np.sum(sims > own, axis=1)  # ties count in the item's favour
  return float(np.mean(rank < k))


def similarity_image(sims: np.ndarray) -> np.ndarray:
  """[N, N] in [-1, 1] -> uint8 [1, N, N, 3] gray image (white = similar)."""
  gray = np.clip((sims + 1.0) * 127.5, 0, 255).astype(np.uint8)
  return np.repeat(gray[None, :, :, None], 3, axis=-1)


class RetrievalEval:
  """``config.evals.<name>`` with ``type='retrieval'``: keys ``shards``, ``num_samples``,
  ``batch_size``, ``resize``, ``every_steps``."""

  def __init__(self, eval_config, *, model_config, input_config):
    del input_config
    self.disabled_reason = None
    self._batch = int(eval_config.batch_size)
    self._fns = None
    if not str(eval_config.shards).strip():
      self.disabled_reason = "no held-out shards (set evals.retrieval.shards)"
      return
    self.images, self.texts, skipped = load_pairs(
        eval_config.shards, int(eval_config.num_samples), image_size=model_config.vision.img_size,
        resize=int(eval_config.resize), context_length=model_config.text.context_length)
    logging.info("retrieval eval: %d held-out pairs (%d bad samples skipped)", len(self.images),
                 skipped)

  def _embed_fns(self, graphdef, mesh):
    repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def image_fn(params, stats, x):
      return l2_normalize(nnx.merge(graphdef, params, stats).encode_image(x)["image_x"])

    def text_fn(params, stats, ids):
      return l2_normalize(nnx.merge(graphdef, params, stats).encode_text(ids))

    return (jax.jit(image_fn, out_shardings=repl), jax.jit(text_fn, out_shardings=repl))

  def _embed(self, fn, state, data: np.ndarray) -> np.ndarray:
    out = []
    for start in range(0, len(data), self._batch):
      chunk = data[start:start + self._batch]
      n = len(chunk)
      if n < self._batch:  # pad: one compiled shape
        chunk = np.concatenate([chunk, np.zeros((self._batch - n,) + chunk.shape[1:], chunk.dtype)])
      out.append(np.asarray(fn(state["params"], state["batch_stats"], chunk))[:n])
    return np.concatenate(out)

  def __call__(self, ctx: EvalContext) -> EvalResult:
    if self._fns is None:
      self._fns = self._embed_fns(ctx.graphdef, ctx.mesh)
    with jax.set_mesh(ctx.mesh):
      zi = self._embed(self._fns[0], ctx.state, self.images)
      zt = self._embed(self._fns[1], ctx.state, self.texts)
    sims = zi @ zt.T
    scalars = {"n": float(len(sims))}
    for k in (1, 5):
      scalars[f"image_to_text_r@{k}"] = recall_at_k(sims, k)
      scalars[f"text_to_image_r@{k}"] = recall_at_k(sims.T, k)
    return EvalResult(scalars=scalars, images={"similarity": similarity_image(sims)})

