"""``groupvit-jax convert SRC DST [--to native|hf]``: any loadable checkpoint -> our format or a
transformers directory."""

from __future__ import annotations

import argparse
import os

from groupvit_jax.cli.checkpoint_args import REVISION_HELP, load_model
from groupvit_jax.cli.main import CLIError


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser(
      "convert", help="convert weights (official .pth, transformers dir, ours) to ours or to hf",
      description="Loads SRC with groupvit_jax.load_pretrained and writes DST: the project's own "
      "format (default) or, with --to hf, a transformers GroupViTModel directory.")
  p.add_argument("src", help="hub name (e.g. nvidia/groupvit-gcc-yfcc), official .pth, "
                 "transformers directory/file, or groupvit_jax directory")
  p.add_argument("--revision", default=None, help=REVISION_HELP)
  p.add_argument("dst", help="output directory (must not exist or be empty)")
  p.add_argument("--to", choices=("native", "hf"), default="native",
                 help="output format (default: native)")
  p.set_defaults(func=run)


def run(args) -> int:
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from groupvit_jax.convert import export_hf, save_pretrained  # pylint: disable=g-import-not-at-top
  if os.path.exists(args.dst) and os.listdir(args.dst):
    raise CLIError(f"{args.dst}: output directory exists and is not empty")
  print(f"loading {args.src} ...", flush=True)
  model = load_model(args, args.src)
  n = sum(v.get_value().size for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param)))
  out = export_hf(model, args.dst) if args.to == "hf" else save_pretrained(model, args.dst)
  print(f"wrote {args.to} checkpoint ({n / 1e6:.2f}M parameters) to {out}")
  return 0
