"""Training objectives over the proposal scores: weak MIL (eq. 10), diversity (eq. 11), 2D-TAN's scaled-IoU BCE, and
the batch partner that gives the weak losses their negative pairs.

Scores are probabilities ``k = sigmoid(logit)`` over the scored candidates, ``[B, n_cand]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

EPS = 1e-10
MIL_PLATEAU = 4 * math.log(2)
"""Eq. 10's value when every score is the same constant 1/2 (its best constant): -2 log(1/2) - 2 log(1 - 1/2).
A model that cannot tell matched from mismatched pairs sits here; a reference value that the tests read
(``tests/test_base.py``), not logged."""


def top_r_mean(k: Tensor, r: int) -> Tensor:
    """f(K): the mean of the ``r`` largest proposal scores of each row (App. A.4), ``[B]``."""
    return k.topk(min(r, k.shape[-1]), dim=-1).values.mean(-1)


def mil_loss(k: Tensor, k_other_video: Tensor, k_other_query: Tensor, r: int,
             keep_video: Tensor | None = None, keep_query: Tensor | None = None) -> Tensor:  # fmt: skip
    """Eq. 10: -log f(K) - log(1 - f(K_V')) - log f(K) - log(1 - f(K_S')), averaged over the batch.

    The paper writes -log f(K) twice, once per negative pair, and so does this. ``keep_*`` ([B] bool) drop a
    negative pair (with its twin positive term) when the "other" sample is not a negative, e.g. a query of the
    same video drawn as S'.
    """
    pos = -torch.log(top_r_mean(k, r).clamp_min(EPS))
    loss = k.new_zeros(k.shape[0])
    for other, keep in ((k_other_video, keep_video), (k_other_query, keep_query)):
        pair = pos - torch.log((1 - top_r_mean(other, r)).clamp_min(EPS))
        loss = loss + (pair if keep is None else pair * keep.to(pair.dtype))
    return loss.mean()


def diversity_loss(k: Tensor, r: int) -> Tensor:
    """Eq. 11: the entropy of softmax over the top-R scores, ``-sum_i kbar_i log kbar_i``, averaged over the batch.

    Minimising it sharpens the top of the ranking. The softmax is over the scores k_i themselves (in (0, 1)), as
    eq. 11 writes it, so the term is bounded: between about log R - 0.07 and log R for R = 20.
    """
    top = k.topk(min(r, k.shape[-1]), dim=-1).values
    return -(F.softmax(top, dim=-1) * F.log_softmax(top, dim=-1)).sum(-1).mean()


def scaled_iou_targets(iou: Tensor, low: float = 0.5, high: float = 1.0) -> Tensor:
    """2D-TAN's soft labels: clip((IoU - low) / (high - low), 0, 1)."""
    return ((iou - low) / (high - low)).clamp(0.0, 1.0)


def scaled_iou_bce(logits: Tensor, iou: Tensor, low: float = 0.5, high: float = 1.0) -> Tensor:
    """App. C.1 (SBase): binary cross-entropy between the scores and the scaled IoU of every candidate."""
    return F.binary_cross_entropy_with_logits(logits, scaled_iou_targets(iou, low, high))


def partner(video_idx: Tensor) -> tuple[Tensor, Tensor]:
    """The batch partner of the weak losses (Base's eq. 10, WSLLN, RTBPN): a random cyclic shift of the batch gives
    each sample a partner ``other[b] != b``; ``distinct[b]`` is False where the partner shows the same video (not a
    negative)."""
    b = video_idx.shape[0]
    shift = int(torch.randint(1, b, (1,))) if b > 1 else 0
    other = torch.roll(torch.arange(b, device=video_idx.device), shift)
    return other, video_idx[other] != video_idx
