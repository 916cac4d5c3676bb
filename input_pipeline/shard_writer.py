"""Writing webdataset shards in img2dataset's layout (``KEY.jpg``, ``KEY.txt``, ``KEY.json``).

Used by ``extract_prompts`` (which rewrites shards with the prompt words added) and to make small
datasets for tests and smoke runs.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from typing import Any


class ShardWriter:
  """``with ShardWriter(path) as w: w.write(key, {'jpg': bytes, 'txt': 'caption'})``."""

  def __init__(self, path: str):
    self.path = path
    if "://" in path:
      from etils import epath  # pylint: disable=g-import-not-at-top
      self._file = epath.Path(path).open("wb")
    else:
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      self._file = open(path, "wb")
    self._tar = tarfile.open(fileobj=self._file, mode="w")
    self.count = 0

  def write(self, key: str, parts: dict[str, Any]) -> None:
    """Adds one sample; ``parts`` maps extension -> bytes, str (utf-8) or dict (json)."""
    for ext, value in parts.items():
      if value is None:
        continue
      if isinstance(value, dict):
        value = json.dumps(value).encode()
      elif isinstance(value, str):
        value = value.encode("utf-8")
      info = tarfile.TarInfo(f"{key}.{ext}")
      info.size = len(value)
      info.mtime = int(time.time())
      self._tar.addfile(info, io.BytesIO(value))
    self.count += 1

  def close(self) -> None:
    self._tar.close()
    self._file.close()

  def __enter__(self) -> "ShardWriter":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
