"""``--checkpoint`` / ``--revision``: one definition for every command that loads a model."""

from __future__ import annotations

import argparse
import os

CHECKPOINT_HELP = ("Hugging Face hub name (e.g. nvidia/groupvit-gcc-yfcc, read through the hub's "
                   "cache; HF_HUB_OFFLINE=1 reads the cache only), groupvit_jax directory, "
                   "transformers directory/file or official .pth")
REVISION_HELP = "branch, tag or commit of a hub --checkpoint (default: main)"


def add_checkpoint_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
  """Adds ``--checkpoint`` and ``--revision`` to ``parser``."""
  parser.add_argument("--checkpoint", required=required, help=CHECKPOINT_HELP)
  parser.add_argument("--revision", default=None, help=REVISION_HELP)


def load_model(args, checkpoint: str | None = None, **kwargs):
  """``load_pretrained`` of ``--checkpoint`` (or ``checkpoint``) at ``--revision``."""
  from groupvit_jax.convert import load_pretrained  # pylint: disable=g-import-not-at-top
  return load_pretrained(checkpoint or args.checkpoint, revision=getattr(args, "revision", None),
                         **kwargs)


def checkpoint_label(args, checkpoint: str | None = None) -> str:
  """What results files record: the hub name (with its revision) or the absolute path."""
  from groupvit_jax.convert import hub  # pylint: disable=g-import-not-at-top
  name = checkpoint or args.checkpoint
  if hub.is_hub_name(name):
    rev = getattr(args, "revision", None)
    return hub.repo_id_of(name) + (f"@{rev}" if rev else "")
  return os.path.abspath(name)
