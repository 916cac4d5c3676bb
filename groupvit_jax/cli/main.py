"""``groupvit-jax`` entry point: one module per subcommand, each with ``register(subparsers)``
that adds its parser and sets ``func(args) -> int``. Expected errors (bad files, bad arguments)
print one ``error: ...`` line and exit 2, without a traceback.

Before a command runs, the on-disk caches are turned on (``groupvit_jax.runtime_cache``: XLA's
compiled programs and class embeddings, under ``$GROUPVIT_JAX_CACHE_DIR``, default
``~/.cache/groupvit_jax``; an empty value turns them off), so a repeated command skips the
compilations and text encodings of the first. Only ``argparse`` is imported for ``--help``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules under groupvit_jax.cli, in help order.
SUBCOMMANDS = ("convert", "segment", "evaluate", "classify", "concepts", "export")


class CLIError(Exception):
  """An error whose message is shown to the user as is."""


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="groupvit-jax", description="GroupViT in JAX/Flax.")
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  for name in SUBCOMMANDS:
    importlib.import_module(f"groupvit_jax.cli.{name}").register(sub)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    from groupvit_jax.runtime_cache import enable_caches  # pylint: disable=g-import-not-at-top
    enable_caches()
    return int(args.func(args) or 0)
  except (CLIError, FileNotFoundError, ValueError, ImportError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  # Run through the package module, so subcommands' CLIError (imported from
  # groupvit_jax.cli.main) is the class caught here under `python -m` too.
  from groupvit_jax.cli.main import main as _main  # pylint: disable=g-import-not-at-top
  sys.exit(_main())
