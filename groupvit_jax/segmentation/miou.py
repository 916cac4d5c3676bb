"""Dataset-level mIoU as mmseg computes it (spec 5.5).

One confusion matrix accumulates over the whole split; pixels whose ground truth is
``ignore_index`` (255) are left out. Per class: IoU = intersection / union. A class absent from
both ground truth and prediction has union 0 and IoU NaN and is left out of the mean
(``nanmean``); background counts as a class where the dataset has one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ConfusionMatrix:
  """``matrix[gt, pred]`` pixel counts over a dataset."""

  def __init__(self, num_classes: int, ignore_index: int = 255):
    if num_classes <= 0:
      raise ValueError(f"num_classes must be positive, got {num_classes}")
    self.num_classes = num_classes
    self.ignore_index = ignore_index
    self.matrix = np.zeros((num_classes, num_classes), np.int64)
    self.num_images = 0

  def update(self, pred: np.ndarray, label: np.ndarray, name: str = "") -> None:
    """Adds one image.

    Args:
      pred: [H, W] predicted labels in [0, num_classes).
      label: [H, W] ground truth in [0, num_classes) or ``ignore_index``.
      name: shown in error messages (e.g. the label file).
    """
    pred = np.asarray(pred)
    label = np.asarray(label)
    where = f" ({name})" if name else ""
    if pred.shape != label.shape:
      raise ValueError(f"prediction {pred.shape} and ground truth {label.shape} differ in shape{where}")
    keep = label != self.ignore_index
    gt = label[keep].astype(np.int64)
    pr = pred[keep].astype(np.int64)
    n = self.num_classes
    bad = (gt < 0) | (gt >= n)
    if bad.any():
      raise ValueError(f"ground truth holds values {sorted(np.unique(gt[bad]).tolist())[:10]} outside "
                       f"0..{n - 1} and the ignore index {self.ignore_index}{where}")
    if pr.size and (pr.min() < 0 or pr.max() >= n):
      raise ValueError(f"predictions outside 0..{n - 1}{where}")
    self.matrix += np.bincount(gt * n + pr, minlength=n * n).reshape(n, n)
    self.num_images += 1

  def merge(self, other: "ConfusionMatrix") -> None:
    if other.num_classes != self.num_classes:
      raise ValueError("cannot merge confusion matrices of different sizes")
    self.matrix += other.matrix
    self.num_images += other.num_images

  def metrics(self) -> dict[str, np.ndarray | float]:
    """``iou`` and ``acc`` per class (NaN where undefined), ``mIoU``, ``mAcc``, ``aAcc``."""
    return metrics_from_confusion(self.matrix)


def metrics_from_confusion(matrix: np.ndarray) -> dict[str, np.ndarray | float]:
  matrix = np.asarray(matrix, np.float64)
  inter = np.diag(matrix)
  area_gt = matrix.sum(axis=1)
  area_pred = matrix.sum(axis=0)
  union = area_gt + area_pred - inter
  with np.errstate(divide="ignore", invalid="ignore"):
    iou = inter / union
    acc = inter / area_gt
    aacc = inter.sum() / area_gt.sum() if area_gt.sum() else np.nan
  return {"iou": iou, "acc": acc, "mIoU": _nanmean(iou), "mAcc": _nanmean(acc), "aAcc": float(aacc)}


def _nanmean(x: np.ndarray) -> float:
  x = x[~np.isnan(x)]
  return float(x.mean()) if x.size else float("nan")


def per_class_table(names: Sequence[str], metrics: dict, title: str = "") -> str:
  """A fixed-width table of per-class IoU and accuracy (percent), with the means."""
  width = max([len(n) for n in names] + [8])
  lines = [title] if title else []
  lines.append(f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}")
  lines.append("-" * (width + 16))
  for name, iou, acc in zip(names, metrics["iou"], metrics["acc"]):
    lines.append(f"{name:<{width}}  {_pct(iou)}  {_pct(acc)}")
  lines.append("-" * (width + 16))
  lines.append(f"{'mean':<{width}}  {_pct(metrics['mIoU'])}  {_pct(metrics['mAcc'])}")
  lines.append(f"{'aAcc':<{width}}  {_pct(metrics['aAcc'])}")
  return "\n".join(lines)


def _pct(x: float) -> str:
  return f"{'nan':>6}" if np.isnan(x) else f"{100 * x:6.2f}"
