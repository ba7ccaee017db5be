"""Training objectives, one function each. Today: next-token cross entropy (fill-in-the-middle windows use it too:
they are rearranged sequences, see batching.py).

The loss of a (micro-)batch is a SUM divided by a normaliser the caller passes: the number of target tokens in the
whole global batch. Summing over ranks and micro-batches then gives exactly the mean over the global batch, so
N ranks x M micro-batches train the same model as one process with the full batch.
Test: `pytest tests/train/test_losses.py`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def next_token_loss(logits: Tensor, targets: Tensor, loss_mask: Tensor, normalizer: float | int) -> Tensor:
    """sum of cross entropy over targets where loss_mask is True, divided by `normalizer`.

    logits (B, T, V) aligned with targets (B, T) (already shifted); computed in float32 whatever the autocast
    dtype of the logits (bf16 log-softmax over ~700 classes loses ~2 digits)."""
    t = targets.masked_fill(~loss_mask, -100).flatten()  # -100: cross_entropy's ignore_index
    total = F.cross_entropy(logits.float().flatten(0, 1), t, ignore_index=-100, reduction="sum")
    return total / max(float(normalizer), 1.0)


def token_accuracy(logits: Tensor, targets: Tensor, loss_mask: Tensor) -> tuple[int, int]:
    """(correct argmax predictions, counted targets): a cheap second metric for the logs."""
    with torch.no_grad():
        hit = (logits.argmax(-1) == targets) & loss_mask
        return int(hit.sum()), int(loss_mask.sum())
