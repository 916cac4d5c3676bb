"""Periodic zero-shot segmentation during training (``config.evals.<name>.type='segmentation'``).

Runs the real evaluation (``groupvit_jax.segmentation.benchmark.evaluate_segmentation``) on a dataset
in one of the registered layouts (e.g. the PASCAL VOC sample, or the shapes world's val split in
the folder layout) and writes mIoU, per-class IoU and overlay/group pictures.

Keys: ``dataset``, ``data_root`` ('' disables the eval), ``split``, ``protocol`` ('' = the
dataset's default), ``limit`` (images; 0 = all), ``num_images`` (pictures), ``every_steps``.
"""

from __future__ import annotations

import logging

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from PIL import Image

from groupvit_jax.train.evals import EvalContext, EvalResult

PICTURE_HEIGHT = 192


def _fixed_height(img: Image.Image, width: int) -> np.ndarray:
  """Pictures of one batch must share a shape: scale to PICTURE_HEIGHT, pad to ``width``."""
  scale = PICTURE_HEIGHT / img.height
  img = img.resize((max(1, int(round(img.width * scale))), PICTURE_HEIGHT), Image.NEAREST)
  canvas = Image.new("RGB", (width, PICTURE_HEIGHT), (255, 255, 255))
  canvas.paste(img.crop((0, 0, min(img.width, width), PICTURE_HEIGHT)), (0, 0))
  return np.asarray(canvas)


class SegmentationEval:

  def __init__(self, eval_config, *, model_config, input_config):
    del model_config, input_config
    from groupvit_jax.segmentation.datasets import open_dataset  # pylint: disable=g-import-not-at-top
    from groupvit_jax.segmentation.protocols import default_protocol, get_protocol  # pylint: disable=g-import-not-at-top
    self.disabled_reason = None
    if not str(eval_config.data_root).strip():
      self.disabled_reason = "no data_root (set evals.segmentation.data_root)"
      return
    self.protocol = (get_protocol(eval_config.protocol) if eval_config.protocol
                     else default_protocol(eval_config.dataset))
    self.protocol.settings(eval_config.dataset)
    self.dataset = open_dataset(eval_config.dataset, eval_config.data_root, eval_config.split
                                ).limit(int(eval_config.limit) or None)
    self.num_images = int(eval_config.num_images)
    logging.info("segmentation eval: %s %s, %d images, protocol %s", eval_config.dataset,
                 eval_config.split, len(self.dataset), self.protocol.name)

  def _host_model(self, ctx: EvalContext):
    """The current model on one device (gathered from the sharded train state)."""
    state = multihost_utils.process_allgather(ctx.state, tiled=True)
    return nnx.merge(ctx.graphdef, state["params"], state["batch_stats"])

  def __call__(self, ctx: EvalContext) -> EvalResult:
    from groupvit_jax.segmentation import visualize  # pylint: disable=g-import-not-at-top
    from groupvit_jax.segmentation.benchmark import evaluate_segmentation  # pylint: disable=g-import-not-at-top
    from groupvit_jax.segmentation.segmenter import Segmenter  # pylint: disable=g-import-not-at-top
    with jax.default_device(jax.local_devices()[0]):
      model = self._host_model(ctx)
      res = evaluate_segmentation(model, self.dataset, self.protocol, progress=False)
      scalars = {"mIoU": res["mIoU"], "mAcc": res["mAcc"], "aAcc": res["aAcc"]}
      scalars.update({f"iou/{k}": v for k, v in res["per_class_iou"].items() if v is not None})
      images = {}
      if self.num_images:
        settings = self.protocol.settings(self.dataset.name)
        seg = Segmenter.from_protocol(model, self.protocol, self.dataset.prompt_classes,
                                      settings.bg_threshold, templates=settings.templates)
        overlays, groups = [], []
        for i in range(min(self.num_images, len(self.dataset))):
          ex = self.dataset[i]
          labels = seg.segment(ex.image)
          overlays.append(visualize.overlay(ex.image, labels, self.dataset.classes,
                                            with_bg=settings.with_bg))
          small, maps = seg.group_maps(ex.image)
          groups.append(visualize.group_panels(small, maps))
        for key, pics in (("overlays", overlays), ("groups", groups)):
          width = max(int(round(p.width * PICTURE_HEIGHT / p.height)) for p in pics)
          images[key] = np.stack([_fixed_height(p, width) for p in pics])
    return EvalResult(scalars=scalars, images=images)
