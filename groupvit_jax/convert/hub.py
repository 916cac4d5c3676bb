"""Checkpoints named on the Hugging Face hub (``nvidia/groupvit-gcc-yfcc``), fetched through
``huggingface_hub`` into its cache and read from there.

Honours huggingface_hub's own variables, read at call time (not only when the library was
first imported): ``HF_HUB_OFFLINE=1`` (cache only), ``HF_HUB_CACHE`` / ``HF_HOME`` (where the
cache lives). The cache layout is the library's: ``models--org--name/snapshots/<commit>/...``
with ``refs/<branch>`` holding the commit a branch or tag points to.
"""

from __future__ import annotations

import os
import re

# "org/name": what the hub accepts as a model id (letters, digits, '-', '_', '.'; no '..').
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
HUB_PREFIX = "hf://"

# A transformers GroupViT directory needs only these; tokenizer files are not read.
_WEIGHT_PATTERNS = ["config.json", "*.safetensors", "pytorch_model.bin"]


class HubCheckpointNotFoundError(FileNotFoundError):
  """A hub checkpoint that is neither cached nor downloadable now."""


def is_hub_name(name: str) -> bool:
  """True for ``hf://org/name`` and for ``org/name`` that is not an existing local path."""
  name = os.fspath(name)
  if name.startswith(HUB_PREFIX):
    return True
  return not os.path.exists(name) and bool(_REPO_ID.match(name)) and ".." not in name


def repo_id_of(name: str) -> str:
  name = os.fspath(name)
  repo_id = name[len(HUB_PREFIX):] if name.startswith(HUB_PREFIX) else name
  if not _REPO_ID.match(repo_id) or ".." in repo_id:
    raise ValueError(f"{name}: not a hub model id (expected 'org/name', e.g. "
                     "'nvidia/groupvit-gcc-yfcc')")
  return repo_id


def _truthy(value: str | None) -> bool:
  return (value or "").strip().lower() in ("1", "true", "yes", "on")


def offline() -> bool:
  from huggingface_hub import constants  # pylint: disable=g-import-not-at-top
  return _truthy(os.environ.get("HF_HUB_OFFLINE")) or bool(constants.HF_HUB_OFFLINE)


def cache_dir() -> str:
  """The hub cache folder as the environment says now (HF_HUB_CACHE, then HF_HOME/hub)."""
  if os.environ.get("HF_HUB_CACHE"):
    return os.environ["HF_HUB_CACHE"]
  if os.environ.get("HF_HOME"):
    return os.path.join(os.environ["HF_HOME"], "hub")
  from huggingface_hub import constants  # pylint: disable=g-import-not-at-top
  return constants.HF_HUB_CACHE


def fetch_command(repo_id: str, revision: str | None = None) -> str:
  """The one shell command that puts ``repo_id`` into the cache."""
  rev = f" --revision {revision}" if revision else ""
  return f"hf download {repo_id}{rev}"


def resolve(name: str, revision: str | None = None) -> str:
  """Local snapshot folder of a hub checkpoint: from the cache, downloaded if allowed.

  Args:
    name: ``org/name`` or ``hf://org/name``.
    revision: branch, tag or commit (default: ``main``).
  Returns:
    the snapshot directory (a transformers GroupViT directory).
  Raises:
    HubCheckpointNotFoundError: offline (or unreachable) and not cached; unknown repository
      or revision. The message names the repository and the command that fetches it.
  """
  from huggingface_hub import errors, snapshot_download  # pylint: disable=g-import-not-at-top
  repo_id = repo_id_of(name)
  where = f"{repo_id}" + (f" (revision {revision})" if revision else "")
  try:
    return snapshot_download(repo_id, revision=revision, cache_dir=cache_dir(),
                             local_files_only=offline(), allow_patterns=_WEIGHT_PATTERNS,
                             library_name="groupvit_jax")
  except errors.LocalEntryNotFoundError as e:
    mode = "downloads are off (HF_HUB_OFFLINE=1)" if offline() else "the hub is unreachable"
    local = "" if os.fspath(name).startswith(HUB_PREFIX) else f" (nor a local path {name})"
    raise HubCheckpointNotFoundError(
        f"{where} is not in the Hugging Face cache ({cache_dir()}){local} and {mode}; fetch it "
        f"once with: {fetch_command(repo_id, revision)}") from e
  except errors.RevisionNotFoundError as e:
    raise HubCheckpointNotFoundError(f"{repo_id}: no revision {revision!r} on the hub") from e
  except errors.RepositoryNotFoundError as e:
    raise HubCheckpointNotFoundError(
        f"{repo_id}: no such model repository on the hub (or it is private: log in with "
        "`hf auth login`)") from e
