"""The one grounding recipe, and the ranking and scoring of candidates that every grounding method shares.

:func:`ground` is every trained grounding method's ``run``, given its own pieces: how to build its network from the
data, its loss, how to score a split (by default the 2D-TAN candidates through :func:`evaluate_split`), and an
optional ``prepare`` that adapts the data before the model is built (a cascade's ASR transcripts in place of the
words, SIL's frozen speech features as ``sem``), and for Table 1's fine-tune column a ``finetune`` that puts the
pre-trained encoder in front of the network instead (:mod:`methods.parts.finetune`). The loop itself is
:func:`bench.train.fit_grounding`.

A method's scores of its candidates become spans ranked by score (:func:`rank_split` for the 2D-TAN candidate set
that Base, SIL, WSLLN and RTBPN score; SCN, 2D-TAN and the oracle rank their own candidate sets), and
:func:`score_ranked` hands them to the one evaluator (:mod:`bench.evaluate`), which also writes the predictions file.
The two live in one module so that a reader follows a query from the recipe to the evaluator without changing file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench import evaluate, rng
from bench.context import RunContext, RunResult
from bench.data import grounding
from bench.train import fit_grounding
from methods.parts import finetune as ft
from methods.parts import proposals

Prepare = Callable[[RunContext, grounding.GroundingData], grounding.GroundingData]
Loss = Callable[[Any, dict[str, Tensor]], tuple[Tensor, dict[str, float]]]
Score = Callable[[Any, grounding.GroundingSplit, Path | None], dict[str, float]]


def ground(ctx: RunContext, settings: Any, build: Callable[[grounding.GroundingData], nn.Module], loss: Loss,
           score: Score | None = None, prepare: Prepare | None = None,
           finetune: ft.Finetune | None = None) -> RunResult:  # fmt: skip
    """Train on train, select on val, test once; the harness logs the result.

    ``settings`` holds the grounding fields every method's configuration has: ``n_clips``, ``train``,
    ``select_on`` and ``eval_batch_size``. ``loss(model, batch)`` and ``score(model, split, predictions path)``
    take the built model first. With ``finetune``, the built network reads ``sem`` from the pre-trained encoder
    (:class:`methods.parts.finetune.FineTuned`), trained with it; ``loss`` is the frozen row's, taken through it.
    """
    c = settings
    if finetune is not None and score is not None:
        raise ValueError("a fine-tuned encoder is scored through the network's forward: pass no score")
    data = grounding.load(ctx.data, ctx.cache_dir, ctx.device, c.n_clips)
    if prepare is not None:
        data = prepare(ctx, data)
    if finetune is not None:
        data = finetune.prepare(ctx, data)
        net = build(data)
        with rng.kept():  # the encoder's construction draws nothing from the run's streams: the grounding network
            encoder = finetune.load()  # starts from the same weights as the frozen row's of the same seed
        model = ft.FineTuned(encoder, net).to(ctx.device)
        loss = ft.loss_through(loss)
        ctx.log.log_params({"finetune": True})
    else:
        model = build(data).to(ctx.device)
    ctx.log.log_params({"parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)})

    def score_split(split: grounding.GroundingSplit, path: Path | None) -> dict[str, float]:
        if score is not None:
            return score(model, split, path)
        return evaluate_split(model, split, c.eval_batch_size, c.n_clips, path)

    return fit_grounding(ctx, model, lambda batch: loss(model, batch), data, c.train, c.select_on, score_split)


# -- ranking and scoring of candidates --------------------------------------------------------------------------------


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
