"""WSLLN (Gao et al., EMNLP 2019): **this suite's re-implementation** (no public code exists; ``baselines.md`` §5).

What the sources fix: the abstract ("measures segment-text consistency and conducts segment selection (conditioned
on the text) simultaneously. Results from both are merged and optimized as a video-sentence matching problem",
trained "with only video-sentence pairs") and SIL App. B.3 ("fuses the visual proposals with the text and conducts
the proposal detection and alignment simultaneously, then generates final matching scores"). The rest follows
``baselines.md`` §5's "compact faithful-in-spirit version"; every choice below that the sources do not fix is ours.

One query's way through the network (:meth:`WSLLNNet.log_scores`):

1. proposals: the **153 candidates of 2D-TAN's sparse map** (``methods.parts.proposals``), so that WSLLN is scored
   by the one evaluator on the same candidate set as Base and RTBPN (the paper's own sliding windows are not known
   exactly, §5 "[unverified]"). Clip features ``[B, 64, 500]`` -> linear + ReLU to d -> each candidate's feature
   is the max over its clips (the shared ``ProposalMap``; WSLLN's exact pooling is not known);
2. text: fixed word vectors + linear (``WordEncoder``) -> Bi-GRU; the sentence feature q is the Bi-GRU's final
   state (forward half at the last word, backward half at the first);
3. multi-modal fusion of each proposal v_i with q (App. B.3 "fuses the visual proposals with the text"):
   ``m_i = ReLU(W [v_i * q ; v_i + q ; v_i])`` (our choice), dropout;
4. alignment branch: FC -> ReLU -> FC -> 2-way softmax per proposal, s^a_i = P(consistent);
   detection branch: FC -> ReLU -> FC -> softmax **across the proposals**, s^d_i (the selection);
5. merged scores p_i = s^a_i * s^d_i; the video-sentence matching score S = sum_i p_i, in (0, 1).

Training (:func:`matching_loss`): binary cross-entropy of S against 1 for each matched (V, Q) and 0 for (V, Q'),
Q' the query of another sample of the batch (Base's cyclic-shift partner; a partner of the same video is not a
negative and is left out). Inference ranks the candidates by p_i; the evaluator takes the top-1 and the top-5
after NMS at 0.45 (the paper reports no R@5; SIL's tables show "-", but the suite computes it).

Departures and choices (none fixed by a source): the candidate set and its max pooling; the fusion formula; the
sentence feature; one mismatched sentence per pair; the network width (``paper``: d = 256 as Base, the suite's
grounding loop of App. B.2). Not built: the refinement step with pseudo-labels that the paper may have
(§5 "[unverified]"); without its text it cannot be reproduced faithfully.

**WSLLN + L_sem** (``wslln+lsem``, Table 1; §4.2, App. B.3): ``query = "features"`` replaces step 2's text encoder,
the fixed word vectors and their linear map, with the frozen L_sem-pre-trained speech encoder (the very stage and
encodings of ``base+lsem``, ``methods/lsem.py``) and a trainable FC layer over its
feature steps (:class:`methods.parts.encoders.FeatureEncoder`); the Bi-GRU, its final state as q, and everything
after are WSLLN's as above. The sentence feature is read at the last and first *feature steps* (the L_sem encoder
has no CIF: one step per 80 ms frame, not per word). The paper gives no other detail of this row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bench import config as cfg
from bench.context import MethodSpec, RunContext, RunResult, register
from bench.data import grounding
from methods.parts import losses, proposals, recipe
from methods.parts.encoders import BiGRU, query_encoders
from methods.parts.finetune import Finetune

DESCRIPTION = (
    "WSLLN (this suite's re-implementation): alignment x detection branches over the 153 candidates, matching BCE"
)


@dataclass(frozen=True)
class WSLLNConfig:
    d: int = 256
    n_clips: int = 64
    dropout: float = 0.1
    select_on: str = "R1@0.5"
    eval_batch_size: int = 128
    train: cfg.TrainConfig = field(default_factory=lambda: cfg.GROUNDING_TRAIN["paper"])
    asr: Any = None  # methods.asr's configuration on the asr-wslln row; None on the gold text
    query: Literal["words", "features"] = "words"  # "words": word vectors of a text; "features": wslln+lsem
    asp: Any = None  # methods.sil's encoder configuration on the wslln+lsem row (base+lsem's); None on text
    finetune: bool = False  # wslln+lsem only: the encoder trained with the backbone (Table 1's fine-tune column)


def wslln_config(profile: str, **kw: Any) -> WSLLNConfig:
    """``paper``: d = 256 (WSLLN's own sizes are not known); ``small``: d = 64 for 2 CPU cores; ``tiny``: CI."""
    cfg.check_profile(profile)
    size = {"tiny": dict(d=32), "small": dict(d=64), "paper": {}}
    clips = {"n_clips": cfg.GROUNDING_CLIPS[profile]}
    return WSLLNConfig(**{"train": cfg.GROUNDING_TRAIN[profile], **clips, **size[profile], **kw})


def sentence_feature(s: Tensor, mask: Tensor) -> Tensor:
    """The Bi-GRU's final state ``[B, d]``: the forward half at the last real word, the backward half at the first."""
    half = s.shape[-1] // 2
    last = mask.sum(1) - 1
    forward = s[torch.arange(s.shape[0], device=s.device), last, :half]
    return torch.cat([forward, s[:, 0, half:]], dim=-1)


class WSLLNNet(nn.Module):
    """Proposals x sentence -> alignment and detection branches; ``forward`` gives logit(p_i) of the candidates."""

    def __init__(self, c: WSLLNConfig, video_dim: int, word_vectors: Tensor | None = None,
                 query_dim: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.c = c
        self.clips = nn.Sequential(nn.Linear(video_dim, c.d), nn.ReLU())
        self.map = proposals.ProposalMap(c.n_clips)
        cells = {tuple(x): i for i, x in enumerate(proposals.valid_cells(c.n_clips).tolist())}
        where = [cells[tuple(x)] for x in proposals.candidates(c.n_clips).tolist()]
        self.register_buffer("cand_cells", torch.tensor(where, dtype=torch.long), persistent=False)
        self.words, self.speech = query_encoders(c.query, c.d, word_vectors, query_dim)
        self.query_gru = BiGRU(c.d, c.d)
        self.fuse = nn.Sequential(nn.Linear(3 * c.d, c.d), nn.ReLU(), nn.Dropout(c.dropout))
        self.align = nn.Sequential(nn.Linear(c.d, c.d), nn.ReLU(), nn.Linear(c.d, 2))
        self.detect = nn.Sequential(nn.Linear(c.d, c.d), nn.ReLU(), nn.Linear(c.d, 1))

    def encode_video(self, batch: dict[str, Tensor]) -> Tensor:
        """The candidates' visual features ``[B, n_cand, d]``."""
        return self.map(self.clips(batch["video"]))[:, self.cand_cells]

    def encode_query(self, batch: dict[str, Tensor]) -> Tensor:
        if self.speech is not None:
            s, mask = self.speech(batch["sem"], batch["sem_len"])
        else:
            s, mask = self.words(batch["words"], batch["words_len"])
        return sentence_feature(self.query_gru(s, mask), mask)

    def log_scores(self, v: Tensor, q: Tensor) -> Tensor:
        """log p_i = log s^a_i + log s^d_i for each (proposals, sentence) pair, ``[B, n_cand]``."""
        q = q[:, None].expand_as(v)
        m = self.fuse(torch.cat([v * q, v + q, v], dim=-1))
        log_align = F.log_softmax(self.align(m), dim=-1)[..., 1]
        log_detect = F.log_softmax(self.detect(m).squeeze(-1), dim=-1)
        return log_align + log_detect

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """logit(p_i), so that the shared evaluator's sigmoid gives back p_i exactly (no clamping, no ties)."""
        log_p = self.log_scores(self.encode_video(batch), self.encode_query(batch))
        return log_p - torch.log1p(-log_p.exp())


def matching_loss(s_pos: Tensor, s_neg: Tensor, keep: Tensor | None = None) -> Tensor:
    """Video-sentence matching BCE: ``(sum_b -log S_b - sum_{b kept} log(1 - S'_b)) / B``.

    ``S`` = video-level score of the matched pairs, ``S'`` of the mismatched ones; ``keep`` ([B] bool) drops a
    mismatched pair whose partner is not a negative (same video).
    """
    pos = -torch.log(s_pos.clamp_min(losses.EPS))
    neg = -torch.log((1 - s_neg).clamp_min(losses.EPS))
    if keep is not None:
        neg = neg * keep.to(neg.dtype)
    return (pos + neg).mean()


def wslln_loss(model: WSLLNNet, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """The matched and the mismatched pairs scored in one pass; S = sum of p_i over the candidates."""
    v, q = model.encode_video(batch), model.encode_query(batch)
    other, distinct = losses.partner(batch["video_idx"])
    b = v.shape[0]
    s_pos, s_neg = model.log_scores(torch.cat([v, v]), torch.cat([q, q[other]])).exp().sum(-1).split(b)
    loss = matching_loss(s_pos, s_neg, distinct)
    return loss, {"bce": loss.item(), "s_pos": s_pos.mean().item(), "s_neg": s_neg.mean().item()}


def run(ctx: RunContext, prepare: recipe.Prepare | None = None,
        finetune: Finetune | None = None) -> RunResult:  # fmt: skip
    """Train on train, select on val, test once (:func:`methods.parts.recipe.ground`); ``prepare`` gives the
    cascade's ASR transcripts (``asr-wslln``, ``methods/cascade.py``) or the frozen L_sem encoder's features
    (``wslln+lsem``, ``methods/lsem.py``), and ``finetune`` that encoder trained with the backbone instead."""
    c: WSLLNConfig = ctx.config
    if c.finetune and finetune is None:
        raise ValueError(f"finetune=true needs a pre-trained speech encoder: run wslln+lsem-ft, not {ctx.spec.name}")

    def build(data: grounding.GroundingData) -> WSLLNNet:
        query_dim = c.asp.d if c.query == "features" else None
        return WSLLNNet(c, data.train.videos.shape[-1], data.word_vectors, query_dim)

    return recipe.ground(ctx, c, build, wslln_loss, prepare=prepare, finetune=finetune)


register(MethodSpec("wslln-text", "WSLLN (gold text)", ("ground",), "gold-text", "weak",
                    f"{DESCRIPTION}; on the gold transcript", run=run, config=wslln_config, issue=6))  # fmt: skip
