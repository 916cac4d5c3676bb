"""Named zero-shot segmentation protocols (spec 5.2 to 5.5).

A protocol fixes the test geometry (keep-ratio resize, sliding-window crop and stride) and, per
dataset, the background threshold and the prompt templates. Every number this package writes
carries the name of the protocol that produced it.

- ``groupvit``: the official evaluation of the GroupViT code (VOC, PASCAL Context, COCO-Object;
  thresholds 0.95 / 0.35 / 0.95, ``img_scale=(2048, 448)``, 448x448 windows at stride 224).
- ``benchmark8``: the eight benchmarks later open-vocabulary papers report (VOC with and without
  background, Context-60 and -59, COCO-Object, COCO-Stuff-171, Cityscapes-19, ADE20K-150) under the
  same geometry. Datasets with a background class keep the official thresholds; the others have no
  background channel.
"""

from __future__ import annotations

import dataclasses

import ml_collections


@dataclasses.dataclass(frozen=True)
class DatasetSettings:
  """How one dataset is evaluated under a protocol."""

  dataset: str  # a key of groupvit_jax.segmentation.datasets.DATASETS
  bg_threshold: float | None  # None: the dataset has no background channel
  templates: str = "simple"

  @property
  def with_bg(self) -> bool:
    return self.bg_threshold is not None


@dataclasses.dataclass(frozen=True)
class Protocol:
  """Test geometry plus per-dataset settings.

  ``img_scale`` is mmseg's ``(long, short)`` bound: an image of size (h, w) is resized by
  ``f = min(long / max(h, w), short / min(h, w))``.
  """

  name: str
  datasets: tuple[DatasetSettings, ...]
  img_scale: tuple[int, int] = (2048, 448)
  crop: int = 448
  stride: int = 224
  mode: str = "slide"  # 'slide' (official) or 'whole' (one pass on the resized image)
  description: str = ""

  def __post_init__(self):
    if self.mode not in ("slide", "whole"):
      raise ValueError(f"protocol {self.name}: mode must be 'slide' or 'whole', got {self.mode!r}")
    if not 0 < self.stride <= self.crop:
      raise ValueError(f"protocol {self.name}: need 0 < stride <= crop, got {self.stride}, {self.crop}")

  def dataset_names(self) -> list[str]:
    return [d.dataset for d in self.datasets]

  def settings(self, dataset: str) -> DatasetSettings:
    for d in self.datasets:
      if d.dataset == dataset:
        return d
    raise ValueError(f"protocol {self.name!r} does not cover dataset {dataset!r}; it covers "
                     f"{self.dataset_names()} (see groupvit_jax.segmentation.protocols)")

  def replace(self, **kw) -> "Protocol":
    return dataclasses.replace(self, **kw)

  def to_config(self) -> ml_collections.ConfigDict:
    """The protocol as a (locked) ConfigDict, e.g. for logs and result files."""
    d = dataclasses.asdict(self)
    d["datasets"] = {s["dataset"]: s for s in d["datasets"]}
    cfg = ml_collections.ConfigDict(d)
    cfg.lock()
    return cfg


GROUPVIT = Protocol(
    name="groupvit",
    datasets=(DatasetSettings("voc", 0.95), DatasetSettings("context", 0.35),
              DatasetSettings("coco_object", 0.95)),
    description="official GroupViT evaluation: shorter side 448, 448x448 windows, stride 224, "
    "background thresholds VOC 0.95 / Context 0.35 / COCO-Object 0.95")

BENCHMARK8 = Protocol(
    name="benchmark8",
    datasets=(DatasetSettings("voc", 0.95), DatasetSettings("voc20", None),
              DatasetSettings("context", 0.35), DatasetSettings("context59", None),
              DatasetSettings("coco_object", 0.95), DatasetSettings("coco_stuff", None),
              DatasetSettings("cityscapes", None), DatasetSettings("ade20k", None)),
    description="the 8 benchmarks of later open-vocabulary papers under the GroupViT geometry "
    "(shorter side 448, 448x448 windows, stride 224); background only where the dataset has one")

# The synthetic shapes world of `make demo` (and your own small images in the folder layout):
# whole 64x64 images (no resize, one pass), prompts "a photo of a {}.", the background threshold
# chosen on the world's validation split (input_pipeline/synthetic_world.py), never on test.
SHAPES = Protocol(
    name="shapes",
    datasets=(DatasetSettings("folder", 0.5),),
    img_scale=(2048, 64), crop=64, stride=64, mode="whole",
    description="synthetic shapes world: whole 64x64 images, background threshold 0.5")

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (GROUPVIT, BENCHMARK8, SHAPES)}


def with_bg_threshold(protocol: Protocol, dataset: str, threshold: float) -> Protocol:
  """``protocol`` with ``dataset``'s background threshold replaced (named ``NAME+bg=T``)."""
  settings = protocol.settings(dataset)
  if not settings.with_bg:
    raise ValueError(f"dataset {dataset!r} has no background channel under protocol "
                     f"{protocol.name!r}; a background threshold does not apply")
  new = tuple(dataclasses.replace(d, bg_threshold=threshold) if d.dataset == dataset else d
              for d in protocol.datasets)
  return protocol.replace(name=f"{protocol.name}+bg={threshold:g}", datasets=new)


# The protocol a dataset is evaluated under when none is named.
DEFAULT_PROTOCOL = {"voc": "groupvit", "context": "groupvit", "coco_object": "groupvit",
                    "folder": "shapes"}


def default_protocol(dataset: str) -> Protocol:
  return get_protocol(DEFAULT_PROTOCOL.get(dataset, "benchmark8"))


def get_protocol(name: str) -> Protocol:
  if name not in PROTOCOLS:
    raise ValueError(f"unknown protocol {name!r}; expected one of {sorted(PROTOCOLS)}")
  return PROTOCOLS[name]
