"""Training: configs (``config_lib``), state, the jitted step, the loop, checkpoints, logging and
periodic evaluations. Entry point: ``python -m groupvit_jax.train``."""
