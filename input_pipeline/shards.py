"""Shard lists: globs, brace ranges and lists of either, on local disks or remote filesystems.

``input.train_shards`` may be one pattern, a comma-separated string of patterns, a JSON list, or a
list in the config file. Patterns may use webdataset/img2dataset brace ranges
(``cc3m-{00000..00331}.tar``), brace alternatives (``{cc3m,cc12m}/*.tar``) and glob wildcards.
Remote paths (``gs://``, ``s3://``, ...) go through ``etils.epath`` (TensorFlow's gfile or fsspec
underneath), local paths through ``glob``.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Sequence

_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_GLOB_CHARS = set("*?[")


def _split_top_level(text: str) -> list[str]:
  """Splits on commas that are not inside braces."""
  parts, depth, cur = [], 0, []
  for ch in text:
    if ch == "{":
      depth += 1
    elif ch == "}":
      depth = max(depth - 1, 0)
    if ch == "," and depth == 0:
      parts.append("".join(cur))
      cur = []
    else:
      cur.append(ch)
  parts.append("".join(cur))
  return [p.strip() for p in parts if p.strip()]


def split_patterns(spec: str | Sequence[str]) -> list[str]:
  """``'a/*.tar,b/{0..3}.tar'``, ``'["a", "b"]'`` or ``['a', 'b']`` -> list of patterns."""
  if isinstance(spec, (list, tuple)):
    out = []
    for s in spec:
      out += split_patterns(s)
    return out
  spec = str(spec).strip()
  if spec.startswith("["):
    try:
      return split_patterns(list(json.loads(spec)))
    except json.JSONDecodeError as e:
      raise ValueError(f"shard list {spec!r} looks like JSON but does not parse: {e}") from e
  return _split_top_level(spec)


def expand_braces(pattern: str) -> list[str]:
  """``{000..012}`` numeric ranges (zero padding kept) and ``{a,b}`` alternatives."""
  m = _RANGE.search(pattern)
  if m:
    lo, hi = m.group(1), m.group(2)
    width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
    if int(hi) < int(lo):
      raise ValueError(f"brace range {m.group(0)} in {pattern!r} is empty")
    out = []
    for i in range(int(lo), int(hi) + 1):
      out += expand_braces(pattern[:m.start()] + str(i).zfill(width) + pattern[m.end():])
    return out
  start = pattern.find("{")
  if start >= 0:
    end = pattern.find("}", start)
    if end < 0:
      raise ValueError(f"unbalanced brace in shard pattern {pattern!r}")
    out = []
    for alt in pattern[start + 1:end].split(","):
      out += expand_braces(pattern[:start] + alt + pattern[end + 1:])
    return out
  return [pattern]


def is_remote(path: str) -> bool:
  return "://" in path


def _glob_remote(pattern: str) -> list[str]:
  from etils import epath  # pylint: disable=g-import-not-at-top
  scheme, rest = pattern.split("://", 1)
  parts = rest.split("/")
  first = next(i for i, p in enumerate(parts) if _GLOB_CHARS & set(p))
  base = f"{scheme}://" + "/".join(parts[:first])
  return sorted(str(p) for p in epath.Path(base).glob("/".join(parts[first:])))


def _exists(path: str) -> bool:
  if is_remote(path):
    from etils import epath  # pylint: disable=g-import-not-at-top
    return epath.Path(path).exists()
  return os.path.isfile(path)


def expand_shards(spec: str | Sequence[str], *, check_exists: bool = True) -> list[str]:
  """Resolves ``spec`` to a sorted-per-pattern, duplicate-free list of shard paths.

  Raises:
    ValueError: a pattern that matches nothing (named in the message), or an empty spec.
  """
  patterns = split_patterns(spec)
  if not patterns:
    raise ValueError("input.train_shards is empty: give a glob, a brace range or a list of them, "
                     "e.g. 'data/cc3m/{00000..00331}.tar' or 'gs://bucket/cc12m/*.tar'")
  out: list[str] = []
  for pattern in patterns:
    for p in expand_braces(pattern):
      if _GLOB_CHARS & set(p):
        found = _glob_remote(p) if is_remote(p) else sorted(glob.glob(p))
        if not found:
          raise ValueError(f"shard pattern {p!r} (from {pattern!r}) matches no file")
        out += found
      else:
        if check_exists and not _exists(p):
          raise ValueError(f"shard {p!r} (from {pattern!r}) does not exist")
        out.append(p)
  seen, unique = set(), []
  for p in out:
    if p not in seen:
      seen.add(p)
      unique.append(p)
  return unique


def host_shards(shards: Sequence[str], process_index: int, process_count: int) -> list[str]:
  """Every ``process_count``-th shard starting at ``process_index`` (disjoint across hosts)."""
  if len(shards) < process_count:
    raise ValueError(f"{len(shards)} shards cannot feed {process_count} hosts: every host reads "
                     f"its own shards, so write at least one shard per host (ideally many more)")
  return list(shards[process_index::process_count])
