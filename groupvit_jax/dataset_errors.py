"""``DatasetLayoutError``: the one error for a data folder or labels file that does not hold the
layout a reader expects (segmentation benchmarks and ImageNet alike)."""

from __future__ import annotations


class DatasetLayoutError(FileNotFoundError, ValueError):
  """A data root or labels file that does not match the expected layout. The message names the
  path, what was expected and, where it helps, what was found. A ``FileNotFoundError`` (a missing
  dataset) and a ``ValueError`` (a malformed one), so either ``except`` catches it."""
