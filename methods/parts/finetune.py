"""Table 1's fine-tune column (§4.4, "mIoU (finetune)"): the pre-trained speech encoder trained with the grounding
network on the grounding data, in place of its frozen features.

The frozen rows read each query's features once (:mod:`methods.parts.frozen`, ``sem`` / ``sem_len``). A fine-tuned
row instead puts the encoder in front of the same grounding network (:class:`FineTuned`): every batch's speech goes
through the encoder inside the training graph, so the grounding loss reaches the encoder's weights, and the same
optimiser (the grounding recipe's Adam, learning-rate schedule and gradient clipping over every parameter) updates
both. The paper says nothing of how it fine-tunes (no learning rate, no freezing schedule); one optimiser at the
grounding learning rate is this suite's reading, the simplest one.

What the encoder reads is what it read in pre-training and when its features were frozen: the corpus's reading of
each query's wav (:func:`bench.data.corpus.speech_item`: the 4 kHz standardised ``wave`` and the standardised
log-mel), attached to every split by :func:`with_speech_inputs` (cached once per dataset). The grounding data's own
``mel`` is the same 80-band log-mel of the same file; the corpus's one replaces it so that the encoder's input does
not depend on which reader made it.

An encoder fine-tunes through ``grounding_features(batch) -> (features [B, L, D], lengths [B])``, the differentiable
form of the ``features`` its frozen row reads; dropout in it is on in training (``model.train()`` reaches it) and off
in evaluation, as for the rest of the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from bench.context import RunContext
from bench.data import corpus, grounding, loader
from methods.parts import frozen

INPUTS_VERSION = 1  # bump when what with_speech_inputs attaches changes


@dataclass(frozen=True)
class Finetune:
    """How :func:`methods.parts.recipe.ground` fine-tunes: ``load()`` gives the pre-trained encoder (loaded once,
    when the model is built), whose ``grounding_features`` the grounding network reads as ``sem``; ``inputs`` adds
    what it reads to every split (default :func:`with_speech_inputs`)."""

    load: Callable[[], nn.Module]
    inputs: Callable[[RunContext, grounding.GroundingData], grounding.GroundingData] | None = None

    def prepare(self, ctx: RunContext, data: grounding.GroundingData) -> grounding.GroundingData:
        return (self.inputs or with_speech_inputs)(ctx, data)


class FineTuned(nn.Module):
    """The grounding network ``net`` reading ``sem`` / ``sem_len`` from ``encoder``, both trained together."""

    def __init__(self, encoder: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder.requires_grad_(True)
        self.net = net

    def inputs(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch as the frozen row's network sees it: the encoder's features as ``sem`` / ``sem_len``."""
        feats, lengths = self.encoder.grounding_features(batch)
        return {**batch, "sem": feats, "sem_len": lengths.to(feats.device)}

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.net(self.inputs(batch))


def loss_through(loss: Callable[[Any, dict[str, Tensor]], Any]) -> Callable[[FineTuned, dict[str, Tensor]], Any]:
    """A frozen row's ``loss(net, batch)`` as the fine-tuned model's: the same loss on the encoder's features."""

    def finetuned(model: FineTuned, batch: dict[str, Tensor]) -> Any:
        return loss(model.net, model.inputs(batch))

    return finetuned


def with_speech_inputs(ctx: RunContext, data: grounding.GroundingData,
                       read: Callable[[Path], dict[str, Tensor]] = corpus.speech_item,
                       fields: tuple[str, ...] = ("wave", "mel"), name: str = "inputs",
                       version: str = "") -> grounding.GroundingData:  # fmt: skip
    """Every split with each query's encoder input beside, or in place of, its fields: by default the corpus's
    reading of its wav (``wave`` / ``wave_len`` at 4 kHz, ``mel`` / ``mel_len``, :func:`bench.data.corpus.speech_item`).
    An encoder that reads its speech otherwise gives its own ``read(wav) -> {field: [steps, ...]}``, the ``fields``
    it returns (each ragged: padded, with an ``_len`` companion), a cache ``name`` and a ``version`` that changes
    with ``read``."""

    def rows(split_name: str, split: grounding.GroundingSplit, wavs: dict[str, Path]) -> list[dict[str, Tensor]]:
        from tqdm import tqdm

        bars = dict(desc=f"speech inputs {split_name}", unit="query", leave=False, disable=None)
        return [read(wavs[q]) for q in tqdm(split.qids, **bars)]

    def key(split_name: str) -> str:
        return loader.content_key(data.content_hash, split_name, corpus.VERSION, INPUTS_VERSION, version)

    return frozen.with_query_fields(ctx, data, name, key, rows, ragged=fields)
