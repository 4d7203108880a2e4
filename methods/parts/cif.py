"""Continuous integrate-and-fire (CIF; Dong & Xu 2020): SIL's conciseness module (§3.3.2, App. D.2, eq. 12).

A weight predictor gives every acoustic frame ``h_t`` a weight ``alpha_t`` in (0, 1), "the amount of information" in
it. Scanning left to right, the weights accumulate; when the sum reaches the threshold (1.0) a segment boundary is
detected and one segment vector fires: the weighted **sum** of the frames since the last boundary, where the
boundary frame contributes only the part of its weight that completes the segment (``l_j``) and the rest (``r_j``)
starts the next segment. The segments ``S_c`` are shorter than the frames ``S_a`` and, with the scaling below,
one per word.

- **Scaling (pre-training):** given the target length ``S`` (words), ``alpha' = alpha * S / sum(alpha)``, so exactly
  ``S`` segments fire and each can be matched with one word; the quantity loss ``|sum(alpha) - S|`` is taken on the
  unscaled weights (:func:`quantity`).
- **Tail handling:** at the end of each sequence a leftover weight above ``tail`` (0.5) fires as the **normalised**
  partial sum (leftover state / leftover weight); a smaller leftover is dropped. This is the rule of the CIF paper
  as the original SIL code (Han's ``CifMiddleware``) implements it, except that here it applies at every sequence's
  own last frame (the original only reaches it at a padded frame, so the longest sequence of a batch got none).
- The threshold test has a tolerance of 1e-5: a sum that reaches 1.0 in exact arithmetic can fall short in float32
  (``baselines.md`` §8, vector C), and a missed fire would move every later boundary. The remainder is always taken
  against 1.0, as in FunASR and the original code.

Reference vectors (``baselines.md`` §8, hand-derived with dyadic weights) are in ``tests/test_sil.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

TOLERANCE = 1e-5


class WeightPredictor(nn.Module):
    """``alpha = sigmoid(W3 relu(W2 conv(h)))``: the original code's weight network (kernel 5), masked.

    The padded frames are zeroed before the convolution, so a frame near a sequence's end sees zeros beyond it,
    as the convolution's own zero padding gives a sequence alone: an utterance's weights (and the frozen features
    cached from them) do not depend on the batch it is encoded in. (The original code convolves the unmasked
    padding and masks only the output, so the last two frames' weights read whatever the padding held.)"""

    def __init__(self, d: int, kernel: int = 5, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d, d, kernel, padding=kernel // 2)
        self.hidden = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(d, 1)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        x = self.conv((h * mask[..., None].to(h.dtype)).transpose(1, 2)).transpose(1, 2)
        x = self.dropout(torch.relu(self.hidden(x)))
        return torch.sigmoid(self.out(x)).squeeze(-1) * mask


def scale_weights(alpha: Tensor, target: Tensor) -> Tensor:
    """Training-time scaling: each row's weights rescaled to sum to its target length."""
    return alpha * (target.to(alpha.dtype) / alpha.sum(-1).clamp_min(1e-8))[:, None]


def quantity(alpha: Tensor, target: Tensor) -> Tensor:
    """The length term of eq. 2, ``|n_w_hat - n_w|`` with ``n_w_hat = sum(alpha)`` (unscaled), batch mean."""
    return (alpha.sum(-1) - target.to(alpha.dtype)).abs().mean()


def cif(h: Tensor, alpha: Tensor, mask: Tensor, threshold: float = 1.0, tail: float | None = 0.5
        ) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Integrate ``h`` [B, T, d] with weights ``alpha`` [B, T] and fire segments.

    Returns the segments ``[B, n_max, d]`` (compacted to the left, zero-padded) and their mask ``[B, n_max]``.
    ``tail=None`` turns tail handling off (the leftover is dropped). A row that fires nothing gets one zero
    segment marked invalid; :func:`ensure_one` lets a caller keep such rows usable.
    """
    b, t_max, d = h.shape
    alpha = alpha * mask
    lengths = mask.sum(1)
    acc = h.new_zeros(b)  # accumulated weight of the open segment
    state = h.new_zeros(b, d)  # its weighted sum so far
    vectors, fired = [], []
    # unbind, not h[:, t]: each indexing op's backward would allocate a whole [B, T, d] gradient (quadratic in T)
    for t, (a, h_t, real) in enumerate(zip(alpha.unbind(1), h.unbind(1), mask.unbind(1), strict=True)):
        total = acc + a
        fire = (total >= threshold - TOLERANCE) & real
        need = 1.0 - acc  # l_j: the part of alpha_t that completes the open segment
        rest = a - need  # r_j: what starts the next one
        vectors.append(state + need[:, None] * h_t)
        fired.append(fire)
        state = torch.where(fire[:, None], rest[:, None] * h_t, state + a[:, None] * h_t)
        acc = torch.where(fire, rest, total)
        if tail is not None:
            last = lengths == t + 1
            vectors.append(state / acc.clamp_min(1e-8)[:, None])
            fired.append(last & (acc > tail))
    v, f = torch.stack(vectors, 1), torch.stack(fired, 1)  # [B, slots, d], [B, slots]
    counts = f.sum(1)
    n_max = max(int(counts.max()), 1)
    rows, slots = f.nonzero(as_tuple=True)
    position = (f.cumsum(1) - 1)[rows, slots]
    out = h.new_zeros(b, n_max, d).index_put((rows, position), v[rows, slots])
    out_mask = torch.arange(n_max, device=h.device)[None] < counts[:, None]
    return out, out_mask


def ensure_one(segments: Tensor, seg_mask: Tensor, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Give a row that fired no segment one segment, the weighted mean of its frames (so pooling stays defined).

    Happens only at inference on very short or silent utterances (the weights sum below the tail threshold).
    """
    empty = ~seg_mask.any(1)
    if not bool(empty.any()):
        return segments, seg_mask
    mean = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
    segments = segments.clone()
    segments[empty, 0] = mean[empty]
    seg_mask = seg_mask.clone()
    seg_mask[empty, 0] = True
    return segments, seg_mask
