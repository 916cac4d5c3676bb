"""Window averaging and the final resize + argmax, traceable with bucketed (padded) shapes.

Window positions and the bilinear taps of the final resize arrive as arrays, so every image
whose windows have the same grid shares one compilation, whatever its exact size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

ROW_BLOCK = 32  # output rows per step of the final resize (bounds memory for huge images)


def active_channels(table: jax.Array, num_active: int) -> tuple[jax.Array, jax.Array]:
  """Keeps the channels that can win the final argmax, so stitching and resizing touch a few.

  Each window's class scores are exactly 0 outside its top-5 classes (the masked softmax gives
  ``exp(-inf) = 0``) and the background column, so an image with K windows has at most
  ``5K + 1`` non-zero channels. All values are >= 0, so the argmax over the full channel axis
  equals the argmax over the non-zero channels plus channel 0, taken in ascending order (ties
  and all-zero pixels resolve to the same smallest index).

  Args:
    table: [B, K, G, C] class scores.
    num_active: static bound on the channels kept (>= 5K + 1 covers every case).
  Returns:
    channels [B, A] int32 ascending original indices (padding repeats channel 0) and the table
    restricted to them [B, K, G, A], with A = min(C, num_active).
  """
  c = table.shape[-1]
  a = min(c, num_active)
  if a == c:
    return jnp.broadcast_to(jnp.arange(c, dtype=jnp.int32), table.shape[:1] + (c,)), table
  nonzero = jnp.any(table != 0, axis=(1, 2)).at[:, 0].set(True)  # [B, C]
  channels = jax.vmap(lambda m: jnp.nonzero(m, size=a, fill_value=0)[0])(nonzero)
  channels = channels.astype(jnp.int32)
  return channels, jnp.take_along_axis(table, channels[:, None, None, :], axis=-1)


def average_windows(index: jax.Array, table: jax.Array, offsets: jax.Array,
                    canvas_hw: tuple[int, int]) -> jax.Array:
  """mmseg ``slide_inference`` accumulation for one image.

  Args:
    index: [K, h, w] int32 group index of each window pixel.
    table: [K, G, C] class scores of each window's groups (window logits = table[index]).
    offsets: [K, 2] int32 window top-left corners (y1, x1) on the canvas.
    canvas_hw: static (Hc, Wc) >= the resized image; pixels outside every window stay 0.
  Returns:
    [Hc, Wc, C] float32: sum of the window logits covering each pixel / their number.
  """
  k, h, w = index.shape
  c = table.shape[-1]
  hc, wc = canvas_hw
  canvas = jnp.zeros((hc, wc, c), jnp.float32)
  for i in range(k):  # K is small and static (2-9 windows for the protocol's sizes)
    logits = jnp.take(table[i], index[i], axis=0)  # [h, w, C]
    start = (offsets[i, 0], offsets[i, 1], 0)
    region = jax.lax.dynamic_slice(canvas, start, (h, w, c))
    canvas = jax.lax.dynamic_update_slice(canvas, region + logits, start)
  rows = jnp.arange(hc)[None, :]
  cols = jnp.arange(wc)[None, :]
  y1, x1 = offsets[:, :1], offsets[:, 1:]
  row_in = ((rows >= y1) & (rows < y1 + h)).astype(jnp.float32)  # [K, Hc]
  col_in = ((cols >= x1) & (cols < x1 + w)).astype(jnp.float32)  # [K, Wc]
  count = jnp.einsum("kh,kw->hw", row_in, col_in)
  return canvas / jnp.maximum(count, 1.0)[..., None]


def resize_argmax(preds: jax.Array, row_idx: jax.Array, row_wts: jax.Array, col_idx: jax.Array,
                  col_wts: jax.Array) -> jax.Array:
  """Bilinear resize (given as 2-tap tables) of [Hc, Wc, C] logits, then argmax over C.

  Args:
    preds: [Hc, Wc, C].
    row_idx, row_wts: [Ho, 2] source rows and weights of each output row (``Ho`` a multiple of
      ``ROW_BLOCK``; padding rows have weight 0).
    col_idx, col_wts: [Wo, 2] the same for columns.
  Returns:
    [Ho, Wo] int32 argmax over the channels (the reference's softmax before its argmax changes
    nothing).
  """
  ho = row_idx.shape[0]

  def block(args):
    ridx, rw = args  # [R, 2]
    rows = (jnp.take(preds, ridx[:, 0], axis=0) * rw[:, 0, None, None]
            + jnp.take(preds, ridx[:, 1], axis=0) * rw[:, 1, None, None])  # [R, Wc, C]
    out = (jnp.take(rows, col_idx[:, 0], axis=1) * col_wts[None, :, 0, None]
           + jnp.take(rows, col_idx[:, 1], axis=1) * col_wts[None, :, 1, None])  # [R, Wo, C]
    return jnp.argmax(out, axis=-1).astype(jnp.int32)

  blocks = (row_idx.reshape(ho // ROW_BLOCK, ROW_BLOCK, 2),
            row_wts.reshape(ho // ROW_BLOCK, ROW_BLOCK, 2))
  return jax.lax.map(block, blocks).reshape(ho, col_idx.shape[0])
