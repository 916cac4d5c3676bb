"""Evaluating a model on a segmentation benchmark under a named protocol."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from groupvit_jax.image_io import ImageReadError
from groupvit_jax.segmentation.datasets import SegDataset
from groupvit_jax.segmentation.miou import ConfusionMatrix
from groupvit_jax.segmentation.protocols import Protocol
from groupvit_jax.segmentation.segmenter import Segmenter


def prefetch(dataset: SegDataset, workers: int = 2, depth: int = 8,
             skipped: list[dict] | None = None) -> Iterator:
  """Examples of ``dataset`` in order, decoded ``depth`` ahead by ``workers`` threads.

  An image or label that cannot be read raises ``ImageReadError`` naming the file; with
  ``skipped`` (a list) the example is left out instead and ``{"key", "image", "label",
  "error"}`` appended to it.
  """
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    futures = [pool.submit(dataset.__getitem__, i) for i in range(min(depth, len(dataset)))]
    for i in range(len(dataset)):
      try:
        ex = futures[i].result()
      except ImageReadError as e:
        if skipped is None:
          raise
        s = dataset.samples[i]
        skipped.append({"key": s.key, "image": s.image_path, "label": s.label_path,
                        "error": str(e)})
        ex = None
      if i + depth < len(dataset):
        futures.append(pool.submit(dataset.__getitem__, i + depth))
      futures[i] = None
      if ex is not None:
        yield ex


def evaluate_segmentation(model, dataset: SegDataset, protocol: Protocol, *,
                          images_per_batch: int | None = None, window_chunk: int = 8,
                          progress: bool = True, text_embeddings: np.ndarray | None = None,
                          mesh=None, skip_bad: bool = False) -> dict:
  """mIoU of ``model`` on ``dataset`` under ``protocol`` (spec 5.5).

  ``mesh``: optional device mesh to split the images over (see ``Segmenter``).
  ``skip_bad``: leave out examples whose image or label cannot be read (listed in ``skipped``)
  instead of stopping with ``ImageReadError``.

  Returns:
    a JSON-ready dict: ``mIoU``, ``mAcc``, ``aAcc`` (fractions), ``per_class_iou`` and
    ``per_class_acc`` (name -> fraction, None where the class is absent from ground truth and
    prediction), ``protocol``, ``dataset``, ``num_images``, ``bg_threshold``, ``templates``,
    ``seconds``, ``images_per_second`` and ``skipped`` (the examples left out: ``key``,
    ``image``, ``label``, ``error``; empty unless ``skip_bad``).
  """
  settings = protocol.settings(dataset.name)
  if settings.with_bg != dataset.has_background:
    raise ValueError(f"protocol {protocol.name} sets bg_threshold={settings.bg_threshold} for "
                     f"{dataset.name}, whose classes {'do' if dataset.has_background else 'do not'} "
                     f"start with background")
  seg = Segmenter.from_protocol(model, protocol, dataset.prompt_classes, settings.bg_threshold,
                                templates=settings.templates, images_per_batch=images_per_batch,
                                window_chunk=window_chunk, text_embeddings=text_embeddings,
                                mesh=mesh)
  conf = ConfusionMatrix(len(dataset.classes))
  labels: dict[str, np.ndarray] = {}
  skipped: list[dict] = []

  def images() -> Iterable:
    for ex in prefetch(dataset, skipped=skipped if skip_bad else None):
      labels[ex.key] = ex.label
      yield ex.key, ex.image

  start = time.perf_counter()
  bar = tqdm(total=len(dataset), desc=f"{dataset.name} [{protocol.name}]", unit="img",
             disable=not progress)
  for key, pred in seg.segment_stream(images()):
    conf.update(pred, labels.pop(key), name=key)
    bar.update(1)
  bar.update(len(skipped))  # left out, but gone through
  bar.close()
  seconds = time.perf_counter() - start
  m = conf.metrics()
  as_dict = lambda values: {n: (None if np.isnan(v) else float(v))
                            for n, v in zip(dataset.classes, values)}
  return {
      "dataset": dataset.name, "protocol": protocol.name, "num_images": conf.num_images,
      "mIoU": m["mIoU"], "mAcc": m["mAcc"], "aAcc": m["aAcc"],
      "per_class_iou": as_dict(m["iou"]), "per_class_acc": as_dict(m["acc"]),
      "bg_threshold": settings.bg_threshold, "templates": settings.templates,
      "geometry": {"img_scale": list(protocol.img_scale), "crop": protocol.crop,
                   "stride": protocol.stride, "mode": protocol.mode},
      "seconds": seconds, "images_per_second": conf.num_images / seconds if seconds else None,
      "skipped": skipped,
  }
