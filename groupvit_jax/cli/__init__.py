"""The ``groupvit-jax`` command line."""
