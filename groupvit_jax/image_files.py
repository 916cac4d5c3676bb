"""Turning command-line image arguments (files, folders, globs) into a list of image files."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _is_image_name(path: str) -> bool:
  return path.lower().endswith(IMAGE_EXTENSIONS)


def expand_image_args(args: Sequence[str]) -> list[str]:
  """Files as given, folders -> their image files (sorted, not recursive), globs -> their
  matches (sorted; ``**`` recurses). Duplicates are dropped, first occurrence kept.

  Raises:
    FileNotFoundError: a path that does not exist, a glob that matches nothing, or a folder
      without image files (the message names the argument).
  """
  out: list[str] = []
  for arg in args:
    if os.path.isdir(arg):
      found = sorted(os.path.join(arg, f) for f in os.listdir(arg)
                     if _is_image_name(f) and os.path.isfile(os.path.join(arg, f)))
      if not found:
        raise FileNotFoundError(f"{arg}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    elif os.path.exists(arg):
      found = [arg]
    elif glob.has_magic(arg):
      found = sorted(p for p in glob.glob(arg, recursive=True) if os.path.isfile(p))
      if not found:
        raise FileNotFoundError(f"{arg}: no file matches this pattern")
    else:
      raise FileNotFoundError(f"{arg}: no such file or folder")
    out.extend(found)
  return list(dict.fromkeys(out))
