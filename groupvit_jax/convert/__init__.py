"""Checkpoint conversion: official PyTorch keys, transformers keys and the project's own format."""

from groupvit_jax.convert.flat_state import CheckpointMismatchError
from groupvit_jax.convert.load import export_hf, load_pretrained, save_pretrained
from groupvit_jax.convert.readers import TorchMissingError

__all__ = ["CheckpointMismatchError", "TorchMissingError", "export_hf", "load_pretrained",
           "save_pretrained"]
