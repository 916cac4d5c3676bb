"""`groupvit-jax --help` stays fast: building the parser imports neither jax nor flax."""

import subprocess
import sys


def test_help_imports_no_jax():
  code = ("import sys\n"
          "from groupvit_jax.cli.main import build_parser\n"
          "build_parser().format_help()\n"
          "import groupvit_jax\n"
          "heavy = sorted(m for m in ('jax', 'flax', 'tensorflow', 'torch', 'huggingface_hub') "
          "if m in sys.modules)\n"
          "print(heavy)\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "[]"


def test_lazy_package_names_resolve():
  import groupvit_jax  # pylint: disable=g-import-not-at-top
  for name in groupvit_jax.__all__:
    assert getattr(groupvit_jax, name) is not None, name
