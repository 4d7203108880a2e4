"""RTBPN: Regularized Two-Branch Proposal Network (Zhang et al., ACM MM 2020), on a text query (SIL App. B.3).

Built from ``baselines.md`` §3, which read the released code (``ikuinen/regularized_two-branch_proposal_network``,
ActivityNet config; the paper's own equations could not be read, so the code's terms are the reference). One
query's way through the network (:class:`RTBPNNet`):

1. video: C3D features resampled to 64 clips -> a linear map to d, no activation (the code's Conv1d(k=1) +
   AvgPool1d(4, 4) from 256 frames: linear maps commute with averaging); query: fixed word vectors -> Bi-GRU;
2. **language-aware filter** (:class:`LanguageFilter`, on detached inputs as in the code): g = FC(NetVLAD_8(words)),
   ``w_t = sigmoid(W2 tanh(W1 (v_t * g)))``, min-max normalised over the clips (:func:`minmax`). The **enhanced**
   stream is ``v_t w_t``, the **suppressed** one ``v_t (1 - w_t)`` (the code's background vector b is a frozen zero);
3. the **shared two-branch proposal module**, the same weights for every stream: clip-to-word tanh attention
   (eq. 9's ``ClipQueryAttention``), a cross gate (:class:`methods.parts.fusion.CrossGate`), a Bi-GRU over
   ``[v' ; a']``, dropout 0.1, then 2D-TAN's sparse map (max over clips), one k x k map convolution with masked
   re-weighting, and a linear head read at the **153 candidates** (80 at 32 clips): logits, p = sigmoid.
   Base's head, :class:`methods.parts.proposals.ProposalHead`, with dropout on the fused clips, as RTBPN's code.

Training (:func:`rtbpn_loss`), the code's ``weakly_supervised_loss`` with ActivityNet's weights:

- centre-based branch score (:func:`centre_score`): c* = the best candidate; K = mean un-normalised p over the
  ``top_k`` = 32 candidates of highest IoU with c* (c* included);
- inter-sample: ``L_inter = mean_b[-log K(V, Q) - log(1 - K(V', Q))]``, V' re-filtered with its own weights;
- intra-sample: ``L_intra = mean_b max(0, 0.2 - K_enhanced + K_suppressed)``;
- proposal regularisation ``reg1 = mean(p_hat) + mean_b(-max_j log_softmax(p_top32)_j)`` ("global" + "gap",
  p_hat = min-max normalised p), filter regularisation ``reg2 = mean(w) - mean(softmax(w) log_softmax(w))``;
- ``L = L_inter + 0.1 reg1 + 0.1 L_intra + 0.01 reg2``.

**RTBPN + AVCL** (``rtbpn-text+avcl``, Table 6: SIL §3.4's acoustic-visual contrastive loss on RTBPN, gold text):
``L + lambda3 L_AVCL`` with SIL's own :class:`methods.parts.avcl.AVCL` and :func:`~methods.parts.avcl.select_clips`
(T = 12, lambda3 = 0.1, both selection strategies): the enhanced branch's top proposal and clip-level scores (the
proposal scorer read at the single-clip cells, as SIL does on Base) pick T positive and T negative clips among RTBPN's
clip features; the query side is RTBPN's Bi-GRU output.

Inference: the enhanced branch's candidates ranked by p; the one evaluator (strict IoU > m, NMS 0.45, top-1 mIoU)
replaces the code's metric quirks (``baselines.md`` §9).

Departures: V' is Base's cyclic-shift partner of the batch, and a partner of the same video is left out of
L_inter (the code pairs each sample with the batch-reversed one, and an odd batch's middle sample with itself);
the word vectors pass the suite's ``WordEncoder`` linear map before the Bi-GRU (the code feeds GloVe to the GRU);
ties in the centre-based selection go to the higher score (a stable sort; the code's GPU argsort is unordered);
the suite's evaluator, not the code's. Sizes: ``paper`` = the code's ActivityNet config (d = 512, 5x5 map kernel,
Adam lr 8e-4, weight decay 1e-7, 200 warm-up updates, batch 64, 19 epochs); ``small`` keeps RTBPN's learning rate
and weight decay with the suite's small loop and d = 64, a 3x3 kernel (2 CPU cores).

**RTBPN + L_sem** (``rtbpn+lsem``, Table 1; §4.2, App. B.3): ``query = "features"`` replaces the text encoder, the
fixed word vectors and their linear map, with the frozen L_sem-pre-trained speech encoder (the very stage and
encodings of ``base+lsem``, ``methods/lsem.py``) and a trainable FC layer over its feature
steps (:class:`methods.parts.encoders.FeatureEncoder`), then RTBPN's Bi-GRU; the rest is RTBPN's as above. Where
RTBPN reads words it reads the encoder's **feature steps** instead (the L_sem encoder has no CIF: one step per 80 ms
frame, not per word): the language filter's NetVLAD pools the Bi-GRU's steps over the speech, and the clip-to-word
attention attends over them. The code's 20-word cut (``max_words``) is a cut of words and does not apply: every step
of the utterance is kept. The paper gives no other detail of this row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bench import config as cfg
from bench import evaluate
from bench.context import MethodSpec, RunContext, RunResult, register
from bench.data import grounding
from methods.parts import losses, proposals, recipe, textquery
from methods.parts.avcl import AVCL, avcl_clips, select_clips
from methods.parts.encoders import BiGRU, query_encoders
from methods.parts.finetune import Finetune
from methods.parts.fusion import Interaction

DESCRIPTION = "RTBPN: language-aware filter, enhanced/suppressed streams through a shared 2D-TAN proposal module"
NORM_EPS = 1e-10  # the code's min-max normalisation: (x - min + eps) / (max - min + eps)
PAPER_TRAIN = cfg.TrainConfig(epochs=19, batch_size=64, lr=8e-4, warmup_updates=200, weight_decay=1e-7)


@dataclass(frozen=True)
class RTBPNConfig:
    d: int = 512  # hidden_size of the ActivityNet config
    n_clips: int = 64
    vlad_clusters: int = 8
    map_kernel: int = 5
    dropout: float = 0.1
    max_words: int = 20  # the code's max_num_words
    top_k: int = 32  # topK
    margin: float = 0.2  # L_intra's margin
    w_reg1: float = 0.1  # norm1
    w_intra: float = 0.1  # intra
    w_reg2: float = 0.01  # norm2
    avcl: bool = False  # Table 6's RTBPN + AVCL; T, location, score and lambda3 as methods.sil.SILConfig
    T: int = 12
    location: bool = True
    score: bool = True
    lambda3: float = 0.1
    select_on: str = "R1@0.5"
    eval_batch_size: int = 128
    train: cfg.TrainConfig = field(default_factory=lambda: PAPER_TRAIN)
    asr: Any = None  # methods.asr's configuration on the asr-rtbpn row; None on the gold text
    query: Literal["words", "features"] = "words"  # "words": word vectors of a text; "features": rtbpn+lsem
    asp: Any = None  # methods.sil's encoder configuration on the rtbpn+lsem row (base+lsem's); None on text
    finetune: bool = False  # rtbpn+lsem only: the encoder trained with the backbone (Table 1's fine-tune column)


def rtbpn_config(profile: str, **kw: Any) -> RTBPNConfig:
    """``paper``: the code's ActivityNet config; ``small``: d = 64, 3x3 kernel, the suite's small loop at RTBPN's
    lr 8e-4 and weight decay 1e-7; ``tiny``: CI smoke size."""
    cfg.check_profile(profile)
    if profile == "paper":
        return RTBPNConfig(**kw)
    train = dataclasses.replace(cfg.GROUNDING_TRAIN[profile], lr=PAPER_TRAIN.lr, weight_decay=PAPER_TRAIN.weight_decay)
    size = {"tiny": dict(d=32, map_kernel=3), "small": dict(d=64, map_kernel=3)}[profile]
    clips = {"n_clips": cfg.GROUNDING_CLIPS[profile], "T": avcl_clips(cfg.GROUNDING_CLIPS[profile])}
    return RTBPNConfig(**{"train": train, **clips, **size, **kw})


def minmax(x: Tensor, dim: int = -1) -> Tensor:
    """The code's min-max normalisation along ``dim``: ``(x - min + 1e-10) / (max - min + 1e-10)``."""
    low, high = x.min(dim=dim, keepdim=True).values, x.max(dim=dim, keepdim=True).values
    return (x - low + NORM_EPS) / (high - low + NORM_EPS)


class NetVLAD(nn.Module):
    """NetVLAD over the words (the code's ``NetVLAD``, after Miech's LOUPE): soft-assign each L2-normalised word to
    ``k`` clusters, sum the residuals to each centre, L2-normalise per cluster, flatten, L2-normalise. Padding
    words get no assignment. ``[B, L, d]`` -> ``[B, k * d]``. On ``rtbpn+lsem`` the steps are the speech encoder's
    feature steps, not words."""

    def __init__(self, k: int, d: int) -> None:
        super().__init__()
        self.assign = nn.Parameter(torch.randn(d, k) / d**0.5)
        self.centres = nn.Parameter(torch.randn(d, k) / d**0.5)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = F.normalize(x, dim=-1)
        a = torch.softmax(x @ self.assign, dim=-1) * mask[..., None].to(x.dtype)  # [B, L, k]
        vlad = x.transpose(1, 2) @ a - a.sum(1, keepdim=True) * self.centres  # [B, d, k]
        return F.normalize(F.normalize(vlad, dim=1).flatten(1), dim=-1)


class LanguageFilter(nn.Module):
    """w_t = minmax_t(sigmoid(W2 tanh(W1 (v_t * g)))), g = FC(NetVLAD(words)); inputs detached as in the code, so
    the filter learns only through the streams it gates, never by moving the encoders."""

    def __init__(self, d: int, clusters: int) -> None:
        super().__init__()
        self.vlad = NetVLAD(clusters, d)
        self.word_fc = nn.Linear(clusters * d, d)
        self.gate1, self.gate2 = nn.Linear(d, d), nn.Linear(d, 1)

    def forward(self, v: Tensor, s: Tensor, s_mask: Tensor) -> Tensor:
        g = self.word_fc(self.vlad(s.detach(), s_mask))
        w = torch.sigmoid(self.gate2(torch.tanh(self.gate1(v.detach() * g[:, None])))).squeeze(-1)
        return minmax(w)  # [B, N]


class RTBPNNet(nn.Module):
    """RTBPN on a text query, or on the frozen speech encoder's features (``rtbpn+lsem``); ``forward`` scores the
    enhanced branch's 153 candidates (logits)."""

    def __init__(self, c: RTBPNConfig, video_dim: int, word_vectors: Tensor | None = None,
                 query_dim: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.c = c
        self.video = nn.Linear(video_dim, c.d)
        self.words, self.speech = query_encoders(c.query, c.d, word_vectors, query_dim)
        self.query_gru = BiGRU(c.d, c.d)
        self.filter = LanguageFilter(c.d, c.vlad_clusters)
        # the shared two-branch proposal module: the code's TanhAttention, cross gate and Bi-GRU, then the map
        self.head = proposals.ProposalHead(Interaction(c.d, c.d), c.d, c.map_kernel, c.n_clips, fused_dropout=c.dropout)
        self.avcl = AVCL(c.d) if c.avcl else None
        spans = proposals.candidate_spans(torch.tensor([float(c.n_clips)]), c.n_clips)[0]  # in clips
        self.register_buffer("cand_iou", evaluate.temporal_iou(spans[:, None], spans[None]), persistent=False)

    def encode_query(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        if self.speech is not None:  # every feature step: max_words cuts words
            s, mask = self.speech(batch["sem"], batch["sem_len"])
        else:
            words, length = textquery.clip_words(batch, self.c.max_words)
            s, mask = self.words(words, length)
        return self.query_gru(s, mask), mask

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        v = self.video(batch["video"])
        s, mask = self.encode_query(batch)
        return self.head(v * self.filter(v, s, mask)[..., None], s, mask)


def centre_score(p: Tensor, cand_iou: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """The centre-based branch score: K ``[B]`` = mean of p over the ``top_k`` candidates of highest IoU with the
    best one (candidates first ordered by score, so equal IoUs go to the higher score), and those p ``[B, top_k]``."""
    by_score = p.argsort(dim=-1, descending=True, stable=True)
    iou = cand_iou[by_score[:, :1], by_score]  # [B, n_cand]: IoU with c*, in score order
    near = by_score.gather(1, iou.argsort(dim=-1, descending=True, stable=True)[:, :top_k])
    top = p.gather(1, near)
    return top.mean(-1), top


def inter_loss(k_pos: Tensor, k_neg: Tensor, keep: Tensor | None = None) -> Tensor:
    """``mean_b[-log K(V, Q) - log(1 - K(V', Q))]`` (the code's +1e-10 inside the logs); ``keep`` drops a pair."""
    pair = -torch.log(k_pos + losses.EPS) - torch.log(1 - k_neg + losses.EPS)
    return (pair if keep is None else pair * keep.to(pair.dtype)).mean()


def intra_loss(k_enhanced: Tensor, k_suppressed: Tensor, margin: float = 0.2) -> Tensor:
    """``mean_b max(0, margin - K_enhanced + K_suppressed)``."""
    return F.relu(margin - k_enhanced + k_suppressed).mean()


def proposal_reg(p_hat: Tensor, top: Tensor) -> Tensor:
    """reg1: the global term ``mean(p_hat)`` plus the gap term ``mean_b(-max_j log_softmax(top)_j)``."""
    return p_hat.mean() - F.log_softmax(top, dim=-1).max(dim=-1).values.mean()


def filter_reg(w: Tensor) -> Tensor:
    """reg2: ``mean(w) - mean(softmax(w) * log_softmax(w))``, both means over every entry (as in the code)."""
    return w.mean() - (F.softmax(w, dim=-1) * F.log_softmax(w, dim=-1)).mean()


def rtbpn_loss(model: RTBPNNet, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Enhanced, suppressed and inter-sample negative streams scored in one pass of the shared module."""
    c = model.c
    v = model.video(batch["video"])
    s, mask = model.encode_query(batch)
    w = model.filter(v, s, mask)
    other, distinct = losses.partner(batch["video_idx"])
    w_neg = model.filter(v[other], s, mask)  # V' re-filtered with its own weights
    streams = torch.cat([v * w[..., None], v * (1 - w[..., None]), v[other] * w_neg[..., None]])
    out = model.head(streams, torch.cat([s, s, s]), torch.cat([mask, mask, mask]), v.shape[0] if c.avcl else 0)
    logits, clip_logits = out if c.avcl else (out, None)
    p_pos, p_sup, p_neg = torch.sigmoid(logits).split(v.shape[0])
    k_pos, top = centre_score(p_pos, model.cand_iou, c.top_k)
    k_sup, _ = centre_score(p_sup, model.cand_iou, c.top_k)
    k_neg, _ = centre_score(p_neg, model.cand_iou, c.top_k)
    inter = inter_loss(k_pos, k_neg, distinct)
    intra = intra_loss(k_pos, k_sup, c.margin)
    reg1, reg2 = proposal_reg(minmax(p_pos), top), filter_reg(w)
    loss = inter + c.w_reg1 * reg1 + c.w_intra * intra + c.w_reg2 * reg2
    scalars = {"inter": inter.item(), "intra": intra.item(), "reg1": reg1.item(), "reg2": reg2.item()}
    if model.avcl is None or clip_logits is None:
        return loss, scalars
    pos, neg = select_clips(p_pos.detach(), torch.sigmoid(clip_logits.detach()), c.n_clips, c.T, c.location,
                            c.score)  # fmt: skip
    avcl = model.avcl(s, mask, v, pos, neg)
    return loss + c.lambda3 * avcl, {**scalars, "avcl": avcl.item()}


def run(ctx: RunContext, prepare: recipe.Prepare | None = None,
        finetune: Finetune | None = None) -> RunResult:  # fmt: skip
    """Train on train, select on val, test once (:func:`methods.parts.recipe.ground`); ``prepare`` gives the
    cascade's ASR transcripts (``asr-rtbpn``, ``methods/cascade.py``) or the frozen L_sem encoder's features
    (``rtbpn+lsem``, ``methods/lsem.py``), and ``finetune`` that encoder trained with the backbone instead."""
    c: RTBPNConfig = ctx.config
    if c.finetune and finetune is None:
        raise ValueError(f"finetune=true needs a pre-trained speech encoder: run rtbpn+lsem-ft, not {ctx.spec.name}")

    def build(data: grounding.GroundingData) -> RTBPNNet:
        query_dim = c.asp.d if c.query == "features" else None
        return RTBPNNet(c, data.train.videos.shape[-1], data.word_vectors, query_dim)

    return recipe.ground(ctx, c, build, rtbpn_loss, prepare=prepare, finetune=finetune)


register(MethodSpec("rtbpn-text", "RTBPN (gold text)", ("ground",), "gold-text", "weak",
                    f"{DESCRIPTION}; on the gold transcript", run=run, config=rtbpn_config, issue=6))  # fmt: skip
register(
    MethodSpec(
        "rtbpn-text+avcl",
        "RTBPN + AVCL (gold text)",
        ("ground",),
        "gold-text",
        "weak",
        "RTBPN with SIL's acoustic-visual contrastive loss (AVCL, §3.4) on the gold transcript",
        run=run,
        config=lambda profile: rtbpn_config(profile, avcl=True),
        issue=6,
    )
)
