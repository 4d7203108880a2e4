"""§3.2 / App. A.2: clip-to-speech attentive aggregation (eq. 9), the cross gate, concatenation and a Bi-GRU; and
Table 5's Pool+Add."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from methods.parts.encoders import BiGRU


class ClipQueryAttention(nn.Module):
    """delta_ij = u^T tanh(U1 v_i + U2 s_j + b); q_i = sum_j softmax_j(delta_ij) s_j  (eq. 9, masked over j).

    The scores are computed by :func:`additive_scores` (the same values and gradients, a few rows at a time and
    only over each row's real query steps); ``reference = True`` computes the ``[B, N, L, d_att]`` tensor at once.
    """

    reference: bool = False

    def __init__(self, d: int, d_att: int | None = None) -> None:
        super().__init__()
        d_att = d_att or d
        self.video = nn.Linear(d, d_att)  # U1 and the bias b
        self.query = nn.Linear(d, d_att, bias=False)  # U2
        self.u = nn.Linear(d_att, 1, bias=False)

    def forward(self, v: Tensor, s: Tensor, s_mask: Tensor) -> Tensor:
        if self.reference:
            delta = self.u(torch.tanh(self.video(v)[:, :, None] + self.query(s)[:, None])).squeeze(-1)  # [B, N, L]
        else:
            delta = additive_scores(self.video(v), self.query(s), self.u.weight[0], s_mask)
        delta = delta.masked_fill(~s_mask[:, None], float("-inf"))
        return torch.softmax(delta, dim=-1) @ s  # [B, N, d]


def additive_scores(a: Tensor, c: Tensor, u: Tensor, mask: Tensor, budget: int = 1 << 18) -> Tensor:
    """``delta[b, i, j] = u . tanh(a[b, i] + c[b, j])`` for the real steps ``j`` of each row (-inf elsewhere).

    ``mask [B, L]`` must mark a prefix of each row (as every query of the harness has). Rows are taken longest
    first, a few at a time (about ``budget`` elements of the ``tanh`` at once, so they stay in the cache), each group
    cut to its longest real length; the backward recomputes the ``tanh`` instead of keeping ``B x N x L x d`` values.
    """
    lengths = mask.sum(1)
    if not torch.equal(mask, torch.arange(mask.shape[1], device=mask.device)[None] < lengths[:, None]):
        raise ValueError("additive_scores needs prefix masks (the real steps of each row first)")
    return _AdditiveScores.apply(a, c, u, lengths, budget)


def _groups(lengths: Tensor, width: int, budget: int) -> list[tuple[Tensor, int]]:
    """Rows in groups of similar length: (row indices, the group's longest length), longest rows first."""
    order = lengths.argsort(descending=True, stable=True)
    sorted_lengths = lengths[order].tolist()
    groups, start = [], 0
    while start < len(order):
        longest = int(sorted_lengths[start])
        rows = max(1, budget // max(1, width * longest))
        groups.append((order[start : start + rows], longest))
        start += rows
    return groups


class _AdditiveScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, c: Tensor, u: Tensor, lengths: Tensor, budget: int) -> Tensor:
        out = a.new_full((a.shape[0], a.shape[1], c.shape[1]), float("-inf"))
        groups = _groups(lengths, a.shape[1] * a.shape[2], budget)
        for rows, n in groups:
            t = torch.tanh(a[rows][:, :, None] + c[rows, :n][:, None])  # [r, N, n, D]
            part = out.new_full((len(rows), a.shape[1], c.shape[1]), float("-inf"))
            part[:, :, :n] = t @ u
            out[rows] = part
        ctx.save_for_backward(a, c, u)
        ctx.groups = groups
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, c, u = ctx.saved_tensors
        grad_a, grad_c, grad_u = torch.zeros_like(a), torch.zeros_like(c), torch.zeros_like(u)
        for rows, n in ctx.groups:
            t = torch.tanh(a[rows][:, :, None] + c[rows, :n][:, None])  # recomputed, [r, N, n, D]
            g = grad[rows][:, :, :n]  # [r, N, n]
            grad_u += (g.reshape(1, -1) @ t.reshape(-1, t.shape[-1]))[0]
            pre = (1 - t * t) * (g[..., None] * u)  # d delta / d (a + c)
            grad_a[rows] = pre.sum(2)
            grad_c[rows, :n] = pre.sum(1)
        return grad_a, grad_c, grad_u, None, None


class CrossGate(nn.Module):
    """Feature fusion by a cross gate (Feng et al. 2018; the original code's ``CrossGate``): each stream is gated by
    the other, ``v'_i = sigmoid(W_q q_i + b) * v_i`` and ``q'_i = sigmoid(W_v v_i + b') * q_i``, element-wise.

    The gate supplies the first-order product of clip and aggregated query that concatenation alone leaves to the
    Bi-GRU to discover."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.from_video, self.from_query = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, v: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        return torch.sigmoid(self.from_query(q)) * v, torch.sigmoid(self.from_video(v)) * q


class Interaction(nn.Module):
    """§3.2's interaction, "attention-based aggregation and feature fusion (Zhang et al., 2019)": the aggregated
    query q_i of eq. 9, the cross gate, then m_i = BiGRU([v'_i ; q'_i]) (App. A.2; the original code's
    ``BetterFusion``)."""

    def __init__(self, d: int, d_att: int | None = None, gate: bool = True) -> None:
        super().__init__()
        self.attend = ClipQueryAttention(d, d_att)
        self.gate = CrossGate(d) if gate else None  # None: attention and concatenation only (an ablation)
        self.gru = BiGRU(2 * d, d)

    def forward(self, v: Tensor, s: Tensor, s_mask: Tensor) -> Tensor:
        q = self.attend(v, s, s_mask)
        if self.gate is not None:
            v, q = self.gate(v, q)
        return self.gru(torch.cat([v, q], dim=-1))


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
