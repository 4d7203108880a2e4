"""Span-predictor decoding: every span (start clip i <= end clip j) ranked by ``P(i, j) = p_start(i) p_end(j)`` and
handed to the one evaluator. VSLNet's conditioned span predictor and VGCL's boundary heads both end here.

A network gives start and end logits per clip ``[B, n]``; span (i, j) covers the seconds ``[i D/n, (j + 1) D/n]``.
The top-1 is the argmax of P over the upper triangle (ties to the smallest start, then the smallest end). The
evaluator takes R@5 after its own NMS (0.45), so each query's list goes down to its fifth NMS survivor (and at least
``n_ranked`` spans): R@1 and R@5 are what the whole ranking gives (:func:`nms_depth`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from bench import evaluate
from bench.data import grounding

# a batch -> start and end logits [B, n] (log-probabilities serve as well: the softmax of log p is p)
SpanLogits = Callable[[dict[str, Tensor]], tuple[Tensor, Tensor]]


def rank_spans(start: Tensor, end: Tensor, duration: Tensor) -> tuple[Tensor, Tensor]:
    """Every span (i <= j) ranked by ``P = softmax(start)_i softmax(end)_j``: seconds ``[B, n(n+1)/2, 2]`` and P.

    Ties keep row-major order (smallest start, then smallest end), so the first span is the argmax of P.
    """
    n = start.shape[1]
    p = torch.softmax(start, dim=1)[:, :, None] * torch.softmax(end, dim=1)[:, None, :]
    i, j = torch.triu_indices(n, n, device=start.device)  # row-major over the upper triangle
    scores, order = p[:, i, j].sort(dim=1, descending=True, stable=True)
    seconds = torch.stack([i[order] / n, (j[order] + 1) / n], dim=-1) * duration[:, None, None]
    return seconds, scores


def nms_depth(spans: Tensor, top_k: int = 5) -> Tensor:
    """``[Q]``: how far down each ranked list the evaluator's NMS must read to keep ``top_k`` spans (the list's
    length where it keeps fewer). Cutting each list there leaves every R@n, n <= top_k, unchanged."""
    kept, kept_valid = evaluate.nms(spans, threshold=evaluate.NMS_THRESHOLD, top_k=top_k)
    last = (spans == kept[:, -1:]).all(dim=-1).float().argmax(dim=1) + 1  # spans are distinct cells
    return torch.where(kept_valid[:, -1], last, spans.shape[1])


@torch.no_grad()
def rank_split(logits: SpanLogits, split: grounding.GroundingSplit, batch_size: int,
               n_ranked: int) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Each query's ranked spans ``[Q, K, 2]``, their P ``[Q, K]`` and which are real ``[Q, K]``: down to the fifth
    NMS survivor and at least ``n_ranked`` deep (the rest is padding)."""
    parts = []
    for batch in split.batches(batch_size):
        spans, scores = rank_spans(*logits(batch), batch["duration"])
        depth = nms_depth(spans).clamp(min=min(n_ranked, spans.shape[1]))
        k = int(depth.max())
        parts.append((spans[:, :k], scores[:, :k], torch.arange(k, device=spans.device) < depth[:, None]))
    width = max(p[0].shape[1] for p in parts)
    return tuple(cat_padded([p[i] for p in parts], width) for i in range(3))  # type: ignore[return-value]


def cat_padded(tensors: list[Tensor], width: int) -> Tensor:
    """Concatenate ``[Q_b, K_b, ...]`` tensors along dim 0, each zero-padded along dim 1 to ``width``."""
    first = tensors[0]
    out = first.new_zeros((sum(t.shape[0] for t in tensors), width, *first.shape[2:]))
    row = 0
    for t in tensors:
        out[row : row + t.shape[0], : t.shape[1]] = t
        row += t.shape[0]
    return out


def evaluate_split(logits: SpanLogits, split: grounding.GroundingSplit, batch_size: int, n_ranked: int,
                   predictions: Path | None = None) -> dict[str, float]:  # fmt: skip
    """The one evaluator on a split's ranked spans (each list with its own length); optionally writes the
    predictions file."""
    spans, scores, valid = (t.cpu() for t in rank_split(logits, split, batch_size, n_ranked))
    q = split.queries
    gt, duration = q["span"].cpu(), q["duration"].cpu()
    if predictions is not None:
        evaluate.write_predictions(predictions, split.qids, duration, gt, spans, scores, valid)
    metrics = evaluate.evaluate(spans, gt, duration, valid)
    return {k: v for k, v in metrics.items() if k in evaluate.METRIC_KEYS + evaluate.DIAGNOSTIC_KEYS}
