"""App. A.2: clip-to-speech attentive aggregation (eq. 9), concatenation and a Bi-GRU; and Table 5's Pool+Add."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from methods.parts.encoders import BiGRU


class ClipQueryAttention(nn.Module):
    """delta_ij = u^T tanh(U1 v_i + U2 s_j + b); q_i = sum_j softmax_j(delta_ij) s_j  (eq. 9, masked over j)."""

    def __init__(self, d: int, d_att: int | None = None) -> None:
        super().__init__()
        d_att = d_att or d
        self.video = nn.Linear(d, d_att)  # U1 and the bias b
        self.query = nn.Linear(d, d_att, bias=False)  # U2
        self.u = nn.Linear(d_att, 1, bias=False)

    def forward(self, v: Tensor, s: Tensor, s_mask: Tensor) -> Tensor:
        delta = self.u(torch.tanh(self.video(v)[:, :, None] + self.query(s)[:, None])).squeeze(-1)  # [B, N, L]
        delta = delta.masked_fill(~s_mask[:, None], float("-inf"))
        return torch.softmax(delta, dim=-1) @ s  # [B, N, d]


class Interaction(nn.Module):
    """Multi-modal clip features m_i = BiGRU([v_i ; q_i])."""

    def __init__(self, d: int, d_att: int | None = None) -> None:
        super().__init__()
        self.attend = ClipQueryAttention(d, d_att)
        self.gru = BiGRU(2 * d, d)

    def forward(self, v: Tensor, s: Tensor, s_mask: Tensor) -> Tensor:
        return self.gru(torch.cat([v, self.attend(v, s, s_mask)], dim=-1))


class PoolAdd(nn.Module):
    """Table 5's "Pool+Add" fusion: the query mean-pooled over its valid steps and added to every clip.

    The paper names it only; the same Bi-GRU as :class:`Interaction` follows, so that the two rows of Table 5
    differ in the aggregation alone (the pooled query replaces eq. 9's per-clip attention, the sum replaces the
    concatenation).
    """

    def __init__(self, d: int, d_att: int | None = None) -> None:
        super().__init__()
        self.gru = BiGRU(d, d)

    def forward(self, v: Tensor, s: Tensor, s_mask: Tensor) -> Tensor:
        m = s_mask[..., None].to(s.dtype)
        pooled = (s * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.gru(v + pooled[:, None])
