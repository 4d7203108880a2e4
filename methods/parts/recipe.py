"""The one grounding recipe: load the grounding data, adapt it, build the model, train on train, select on val, test.

Every trained grounding method's ``run`` is this function with its own pieces: how to build its network from the
data, its loss, how to score a split (by default the 2D-TAN candidates through :func:`ranking.evaluate_split`), and
an optional ``prepare`` that adapts the data before the model is built (a cascade's ASR transcripts in place of the
words, SIL's frozen speech features as ``sem``). The loop itself is :func:`bench.train.fit_grounding`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from bench.context import RunContext, RunResult
from bench.data import grounding
from bench.train import fit_grounding
from methods.parts import ranking

Prepare = Callable[[RunContext, grounding.GroundingData], grounding.GroundingData]
Loss = Callable[[Any, dict[str, Tensor]], tuple[Tensor, dict[str, float]]]
Score = Callable[[Any, grounding.GroundingSplit, Path | None], dict[str, float]]


def ground(ctx: RunContext, settings: Any, build: Callable[[grounding.GroundingData], nn.Module], loss: Loss,
           score: Score | None = None, prepare: Prepare | None = None) -> RunResult:  # fmt: skip
    """Train on train, select on val, test once; the harness logs the result.

    ``settings`` holds the grounding fields every method's configuration has: ``n_clips``, ``train``,
    ``select_on`` and ``eval_batch_size``. ``loss(model, batch)`` and ``score(model, split, predictions path)``
    take the built model first.
    """
    c = settings
    data = grounding.load(ctx.data, ctx.cache_dir, ctx.device, c.n_clips)
    if prepare is not None:
        data = prepare(ctx, data)
    model = build(data).to(ctx.device)
    ctx.log.log_params({"parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)})

    def score_split(split: grounding.GroundingSplit, path: Path | None) -> dict[str, float]:
        if score is not None:
            return score(model, split, path)
        return ranking.evaluate_split(model, split, c.eval_batch_size, c.n_clips, path)

    return fit_grounding(ctx, model, lambda batch: loss(model, batch), data, c.train, c.select_on, score_split)
