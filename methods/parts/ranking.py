"""Ranking and scoring of candidates, shared by every grounding method.

A method's scores of its candidates become spans ranked by score (:func:`rank_split` for the 2D-TAN candidate set
that Base, SIL, WSLLN and RTBPN score; SCN, 2D-TAN and the oracle rank their own candidate sets), and
:func:`score_ranked` hands them to the one evaluator (:mod:`bench.evaluate`), which also writes the predictions file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from bench import evaluate
from bench.data import grounding
from methods.parts import proposals


@torch.no_grad()
def rank_split(model: nn.Module, split: grounding.GroundingSplit, batch_size: int, n_clips: int):
    """Every query's candidates ranked by score: spans ``[Q, n_cand, 2]`` (seconds) and scores ``[Q, n_cand]``."""
    scores = torch.cat([torch.sigmoid(model(b)) for b in split.batches(batch_size)])
    order = scores.argsort(dim=1, descending=True, stable=True)
    spans = proposals.candidate_spans(split.queries["duration"], n_clips)
    spans = spans.gather(1, order[..., None].expand(-1, -1, 2))
    return spans, scores.gather(1, order)


def evaluate_split(model: nn.Module, split: grounding.GroundingSplit, batch_size: int, n_clips: int,
                   predictions: Path | None = None) -> dict[str, float]:  # fmt: skip
    """The one evaluator on a split's ranked candidates; optionally also writes the predictions file."""
    spans, scores = rank_split(model, split, batch_size, n_clips)
    return score_ranked(split, spans, scores, predictions)


def score_ranked(split: grounding.GroundingSplit, spans: Tensor, scores: Tensor,
                 predictions: Path | None = None) -> dict[str, float]:  # fmt: skip
    """The evaluator's metrics (and diagnostics) of ranked spans ``[Q, K, 2]`` with their scores ``[Q, K]``."""
    q = split.queries
    spans, scores, gt, duration = spans.cpu(), scores.cpu(), q["span"].cpu(), q["duration"].cpu()
    if predictions is not None:
        evaluate.write_predictions(predictions, split.qids, duration, gt, spans, scores)
    metrics = evaluate.evaluate(spans, gt, duration)
    keep = evaluate.METRIC_KEYS + evaluate.DIAGNOSTIC_KEYS + evaluate.TIE_KEYS
    return {k: v for k, v in metrics.items() if k in keep}
