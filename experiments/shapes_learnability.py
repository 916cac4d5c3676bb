"""Can the shapes demo's image encoder learn shape kinds at all in the CPU budget?

Trains the demo's plain-ViT image encoder (groupvit_jax VisionEncoder, no text) *with labels*
(multi-label shape presence, sigmoid cross-entropy on the pooled token) on scenes of a world
where every shape takes any colour, and prints the held-out AUC per shape kind. This upper-bounds
what text supervision can teach the same encoder in the same number of samples
(experiments/results/shapes_demo_notes.md).

    python experiments/shapes_learnability.py --steps 400 [--lr 1e-3] [--pos-embed sincos2d]
        [--image-size 32 --patch 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--steps", type=int, default=400)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--lr", type=float, default=1e-3)
  p.add_argument("--image-size", type=int, default=64)
  p.add_argument("--patch", type=int, default=8)
  p.add_argument("--width", type=int, default=96)
  p.add_argument("--depth", type=int, default=6)
  p.add_argument("--pos-embed", default="normal", choices=("normal", "sincos2d"))
  p.add_argument("--train-images", type=int, default=12000)
  p.add_argument("--test-images", type=int, default=1000)
  args = p.parse_args(argv)

  import dataclasses  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from groupvit_jax.model_config import VisionConfig  # pylint: disable=g-import-not-at-top
  from groupvit_jax.models.vision import VisionEncoder  # pylint: disable=g-import-not-at-top
  from groupvit_jax.preprocessing import normalize  # pylint: disable=g-import-not-at-top
  from input_pipeline import synthetic_world as sw  # pylint: disable=g-import-not-at-top

  world = dataclasses.replace(sw.any_colour_world(), image_size=args.image_size)
  n = args.train_images + args.test_images
  scenes = [sw.generate(world, 0, i, "train") for i in range(n)]
  x = normalize(np.stack([s.image for s in scenes]))
  y = np.asarray([[any(o.shape == k and o.visible_fraction > 0 for o in s.objects)
                   for k in world.shapes] for s in scenes], np.float32)
  vision = VisionConfig(img_size=args.image_size, patch_size=args.patch, embed_dim=args.width,
                        depths=(args.depth,), num_heads=(4,), num_group_tokens=(0,),
                        num_output_groups=(), drop_path_rate=0.0, pos_embed_init=args.pos_embed)

  class Classifier(nnx.Module):
    def __init__(self, rngs):
      self.encoder = VisionEncoder(vision, rngs=rngs)
      self.head = nnx.Linear(args.width, len(world.shapes), rngs=rngs)

    def __call__(self, images):  # [B, H, W, 3] -> [B, num_shapes] logits
      return self.head(self.encoder(images)["pooled"])

  model = Classifier(nnx.Rngs(0))
  schedule = optax.warmup_cosine_decay_schedule(1e-5, args.lr, args.steps // 10, args.steps, 1e-5)
  opt = nnx.Optimizer(model, optax.adamw(schedule, weight_decay=0.05), wrt=nnx.Param)

  @nnx.jit
  def step(model, opt, images, labels):
    loss, grads = nnx.value_and_grad(
        lambda m: optax.sigmoid_binary_cross_entropy(m(images), labels).mean())(model)
    opt.update(model, grads)
    return loss

  rng = np.random.default_rng(0)
  start = time.time()
  for i in range(args.steps):
    idx = rng.integers(0, args.train_images, args.batch)
    loss = step(model, opt, jnp.asarray(x[idx]), jnp.asarray(y[idx]))
    if (i + 1) % max(1, args.steps // 5) == 0:
      print(f"step {i + 1}/{args.steps} loss {float(loss):.3f}", flush=True)
  scores = np.concatenate([np.asarray(nnx.jit(lambda m, b: m(b))(model, jnp.asarray(x[j:j + 250])))
                           for j in range(args.train_images, n, 250)])
  truth = y[args.train_images:] > 0
  auc = {k: float((scores[truth[:, c], c][:, None] > scores[~truth[:, c], c][None]).mean())
         for c, k in enumerate(world.shapes)}
  print(f"held-out AUC after {args.steps * args.batch} labelled samples "
        f"({time.time() - start:.0f} s): " + ", ".join(f"{k} {v:.3f}" for k, v in auc.items()))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
