"""groupvit_jax: GroupViT (Semantic Segmentation Emerges from Text Supervision) in JAX/Flax NNX.

Names are imported on first use (PEP 562), so ``import groupvit_jax`` and the command line's
``--help`` do not pay for importing jax and flax.
"""

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "CheckpointMismatchError": "groupvit_jax.convert",
    "TorchMissingError": "groupvit_jax.convert",
    "export_hf": "groupvit_jax.convert",
    "load_pretrained": "groupvit_jax.convert",
    "save_pretrained": "groupvit_jax.convert",
    "GroupViTConfig": "groupvit_jax.model_config",
    "TextConfig": "groupvit_jax.model_config",
    "VisionConfig": "groupvit_jax.model_config",
    "GroupViT": "groupvit_jax.models",
    "GroupViTOutput": "groupvit_jax.models",
    "l2_normalize": "groupvit_jax.models",
    "IMAGENET_MEAN": "groupvit_jax.preprocessing",
    "IMAGENET_STD": "groupvit_jax.preprocessing",
    "preprocess_images": "groupvit_jax.preprocessing",
    "tokenize": "groupvit_jax.tokenizer",
    "enable_caches": "groupvit_jax.runtime_cache",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  if name not in _EXPORTS:
    raise AttributeError(f"module 'groupvit_jax' has no attribute {name!r}")
  value = getattr(importlib.import_module(_EXPORTS[name]), name)
  globals()[name] = value  # later look-ups skip this function
  return value


def __dir__():
  return sorted(set(globals()) | set(__all__))
