"""Zero-shot semantic segmentation of whole images: the official protocol (spec 5.2 to 5.4) as
one jitted function per shape bucket, driven by a host-side batcher.

Host (numpy/OpenCV): keep-ratio resize on uint8 with INTER_LINEAR, window coordinates, the taps
of the final bilinear resize. Device (one ``jax.jit`` per bucket): normalise, cut the windows of
several images, run the model on them in chunks (``lax.map``, bounded memory), build each
window's logits, average overlapping windows, resize to the original size and take the argmax.

A bucket is (window size, number of windows, padded canvas, padded output): images whose windows
form the same grid share a compilation whatever their exact size, so a dataset compiles a
handful of times. ``mode='whole'`` runs one window on the whole resized image (demos).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from groupvit_jax import runtime_cache
from groupvit_jax.segmentation import dense, stitch, windows
from groupvit_jax.class_embeddings import check_class_names, class_embeddings
from groupvit_jax.segmentation.protocols import Protocol
from groupvit_jax.preprocessing import IMAGENET_MEAN, IMAGENET_STD

_TRACES = collections.Counter()  # bucket function traces, for tests and logs


@dataclasses.dataclass(frozen=True)
class Bucket:
  """Static shapes of one compiled segmentation function."""

  window_hw: tuple[int, int]
  num_windows: int
  canvas_hw: tuple[int, int]
  out_hw: tuple[int, int]


@dataclasses.dataclass
class Prepared:
  """One image ready for the device: resized uint8 canvas, windows and resize taps."""

  key: Any
  canvas: np.ndarray  # uint8 [H', W', 3] (resized, not padded)
  orig_hw: tuple[int, int]
  windows: np.ndarray  # int32 [K, 4] (y1, y2, x1, x2)
  bucket: Bucket


def _normalize(images_u8: jax.Array) -> jax.Array:
  """uint8 [..., 3] -> ImageNet-normalised float32 (same formula as preprocessing.normalize)."""
  x = images_u8.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def _segment_bucket(state, canvases, offsets, row_idx, row_wts, col_idx, col_wts, text,
                    bg_threshold, *, graphdef, bucket: Bucket, with_bg: bool, chunk: int):
  """Labels of a batch of same-bucket images.

  Args:
    state: the model's ``nnx.State``.
    canvases: uint8 [B, Hc, Wc, 3] resized images, zero-padded to the bucket's canvas.
    offsets: int32 [B, K, 2] window corners (y1, x1).
    row_idx, row_wts: [B, Ho, 2] taps of the final resize along H (padding: weight 0).
    col_idx, col_wts: [B, Wo, 2] the same along W.
    text: [N, D] normalised class embeddings. bg_threshold: float32 scalar.
  Returns:
    [B, Ho, Wo] labels (uint8 when C <= 256, else int32).
  """
  _TRACES[bucket] += 1
  b, k = offsets.shape[:2]
  h, w = bucket.window_hw
  crops = jax.vmap(lambda c, o: jax.vmap(
      lambda yx: jax.lax.dynamic_slice(c, (yx[0], yx[1], 0), (h, w, 3)))(o))(canvases, offsets)
  n = b * k
  chunk = min(chunk, n)
  crops = crops.reshape(n, h, w, 3)
  crops = jnp.pad(crops, ((0, -n % chunk), (0, 0), (0, 0), (0, 0)))

  def run(x):  # [chunk, h, w, 3] uint8
    model = nnx.merge(graphdef, state)
    return dense.window_predict(model, _normalize(x), text, bg_threshold if with_bg else None)

  index, table = jax.lax.map(run, crops.reshape(-1, chunk, h, w, 3))
  index = index.reshape((-1,) + index.shape[2:])[:n].reshape(b, k, h, w)
  table = table.reshape((-1,) + table.shape[2:])[:n].reshape((b, k) + table.shape[-2:])
  label_dtype = jnp.uint8 if table.shape[-1] <= 256 else jnp.int32
  channels, table = stitch.active_channels(table, num_active=k * min(dense.TOP_K, text.shape[0]) + 1)

  def one(ix, tb, off, ri, rw, ci, cw, ch):
    preds = stitch.average_windows(ix, tb, off, bucket.canvas_hw)
    return ch[stitch.resize_argmax(preds, ri, rw, ci, cw)].astype(label_dtype)

  return jax.vmap(one)(index, table, offsets, row_idx, row_wts, col_idx, col_wts, channels)


@functools.lru_cache(maxsize=128)
def _compiled_bucket(graphdef, bucket: Bucket, with_bg: bool, chunk: int,
                     mesh: jax.sharding.Mesh | None = None):
  """The bucket's jitted function; with a ``mesh``, images are split over its first axis
  (data parallel: each device runs the same function on its images, weights replicated)."""
  fn = functools.partial(_segment_bucket, graphdef=graphdef, bucket=bucket, with_bg=with_bg,
                         chunk=chunk)
  if mesh is None:  # one device: the executable is kept on disk when the runtime caches are on
    static = repr((runtime_cache.graphdef_digest(graphdef), bucket, with_bg, chunk))
    return runtime_cache.cached_jit(jax.jit(fn), "segment_bucket", static)
  data, rep = P(mesh.axis_names[0]), P()
  specs = (rep,) + (data,) * 6 + (rep, rep)  # state, 6 per-image arrays, text, threshold
  fn = jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=data, check_vma=False)
  shardings = tuple(NamedSharding(mesh, s) for s in specs)
  return jax.jit(fn, in_shardings=shardings, out_shardings=NamedSharding(mesh, data))


@functools.lru_cache(maxsize=16)
def _compiled_groups(graphdef):

  def fn(state, canvas):
    return dense.stage_group_maps(nnx.merge(graphdef, state), _normalize(canvas))

  return runtime_cache.cached_jit(jax.jit(fn), "group_maps",
                                  runtime_cache.graphdef_digest(graphdef))


def trace_counts() -> dict[Bucket, int]:
  """How often each bucket function was traced (each trace is one compilation)."""
  return dict(_TRACES)


class Segmenter:
  """Zero-shot segmentation with a GroupViT and a list of class names.

  Labels: with a background threshold, 0 is background and ``i`` is ``class_names[i - 1]``;
  without one, ``i`` is ``class_names[i]``. Background is never embedded.

  Args:
    model: a GroupViT (e.g. ``groupvit_jax.load_pretrained(path)``).
    class_names: foreground class names (prompted with ``templates``).
    bg_threshold: threshold of the adaptive background rule, or None for no background channel.
    img_scale, crop, stride, mode: the protocol's geometry (defaults: the official one).
    images_per_batch: images per device call (windows of all of them run as one batch); None:
      1 on CPU (measured: batching windows does not speed up XLA:CPU, padding costs) and 8 on
      accelerators.
    window_chunk: windows per model forward inside the call (bounds memory).
    text_embeddings: [N, D] precomputed normalised class embeddings (skips the text encoder).
    mesh: optional device mesh; images are split over its first axis (``images_per_batch``
      must be a multiple of its size; by default it is the per-device default times that size),
      weights and class embeddings are replicated.
  """

  def __init__(self, model, class_names: Sequence[str], *, bg_threshold: float | None = 0.95,
               templates: str | Sequence[str] = "simple", img_scale=(2048, 448), crop: int = 448,
               stride: int = 224, mode: str = "slide", images_per_batch: int | None = None,
               window_chunk: int = 8, text_embeddings: np.ndarray | None = None,
               mesh: jax.sharding.Mesh | None = None):
    self.class_names = check_class_names(class_names)
    if any(n.lower() == "background" for n in self.class_names):
      raise ValueError("'background' is not a class to prompt: it is decided by bg_threshold")
    if mode not in ("slide", "whole"):
      raise ValueError(f"mode must be 'slide' or 'whole', got {mode!r}")
    if bg_threshold is not None and not 0.0 <= float(bg_threshold) <= 1.0:
      raise ValueError(f"bg_threshold must be in [0, 1], got {bg_threshold}")
    self.model = model
    self.graphdef, self.state = nnx.split(model)
    self.patch = model.config.vision.patch_size
    self.bg_threshold = bg_threshold
    self.img_scale, self.crop, self.stride, self.mode = tuple(img_scale), crop, stride, mode
    if images_per_batch is None:
      images_per_batch = 1 if jax.default_backend() == "cpu" else 8
      if mesh is not None:
        images_per_batch *= mesh.shape[mesh.axis_names[0]]
    self.images_per_batch = max(1, int(images_per_batch))
    self.window_chunk = max(1, int(window_chunk))
    self.mesh = mesh
    if mesh is not None and self.images_per_batch % mesh.shape[mesh.axis_names[0]]:
      raise ValueError(f"images_per_batch={self.images_per_batch} must be a multiple of the "
                       f"{mesh.shape[mesh.axis_names[0]]} devices of the mesh's first axis")
    if text_embeddings is None:
      text_embeddings = class_embeddings(model, self.class_names, templates)
    if len(text_embeddings) != len(self.class_names):
      raise ValueError(f"{len(text_embeddings)} text embeddings for {len(self.class_names)} classes")
    self.text = jnp.asarray(text_embeddings, jnp.float32)
    if mesh is not None:  # replicate once, not at every call
      self.state, self.text = jax.device_put((self.state, self.text), NamedSharding(mesh, P()))

  @classmethod
  def from_protocol(cls, model, protocol: Protocol, class_names: Sequence[str],
                    bg_threshold: float | None, **kw) -> "Segmenter":
    return cls(model, class_names, bg_threshold=bg_threshold, img_scale=protocol.img_scale,
               crop=protocol.crop, stride=protocol.stride, mode=protocol.mode, **kw)

  @property
  def with_bg(self) -> bool:
    return self.bg_threshold is not None

  @property
  def labels(self) -> list[str]:
    """Name of every label value."""
    return (["background"] if self.with_bg else []) + list(self.class_names)

  # ---- host side ------------------------------------------------------------------------------

  def prepare(self, image: np.ndarray, key: Any = None) -> Prepared:
    """uint8 [h, w, 3] -> resized canvas, windows and bucket (spec 5.2, 5.3)."""
    h, w = image.shape[:2]
    nh, nw = windows.rescale_size(h, w, self.img_scale)
    if min(nh, nw) < self.patch:
      name = f"{key}: " if key is not None else ""
      raise ValueError(f"{name}a {w}x{h} image is too elongated for the protocol: resized to "
                       f"{nw}x{nh}, it is narrower than one {self.patch}-pixel patch")
    canvas = windows.resize_image(image, (nh, nw))
    if self.mode == "whole":
      wins = np.asarray([[0, nh, 0, nw]], np.int32)
      grid, canvas_hw = (1, 1), (nh, nw)
    else:
      wins = windows.slide_windows(nh, nw, self.crop, self.stride)
      grid = (windows.num_grids(nh, self.crop, self.stride),
              windows.num_grids(nw, self.crop, self.stride))
    win_hw = (int(wins[0, 1] - wins[0, 0]), int(wins[0, 3] - wins[0, 2]))
    if self.mode == "slide":
      canvas_hw = (windows.canvas_size(grid[0], win_hw[0], self.stride),
                   windows.canvas_size(grid[1], win_hw[1], self.stride))
    out_hw = (_out_bucket(h), _out_bucket(w))
    bucket = Bucket(win_hw, len(wins), canvas_hw, out_hw)
    return Prepared(key, canvas, (h, w), wins, bucket)

  def _device_inputs(self, items: list[Prepared], batch: int):
    bucket = items[0].bucket
    (hc, wc), (ho, wo) = bucket.canvas_hw, bucket.out_hw
    canvases = np.zeros((batch, hc, wc, 3), np.uint8)
    offsets = np.zeros((batch, bucket.num_windows, 2), np.int32)
    row_idx = np.zeros((batch, ho, 2), np.int32)
    row_wts = np.zeros((batch, ho, 2), np.float32)
    col_idx = np.zeros((batch, wo, 2), np.int32)
    col_wts = np.zeros((batch, wo, 2), np.float32)
    for i, p in enumerate(items):
      nh, nw = p.canvas.shape[:2]
      canvases[i, :nh, :nw] = p.canvas
      offsets[i] = p.windows[:, [0, 2]]
      row_idx[i], row_wts[i] = windows.padded_taps(nh, p.orig_hw[0], ho)
      col_idx[i], col_wts[i] = windows.padded_taps(nw, p.orig_hw[1], wo)
    return canvases, offsets, row_idx, row_wts, col_idx, col_wts

  def _dispatch(self, items: list[Prepared], batch: int):
    fn = _compiled_bucket(self.graphdef, items[0].bucket, self.with_bg, self.window_chunk,
                          self.mesh)
    thr = jnp.float32(self.bg_threshold if self.with_bg else 0.0)
    return fn(self.state, *self._device_inputs(items, batch), self.text, thr)

  # ---- public API -----------------------------------------------------------------------------

  def segment(self, image: np.ndarray) -> np.ndarray:
    """uint8 [h, w, 3] -> [h, w] int32 labels (one image per device call)."""
    return next(iter(self.segment_stream([(None, image)], images_per_batch=1)))[1]

  def segment_stream(self, items: Iterable[tuple[Any, np.ndarray]], *,
                     images_per_batch: int | None = None) -> Iterator[tuple[Any, np.ndarray]]:
    """Segments ``(key, uint8 [h, w, 3] image)`` pairs; yields ``(key, labels [h, w] int32)``.

    Images are grouped by bucket and sent ``images_per_batch`` at a time (the last partial
    batch of each bucket is padded, so each bucket compiles once); results therefore come out of
    input order. One call stays in flight while the next batch is prepared on the host.
    """
    return self.segment_prepared((self.prepare(image, key) for key, image in items),
                                 images_per_batch=images_per_batch)

  def segment_prepared(self, items: Iterable[Prepared], *,
                       images_per_batch: int | None = None) -> Iterator[tuple[Any, np.ndarray]]:
    """``segment_stream`` of images already passed through ``prepare`` (e.g. by parallel host
    workers: decoding and resizing then overlap the device calls)."""
    batch = max(1, int(images_per_batch or self.images_per_batch))
    if self.mesh is not None:  # whole images per device
      per = self.mesh.shape[self.mesh.axis_names[0]]
      batch = -(-batch // per) * per
    pending: dict[Bucket, list[Prepared]] = collections.defaultdict(list)
    inflight: collections.deque = collections.deque()

    def collect():
      done, result = inflight.popleft()
      labels = np.asarray(result)
      for i, p in enumerate(done):
        yield p.key, labels[i, :p.orig_hw[0], :p.orig_hw[1]].astype(np.int32)

    def send(bucket):
      group = pending.pop(bucket)
      inflight.append((group, self._dispatch(group, batch)))

    for p in items:
      pending[p.bucket].append(p)
      if len(pending[p.bucket]) >= batch:
        send(p.bucket)
        if len(inflight) > 1:
          yield from collect()
    for bucket in list(pending):
      send(bucket)
      if len(inflight) > 1:
        yield from collect()
    while inflight:
      yield from collect()

  def group_maps(self, image: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Groups of each stage on the whole resized image, before labels are assigned.

    Like the reference's group pictures this is one whole-image forward on the resized image
    (a separate pass from the sliding windows of ``segment``); each stage's composed soft maps are
    upsampled to that image and take the argmax over groups.

    Returns:
      the resized image uint8 [H', W', 3] and one [H', W'] int32 group-index map per stage.
    """
    canvas = self.prepare(image).canvas
    fn = _compiled_groups(self.graphdef)
    maps = fn(self.state, jnp.asarray(canvas[None]))
    return canvas, [np.asarray(m[0]) for m in maps]


def _out_bucket(n: int) -> int:
  """Output sizes padded to the geometric ladder, rounded to the resize's row block."""
  size = windows.size_bucket(n)
  return -(-size // stitch.ROW_BLOCK) * stitch.ROW_BLOCK
