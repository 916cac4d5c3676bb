"""groupvit_jax: GroupViT (Semantic Segmentation Emerges from Text Supervision) in JAX/Flax NNX."""

from groupvit_jax.convert import (CheckpointMismatchError, TorchMissingError, export_hf,
                                  load_pretrained, save_pretrained)
from groupvit_jax.model_config import GroupViTConfig, TextConfig, VisionConfig
from groupvit_jax.models import GroupViT, GroupViTOutput, l2_normalize
from groupvit_jax.preprocessing import IMAGENET_MEAN, IMAGENET_STD, preprocess_images
from groupvit_jax.tokenizer import tokenize

__version__ = "0.1.0"

__all__ = [
    "CheckpointMismatchError", "GroupViT", "GroupViTConfig", "GroupViTOutput", "IMAGENET_MEAN",
    "IMAGENET_STD", "TextConfig", "TorchMissingError", "VisionConfig", "export_hf", "l2_normalize",
    "load_pretrained", "preprocess_images", "save_pretrained", "tokenize",
]
