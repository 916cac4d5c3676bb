"""ImageNet-1k validation through tfds ``imagenet2012`` (needs the ``tf`` extra).

tfds' label ``i`` is line ``i`` of its ``labels.txt``, the sorted WordNet ids, i.e. the same class
order as ``imagenet_classes``. Images are read as their stored JPEG bytes (``SkipDecoding``) and
decoded with PIL in the reader threads, so all layouts share one decoder.
"""

from __future__ import annotations

import os

from groupvit_jax.classification.imagenet_data import (EXPECTED, TFDS_VAL_TAR, DatasetLayoutError,
                                                 LabelledImages, decode_image_bytes)

SPLIT = "validation"


def _import_tfds():
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("the tfds layout needs TensorFlow and tensorflow-datasets: install the tf "
                      "extra (pip install 'groupvit-jax[tf]')") from e
  tf.config.set_visible_devices([], "GPU")  # TF only reads records; the GPU stays with JAX
  return tfds


def open_tfds(manual_dir: str, data_dir: str | None = None) -> LabelledImages:
  """The ``validation`` split of tfds ``imagenet2012``, prepared from ``manual_dir`` if needed.

  Args:
    manual_dir: folder holding ``ILSVRC2012_img_val.tar`` (only read when the dataset is not
      prepared yet in ``data_dir``).
    data_dir: tfds data directory (tfds' default, usually ~/tensorflow_datasets, when None).
  """
  tfds = _import_tfds()
  builder = tfds.builder("imagenet2012", data_dir=data_dir)
  if not builder.is_prepared():
    tar = os.path.join(manual_dir, TFDS_VAL_TAR)
    if not os.path.isfile(tar):
      raise DatasetLayoutError(
          f"{manual_dir}: tfds imagenet2012 is not prepared in {builder.data_dir} and {tar} does "
          f"not exist; put the official validation archive there (tfds reads it once).\n{EXPECTED}")
    print(f"preparing tfds imagenet2012 from {tar} into {builder.data_dir} (once) ...", flush=True)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  if SPLIT not in builder.info.splits:
    raise DatasetLayoutError(f"{builder.data_dir}: the prepared imagenet2012 has no {SPLIT!r} "
                             f"split (it has {list(builder.info.splits)})")
  num = builder.info.splits[SPLIT].num_examples

  def items():
    ds = builder.as_dataset(split=SPLIT, shuffle_files=False, read_config=tfds.ReadConfig(
        interleave_cycle_length=1), decoders={"image": tfds.decode.SkipDecoding()})
    for ex in tfds.as_numpy(ds):
      yield (ex["image"], ex["file_name"].decode()), int(ex["label"])

  def read(source):
    data, name = source
    return decode_image_bytes(data, name)

  return LabelledImages("tfds", builder.data_dir, num, items, read, num_classes_present=None,
                        notes=[f"tfds imagenet2012 {SPLIT} from {builder.data_dir}"])
