"""recall@k of the retrieval evaluation on a hand-counted similarity matrix."""

import numpy as np
import pytest

from groupvit_jax.train.retrieval import recall_at_k

# Row i's own item is column i.
SIMS = np.array([
    [0.9, 0.1, 0.2, 0.3],  # own 0.9, the row's largest            -> rank 0
    [0.8, 0.7, 0.1, 0.0],  # own 0.7, below 0.8                     -> rank 1
    [0.9, 0.6, 0.5, 0.8],  # own 0.5, below 0.9, 0.6 and 0.8        -> rank 3
    [0.1, 0.2, 0.3, 0.4],  # own 0.4, the row's largest             -> rank 0
])
# Columns (text -> image): col 0 [0.9, 0.8, 0.9, 0.1] own 0.9 tied with 0.9 (ties count in the
# item's favour) -> rank 0; col 1 own 0.7 -> 0; col 2 own 0.5 -> 0; col 3 [0.3, 0, 0.8, 0.4]
# own 0.4, below 0.8 -> rank 1.


@pytest.mark.parametrize("k, want", [(1, 2 / 4), (2, 3 / 4), (3, 3 / 4), (4, 4 / 4)])
def test_image_to_text_hand_counted(k, want):
  assert recall_at_k(SIMS, k) == pytest.approx(want)


@pytest.mark.parametrize("k, want", [(1, 3 / 4), (2, 4 / 4), (5, 4 / 4)])
def test_text_to_image_hand_counted(k, want):
  assert recall_at_k(SIMS.T, k) == pytest.approx(want)
