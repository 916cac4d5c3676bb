"""Training input pipelines: webdataset tar shards (grain), TFDS ArrayRecord datasets and synthetic
batches behind one interface, ``make_train_iter(config.input, mesh=..., rules=..., seed=...)``."""

from input_pipeline.pipeline import BACKENDS, DeviceBatchIterator, make_host_dataset, make_train_iter

__all__ = ["BACKENDS", "DeviceBatchIterator", "make_host_dataset", "make_train_iter"]
