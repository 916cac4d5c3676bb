"""Synthetic batches: deterministic per global step, identical whatever the host count.

Global batch ``s`` is drawn from ``default_rng([seed, s])``; host ``p`` of ``P`` keeps rows
``[p*B/P, (p+1)*B/P)``. Images are N(0, 1) (already "normalised"); texts are ``[SOT, random
tokens, EOT, 0...]``. Used by tests, benchmarks and smoke runs.
"""

from __future__ import annotations

import numpy as np

from groupvit_jax.tokenizer import EOT_ID, SOT_ID
from input_pipeline import samples


def synthetic_batch(seed: int, step: int, global_batch: int, image_size: int, num_texts: int,
                    context_length: int) -> dict[str, np.ndarray]:
  """``image`` f32 [B, S, S, 3], ``text`` i32 [B, num_texts, L] for global step ``step``."""
  rng = np.random.default_rng([int(seed), int(step)])
  image = rng.standard_normal((global_batch, image_size, image_size, 3), dtype=np.float32)
  text = np.zeros((global_batch, num_texts, context_length), np.int32)
  lengths = rng.integers(1, max(2, context_length - 1), size=(global_batch, num_texts))
  tokens = rng.integers(1, SOT_ID, size=(global_batch, num_texts, context_length))
  for b in range(global_batch):
    for t in range(num_texts):
      n = int(lengths[b, t])
      text[b, t, 0] = SOT_ID
      text[b, t, 1:n + 1] = tokens[b, t, :n]
      text[b, t, n + 1 if n + 1 < context_length else context_length - 1] = EOT_ID
  return {"image": image, "text": text}


class SyntheticIterator:
  """Host batches (this host's rows) with zero skip counts; state = next global step."""

  def __init__(self, *, seed: int, global_batch: int, image_size: int, num_texts: int,
               context_length: int, process_index: int = 0, process_count: int = 1):
    if global_batch % process_count:
      raise ValueError(f"batch {global_batch} does not split over {process_count} hosts")
    self._kw = dict(seed=seed, global_batch=global_batch, image_size=image_size,
                    num_texts=num_texts, context_length=context_length)
    self._local = global_batch // process_count
    self._start = process_index * self._local
    self._step = 0

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = synthetic_batch(step=self._step, **self._kw)
    self._step += 1
    rows = slice(self._start, self._start + self._local)
    out = {k: v[rows] for k, v in batch.items()}
    for reason in samples.SKIP_REASONS:
      out[f"skipped_{reason}"] = np.zeros((self._local,), np.int32)
    return out

  def get_state(self) -> dict:
    return {"step": self._step}

  def set_state(self, state: dict) -> None:
    self._step = int(state["step"])

  def close(self) -> None:
    pass
