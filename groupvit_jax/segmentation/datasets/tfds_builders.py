"""tfds builders for the segmentation benchmarks, prepared from a manual directory.

Needs the ``tf`` extra (tensorflow + tensorflow-datasets). The manual directory is the same data
root the readers take (``groupvit_jax.segmentation.datasets``), and the examples are exactly what the
readers return (labels already converted to label ids, 255 = ignore)::

  from groupvit_jax.segmentation.datasets import tfds_builders
  builder = tfds_builders.builder("voc", data_dir="/data/tfds")
  builder.download_and_prepare(download_config=tfds_builders.manual(".../VOCdevkit"))
  source = builder.as_data_source(split="validation")  # random access, no TF needed to read
"""

from __future__ import annotations

try:
  import tensorflow_datasets as tfds
except ImportError as e:  # pragma: no cover - depends on the installed extras
  raise ImportError("groupvit_jax.segmentation.datasets.tfds_builders needs tensorflow-datasets; "
                    "install the project's 'tf' extra (pip install -e '.[tf]')") from e

import numpy as np

from groupvit_jax.segmentation.datasets import DATASETS, open_dataset

_SPLITS = {"validation": "val", "train": "train"}


class _SegmentationBuilder(tfds.core.GeneratorBasedBuilder):
  """Base class; subclasses set ``DATASET`` (a key of ``DATASETS``) and ``CLASSES``."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Official layout read by groupvit_jax.segmentation.datasets."}
  DATASET = ""
  CLASSES: tuple[str, ...] = ()
  SPLITS: tuple[str, ...] = ("validation",)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"{self.DATASET} semantic segmentation ({len(self.CLASSES)} classes; label "
        f"255 = ignore). Class names in metadata['classes'].",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "segmentation": tfds.features.Image(shape=(None, None, 1), use_colormap=False),
            "file_name": tfds.features.Text(),
        }),
        supervised_keys=("image", "segmentation"),
        metadata=tfds.core.MetadataDict(classes=list(self.CLASSES)),
    )

  def _split_generators(self, dl_manager):
    root = str(dl_manager.manual_dir)
    return {name: self._generate_examples(root, _SPLITS[name]) for name in self.SPLITS}

  def _generate_examples(self, root: str, split: str):
    dataset = open_dataset(self.DATASET, root, split)
    for ex in dataset:
      yield ex.key, {"image": ex.image, "segmentation": ex.label[..., None].astype(np.uint8),
                     "file_name": ex.key}


def _make(dataset: str) -> type:
  entry = DATASETS[dataset]
  name = "Groupvit" + "".join(p.capitalize() for p in dataset.split("_"))
  attrs = {"DATASET": dataset, "CLASSES": entry.classes, "__module__": __name__,
           "MANUAL_DOWNLOAD_INSTRUCTIONS": f"Point manual_dir at {entry.root_hint}, laid out as "
           f"the official release."}
  return type(name, (_SegmentationBuilder,), attrs)


# Official benchmarks only (the generic folder layout has no fixed class list).
BUILDERS: dict[str, type] = {d: _make(d) for d, e in DATASETS.items() if e.classes}


def builder(dataset: str, data_dir: str, file_format: str = "array_record"
            ) -> tfds.core.DatasetBuilder:
  """The tfds builder of ``dataset`` (a key of ``DATASETS``) storing under ``data_dir``.

  ``array_record`` (default) gives random access without TensorFlow (``as_data_source``).
  """
  if dataset not in BUILDERS:
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(BUILDERS)}")
  return BUILDERS[dataset](data_dir=str(data_dir), file_format=file_format)


def manual(root: str) -> tfds.download.DownloadConfig:
  """DownloadConfig reading the official layout under ``root`` (nothing is downloaded)."""
  return tfds.download.DownloadConfig(manual_dir=str(root))
