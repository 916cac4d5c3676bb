"""The exact large-batch gradient in chunks (``config.microbatch_size``; GradCache-style).

GroupViT's losses couple every sample of the global batch: both contrastive losses compare all
image-text pairs, and the projectors' BatchNorm normalises with global-batch statistics. Gradient
accumulation over small batches changes that loss. Here the step instead

  1. encodes the batch chunk by chunk without keeping activations, caching only the encoders'
     pre-projection features (image: pooled segment tokens [B, C]; text: [B, 1+K, W]);
  2. runs the projectors and both losses ONCE over the whole cached batch, and differentiates
     that with respect to the parameters (projectors, logit scales) and the cached features;
  3. re-encodes chunk by chunk and back-propagates the cached feature gradients (one ``jax.vjp``
     per chunk inside a ``lax.scan``), summing the parameter gradients.

The result is the unchunked step's loss, gradient and BatchNorm update up to float32 reduction
order, for the cost of one extra encoder forward and the memory of one chunk's activations.

Chunk ``c`` of ``n`` holds samples ``c, c + n, c + 2n, ...``: the batch is sharded in contiguous
blocks over the ``batch`` mesh axes, so this strided split leaves every chunk spread evenly over
all batch devices (each chunk is still data-parallel). Both passes of a chunk draw their Gumbel
noise and drop-path masks from ``fold_in(step_rng, c)``, so the backward pass re-creates exactly
the forward's network.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from groupvit_jax import sharding as shd

Batch = dict[str, jax.Array]
KEY = "microbatch_size"


def check_microbatch(global_batch: int, microbatch_size: int, batch_devices: int = 1) -> int:
  """Number of chunks; raises ``ValueError`` naming ``microbatch_size`` when it does not fit.

  Args:
    global_batch: samples per step over all devices (``input.batch_size``).
    microbatch_size: samples per chunk over all devices (0 = no chunking).
    batch_devices: devices the batch is split over (each chunk is split over them too).
  """
  m = int(microbatch_size)
  if m < 0:
    raise ValueError(f"{KEY} must be >= 0 (0 = no chunking), got {m}")
  if m == 0:
    return 1
  if m > global_batch or global_batch % m:
    raise ValueError(f"{KEY}={m} must divide the global batch input.batch_size={global_batch} "
                     f"(e.g. {_divisor_hint(global_batch, m)})")
  if m % batch_devices:
    raise ValueError(f"{KEY}={m} must be a multiple of the {batch_devices} devices the batch is "
                     f"split over (each chunk is sharded over them)")
  return global_batch // m


def batch_devices(mesh, rules) -> int:
  """Devices the ``batch`` logical axis is split over under ``rules`` on ``mesh``."""
  axes = next((a for name, a in rules if name == shd.BATCH and a is not None), ())
  axes = (axes,) if isinstance(axes, str) else tuple(axes)
  size = 1
  for a in axes:
    size *= mesh.shape.get(a, 1)
  return size


def _divisor_hint(b: int, m: int) -> int:
  """The divisor of ``b`` nearest to ``m`` (for the error message)."""
  return min((d for d in range(1, b + 1) if b % d == 0), key=lambda d: (abs(d - m), d))


def encode_features(params, batch_stats, graphdef, image: jax.Array, text: jax.Array,
                    rng: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Pre-projection features of one chunk, in training mode.

  Args:
    image: [m, H, W, 3] normalised pixels; text: [m, 1+K, L] token ids.
    rng: the chunk's key (split into the Gumbel and drop-path streams as in ``step.loss_fn``).
  Returns:
    ``pooled`` [m, C] (the image encoder's mean segment token) and ``text`` [m, 1+K, W].
  """
  model = nnx.merge(graphdef, params, jax.tree.map(lambda x: x, batch_stats))
  k_gumbel, k_drop = jax.random.split(rng)
  rngs = nnx.Rngs(gumbel=k_gumbel, drop_path=k_drop)
  pooled = model.img_encoder(image, train=True, rngs=rngs)["pooled"]
  ids = text.reshape(-1, text.shape[-1])
  t = model.text_encoder(ids)
  return pooled, t.reshape(text.shape[:-1] + t.shape[-1:])


def head_loss(params, batch_stats, graphdef, pooled: jax.Array, text: jax.Array, *,
              multi_label: int, multi_label_weight: float):
  """Projectors (BatchNorm over the whole batch) and both losses from cached features.

  Args:
    pooled: [B, C]; text: [B, 1+K, W] (``encode_features`` of the whole batch).
  Returns:
    ``(loss, (metrics, new_batch_stats))`` as ``step.loss_fn``.
  """
  from groupvit_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top
  model = nnx.merge(graphdef, params, jax.tree.map(lambda x: x, batch_stats))
  # As GroupViT.encode_image / encode_text: captions and prompts share one projector batch.
  image_x = model.img_projector(pooled, train=True).astype(jnp.float32)
  t = model.text_projector(text.reshape(-1, text.shape[-1]), train=True).astype(jnp.float32)
  text_x = t.reshape(text.shape[:-1] + t.shape[-1:])
  loss, metrics = step_lib.contrastive_losses(model, image_x, text_x, multi_label=multi_label,
                                              multi_label_weight=multi_label_weight)
  return loss, (metrics, nnx.state(model, nnx.BatchStat))


def _to_chunks(x: jax.Array, n: int) -> jax.Array:
  """[B, ...] -> [n, B/n, ...]; chunk c holds samples c, c+n, ... (sharded over the batch)."""
  m = x.shape[0] // n
  x = jnp.swapaxes(x.reshape((m, n) + x.shape[1:]), 0, 1)
  return shd.constrain(x, (None, shd.BATCH) + (None,) * (x.ndim - 2))


def _from_chunks(x: jax.Array) -> jax.Array:
  """Inverse of ``_to_chunks``: [n, m, ...] -> [n*m, ...] in the batch's sample order."""
  n, m = x.shape[:2]
  x = jnp.swapaxes(x, 0, 1).reshape((n * m,) + x.shape[2:])
  return shd.constrain(x, (shd.BATCH,) + (None,) * (x.ndim - 1))


def chunk_rngs(rng: jax.Array, n: int) -> jax.Array:
  """[n] keys: ``fold_in(rng, c)`` for chunk c (both passes of a chunk use the same key)."""
  return jax.vmap(lambda c: jax.random.fold_in(rng, c))(jnp.arange(n))


def value_and_grad(params, batch_stats, graphdef, batch: Batch, rng: jax.Array, *,
                   microbatch_size: int, multi_label: int, multi_label_weight: float):
  """``jax.value_and_grad(step.loss_fn, has_aux=True)`` computed in chunks of ``microbatch_size``.

  Args:
    batch: ``image`` [B, H, W, 3], ``text`` [B, 1+K, L]; B a multiple of ``microbatch_size``.
    rng: the step's key; chunk c uses ``fold_in(rng, c)``.
  Returns:
    ``((loss, (metrics, new_batch_stats)), grads)`` with ``grads`` shaped like ``params``.
  """
  b = batch["image"].shape[0]
  n = check_microbatch(b, microbatch_size)
  images, texts = _to_chunks(batch["image"], n), _to_chunks(batch["text"], n)
  keys = chunk_rngs(rng, n)

  def encode(p, image, text, key):
    return encode_features(p, batch_stats, graphdef, image, text, key)

  # Pass 1: features only; scan keeps no activations across chunks.
  def forward(_, xs):
    return None, encode(params, *xs)

  _, (pooled, text_feats) = jax.lax.scan(forward, None, (images, texts, keys))
  pooled, text_feats = _from_chunks(pooled), _from_chunks(text_feats)

  # Losses and BatchNorm over the whole batch, differentiated w.r.t. the cached features too.
  (loss, aux), (grads, g_pooled, g_text) = jax.value_and_grad(
      head_loss, argnums=(0, 3, 4), has_aux=True)(
          params, batch_stats, graphdef, pooled, text_feats, multi_label=multi_label,
          multi_label_weight=multi_label_weight)

  # Pass 2: re-encode each chunk with its key and pull the cached feature gradients back.
  def backward(acc, xs):
    image, text, key, gp, gt = xs
    _, pull = jax.vjp(lambda p: encode(p, image, text, key), params)
    (g,) = pull((gp, gt))
    return jax.tree.map(jnp.add, acc, g), None

  grads, _ = jax.lax.scan(backward, grads, (images, texts, keys, _to_chunks(g_pooled, n),
                                            _to_chunks(g_text, n)))
  return (loss, aux), grads
