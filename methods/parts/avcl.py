"""SIL's acoustic-visual contrastive learning (AVCL, §3.4): the clip selection and eq. 6's JS estimator.

Shared by SIL (``methods/sil.py``, on Base) and RTBPN + AVCL (``methods/rtbpn.py``, Table 6): the top proposal of each
positive pair gives T positive and T negative clips (:func:`select_clips`), and :class:`AVCL` scores them against
the query with a bilinear discriminator under the Jensen-Shannon MI estimator (:func:`js_mi_loss`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from methods.parts import proposals
from methods.parts.encoders import masked_mean

LOG2 = math.log(2.0)


SIL_T = 12  # App. B.2: positive and negative clips of AVCL out of 64


def avcl_clips(n_clips: int) -> int:
    """AVCL's T at ``n_clips`` clips: App. B.2's 12 of 64, the same share of the video at other clip counts."""
    return SIL_T * n_clips // 64


def select_clips(k: Tensor, clip_scores: Tensor, n_clips: int, t: int, location: bool, score: bool
                 ) -> tuple[Tensor, Tensor]:  # fmt: skip
    """AVCL's sampling: positive and negative clip masks ``[B, N]`` from the top proposal and the clip scores.

    Positives: the ``t`` highest-scored clips inside the top proposal (score-based mining), or ``t`` random ones
    inside it without score-based mining. Negatives: up to ``t`` random clips outside it (location-based selection);
    the rest of the ``t``, or all of them without location-based selection, are the lowest-scored clips inside it
    that are not positives (score-based mining).
    """
    b = k.shape[0]
    cand = proposals.candidates(n_clips).to(k.device)[k.argmax(1)]  # [B, 2] start, end (inclusive)
    steps = torch.arange(n_clips, device=k.device)[None]
    inside = (steps >= cand[:, :1]) & (steps <= cand[:, 1:])

    def top(values: Tensor, allowed: Tensor, count: Tensor) -> Tensor:
        ranked = values.masked_fill(~allowed, float("-inf")).argsort(dim=1, descending=True, stable=True)
        rank = ranked.argsort(dim=1)
        return (rank < count[:, None]) & allowed

    full = torch.full((b,), t, device=k.device)
    pos = top(clip_scores if score else torch.rand_like(clip_scores), inside, full)
    outside = ~inside
    n_out = torch.minimum(outside.sum(1), full) if location else torch.zeros_like(full)
    neg = top(torch.rand_like(clip_scores), outside, n_out) if location else torch.zeros_like(inside)
    if score:
        neg = neg | top(-clip_scores, inside & ~pos, full - n_out)
    return pos, neg


class AVCL(nn.Module):
    """Eq. 6: the Jensen-Shannon MI estimator with a bilinear discriminator between the query and clip features."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.query = nn.Linear(d, d)
        self.clip = nn.Linear(d, d)

    def forward(self, s: Tensor, s_mask: Tensor, v: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        r = torch.einsum("bnd,bd->bn", self.clip(v), self.query(masked_mean(s, s_mask)))
        return js_mi_loss(r, pos, neg)


def js_mi_loss(r: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """``E_neg[softplus(-r) + r - log 2] - E_pos[log 2 - softplus(-r)]`` per row, averaged over rows having both."""
    pos_f, neg_f = pos.to(r.dtype), neg.to(r.dtype)
    e_pos = ((LOG2 - F.softplus(-r)) * pos_f).sum(1) / pos_f.sum(1).clamp_min(1.0)
    e_neg = ((F.softplus(-r) + r - LOG2) * neg_f).sum(1) / neg_f.sum(1).clamp_min(1.0)
    ok = (pos.any(1) & neg.any(1)).to(r.dtype)
    return ((e_neg - e_pos) * ok).sum() / ok.sum().clamp_min(1.0)
