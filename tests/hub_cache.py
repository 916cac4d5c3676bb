"""A Hugging Face hub cache laid out the way huggingface_hub lays it out, built by hand:
``models--org--name/blobs/<sha256>``, ``snapshots/<commit>/<file>`` (relative links to the blobs)
and ``refs/<branch or tag>`` (the commit it points to)."""

import hashlib
import os
import pathlib


def add_snapshot(cache: pathlib.Path, repo_id: str, ref: str, commit: str,
                 src_dir: pathlib.Path) -> pathlib.Path:
  """Puts the files of ``src_dir`` into ``cache`` as ``repo_id`` at ``commit``, with ``ref``
  pointing to it; returns the snapshot folder."""
  root = cache / ("models--" + repo_id.replace("/", "--"))
  (root / "blobs").mkdir(parents=True, exist_ok=True)
  snap = root / "snapshots" / commit
  snap.mkdir(parents=True)
  for f in sorted(src_dir.iterdir()):
    data = f.read_bytes()
    blob = root / "blobs" / hashlib.sha256(data).hexdigest()
    blob.write_bytes(data)
    os.symlink(os.path.relpath(blob, snap), snap / f.name)
  (root / "refs").mkdir(exist_ok=True)
  (root / "refs" / ref).write_text(commit)
  return snap


def tiny_hub_cache(base: pathlib.Path, repo_id: str, seed: int = 0) -> pathlib.Path:
  """A cache under ``base`` holding a tiny transformers GroupViT as ``repo_id`` (main)."""
  from reference_models import TINY_HF, make_hf_model  # pylint: disable=g-import-not-at-top
  make_hf_model(TINY_HF, seed=seed).save_pretrained(str(base / "src"))
  add_snapshot(base / "hub", repo_id, "main", "c" * 40, base / "src")
  return base / "hub"
