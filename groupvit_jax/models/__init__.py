"""GroupViT modules (Flax NNX)."""

from groupvit_jax.models.groupvit import GroupViT, GroupViTOutput, l2_normalize

__all__ = ["GroupViT", "GroupViTOutput", "l2_normalize"]
