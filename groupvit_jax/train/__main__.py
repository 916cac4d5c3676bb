"""``python -m groupvit_jax.train --config ... --workdir ...``: see ``launch.py``."""

from absl import app

from groupvit_jax.train import launch

if __name__ == "__main__":
  app.run(launch.main, flags_parser=launch.parse_flags)
