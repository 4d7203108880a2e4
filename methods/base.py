"""Base: SIL's weakly-supervised grounding network without pre-training (paper App. A, B.3), and its variants.

One query's way through the network (:meth:`BaseNet.forward`):

1. video encoder (A.1): clip features ``[B, 64, 500]`` -> linear -> QANet block -> ``V [B, 64, d]``;
2. query encoder: speech = conv front-end over the 80-d log-mel + 2 Transformer layers (no I&F, App. B.3),
   or text = fixed word vectors + linear; then a Bi-GRU (§3.3.1: "we further encode it by a Bi-GRU") -> ``S``;
3. interaction (§3.2, A.2): clip-to-query attention (eq. 9), the cross gate of the original code (§3.2's "feature
   fusion", ``fusion.CrossGate``), ``[v'_i ; q'_i]``, Bi-GRU -> ``M [B, 64, d]``;
4. proposal map (A.3): 2D-TAN's sparse map (1104 valid cells, each the max over its clips), one 2D convolution
   read at the 153 scored candidates, a fully connected layer -> logits ``[B, 153]``; scores = sigmoid.

Training (A.4), weakly supervised: for each (V, S) of a batch, V' and S' come from another sample of the batch
(a random cyclic shift of the shuffled batch, so every sample gets a different partner); eq. 10's MIL loss over
f(K) = mean of the top-R (R = 20) scores, plus eq. 11's diversity loss. A drawn partner of the same video is not
a negative: such pairs are left out of eq. 10 (rare: about 1 in 250 pairs on the synthetic benchmark).

Inference: candidates ranked by score; the evaluator takes the top-1 and the top-5 after NMS at 0.45.

Registered variants: ``base`` (speech, weak), ``base-text`` (gold transcript, weak: the ceiling for speech and the
backbone of the cascaded rows), ``asr-base`` (the same on the words of the ASR output, registered with the other
cascades in ``methods/cascade.py``: Table 2's ASR-Base) and ``sbase`` (speech, fully supervised with 2D-TAN's scaled-IoU
BCE, App. C.1). SIL (``methods/sil.py``) reuses this network on its frozen encoder's features (``query="features"``),
with Table 5's Pool+Add fusion as an option and the scorer also read at the single-clip cells for AVCL. Steps 3 and 4
are :class:`methods.parts.proposals.ProposalHead`, which RTBPN shares. Ranking and scoring of the candidates are
:mod:`methods.parts.recipe`'s, as is the run (:func:`~methods.parts.recipe.ground`).

Where the paper is silent, the original code decides (``shared/research/sil-original.md`` §3): a 5x5 map
convolution with 2D-TAN's masked re-weighting, dropout 0.1, 4 conv layers + 1 attention layer in the video block.
Differences from that code: eq. 10 has both negative pairs as the paper writes it (the code uses only V'); the
diversity loss is eq. 11's entropy (the code's "global + gap" terms differ); the weight of eq. 11 is not given in
the paper and is a configuration value (``div_weight``, 1.0 = added as written); eq. 11 reads the sigmoid scores
k_i of A.3 as written (``div_on = "scores"``, every row), and ``--set div_on=logits`` takes the other reading.

Known behaviour (measured for issue 4; the issue's note has the numbers): the network starts on a long plateau, and
not only under eq. 10. Fully supervised (``sbase``) on the gold text it predicts the same spans for every query (the
scaled-IoU BCE's best constant) through 12 epochs of synth/small at lr 1e-3 (2 seeds), measured before the cross
gate was added (issue 21): eq. 9's q_i is a softmax-weighted mean of the query, and ``[v_i ; q_i]`` -> Bi-GRU alone
has no first-order product of clip and query, which the gate supplies; with 2D-TAN's Hadamard fusion in its place
(a diagnostic, not a paper row) the same network fits 128 supervised queries far sooner (train R@1 IoU=0.5 58 %
after 100 full-batch steps, against 16 % with the paper's fusion). Weakly supervised, eq. 10 can fall without
localizing, since a matched pair may score high on every proposal (measured: the loss fell while top-1 centres
stayed no more often inside the moment than random ones), and eq. 11 cannot push back (it is nearly constant, see
``losses.diversity_loss``).

Measured on synth/small v4 (32 clips, the small budget of about 820 updates, the cross gate; seeds 0, 1, 2;
val_2 = 2,078 queries, R@1 IoU=0.5): Base 12.03 ± 6.34 (n=3), below the fixed-span prior (30.37) and the whole video
(21.17), just above random candidates (11.38); test-ood 8.96 ± 2.37 (prior 12.17). On synth v3 the same code gave
15.27 ± 5.36, with one seed choosing an epoch that predicts nearly the whole video (length 0.98). eq. 11's term
read 2.9957 = log 20 to four decimals at every logged epoch: as written it adds no gradient worth the name.
This is a finding of the paper's method on this benchmark, not something tuned away.

The cross gate's effect (issue 21, synth/small v5, seeds 0-2, AMD EPYC, one thread; `bench compare base base
--set-a cross_gate=true --set-b cross_gate=false`): R@1 IoU=0.5 14.58 ± 5.93 with it, 12.86 ± 6.77 without; paired
over the 2,078 val_2 queries +1.72 [+0.79, +2.69], but the per-seed differences (+0.77, +13.43, -9.05) put it inside
the seeds' noise (Student-t [-26.27, +29.70]). mIoU +2.19 [+1.56, +2.84], likewise inside the seeds' noise.
Eq. 11's other reading (``--set div_on=logits``, the entropy of a softmax over the logits; issue 21 item 2, same
runs' machine and store): 16.75 ± 7.34 (8.28, 21.32, 20.64) against the rows' 14.58 ± 5.93; paired +2.17 [+1.25,
+3.10] over the queries, per seed -2.50, -0.10, +9.10 (Student-t [-13.04, +17.37]): inside the seeds' noise; mIoU
+3.18 [+2.61, +3.74], likewise. Every row keeps the reading as written.
Eq. 11 as written against no eq. 11 at all (``--set div_weight=0``; same machine and store, seeds 0-2): 14.58 ± 5.93
with it, 14.12 ± 2.23 without; paired +0.47 [-0.59, +1.51] over the queries, per seed -4.81, +9.87, -3.66 (Student-t
[-19.81, +20.74]): inside both noises, as a term of gradient at most 0.02 predicts. That a term this small moves a
seed by 5-10 points says how far apart two trajectories of this plateau-bound training drift from one start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor, nn

from bench import config as cfg
from bench import evaluate
from bench.context import MethodSpec, RunContext, RunResult, register
from bench.data import grounding
from methods.parts import losses, proposals, recipe
from methods.parts.encoders import BiGRU, SpeechEncoder, VideoEncoder, WordEncoder, lengths_to_mask
from methods.parts.fusion import Interaction, PoolAdd


@dataclass(frozen=True)
class BaseConfig:
    # speech: log-mel; gold-text / asr-text: word vectors of the transcript or of the ASR output (the cascaded
    # ASR-Base of Table 2); features: a frozen pre-trained encoder's output (SIL)
    query: Literal["speech", "gold-text", "asr-text", "features"] = "speech"
    supervision: Literal["weak", "full"] = "weak"
    fusion: Literal["attention", "pool-add"] = "attention"  # A.2's eq. 9 + concat, or Table 5's Pool+Add
    cross_gate: bool = True  # §3.2's feature fusion (the code's cross gate); False: the suite before issue 21
    d: int = 256  # App. B.2
    n_clips: int = 64  # App. B.2
    video_convs: int = 4
    speech_layers: int = 2  # App. B.3: "we reduce the layer number of Transformer encoder to 2"
    speech_channels: int = 64
    heads: int = 4
    d_att: int = 256  # the width of eq. 9's tanh (U1, U2); the paper does not give it
    map_kernel: int = 5
    dropout: float = 0.1
    top_r: int = 20  # App. A.4
    div_weight: float = 1.0
    # eq. 11's k_i: "scores" = the proposal scores of A.3 (after the sigmoid), as eq. 11 is written (its softmax over
    # values in (0, 1) is nearly uniform: the term's gradient is at most about 0.02, losses.diversity_loss); "logits"
    # = the scores before the sigmoid, the reading under which eq. 11 can sharpen the ranking (issue 21)
    div_on: Literal["scores", "logits"] = "scores"
    select_on: str = "R1@0.5"
    eval_batch_size: int = 128
    train: cfg.TrainConfig = field(default_factory=lambda: cfg.GROUNDING_TRAIN["paper"])
    asr: Any = None  # methods.asr's configuration, on the asr-text query only


def base_config(profile: str, **kw) -> BaseConfig:
    """``paper``: App. B.2 (d = 256, 5x5 map convolution); ``tiny``: CI smoke size.

    ``small`` is sized for 2 CPU cores (measured: about 0.9 s per update of 64 queries with its three pairs, against
    5.4 s at d = 128 and a 5x5 map kernel): d = 64, a 32-wide attention, 2 video conv layers, a 3x3 map kernel.
    """
    cfg.check_profile(profile)
    size = {
        "tiny": dict(d=32, d_att=16, video_convs=1, speech_channels=8, map_kernel=3),
        "small": dict(d=64, d_att=32, video_convs=2, speech_channels=16, map_kernel=3),
        "paper": {},
    }
    clips = {"n_clips": cfg.GROUNDING_CLIPS[profile]}
    return BaseConfig(**{"train": cfg.GROUNDING_TRAIN[profile], **clips, **size[profile], **kw})


class BaseNet(nn.Module):
    """The Base grounding network of App. A; ``forward`` scores every (video, query) pair of the batch."""

    def __init__(self, c: BaseConfig, video_dim: int, word_vectors: Tensor | None = None,
                 query_dim: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.c = c
        self.video_dropout = nn.Dropout(c.dropout)  # on the clip features, as the original code (0.1)
        self.video = VideoEncoder(video_dim, c.d, c.n_clips, c.video_convs, heads=c.heads, dropout=c.dropout)
        self.speech = self.words = None
        if c.query == "speech":
            self.speech = SpeechEncoder(c.d, channels=c.speech_channels, layers=c.speech_layers, heads=c.heads,
                                        dropout=c.dropout)  # fmt: skip
        elif c.query in ("gold-text", "asr-text"):
            assert word_vectors is not None, "a text query needs word vectors"
            self.words = WordEncoder(word_vectors, c.d)
        else:  # "features": batch["sem"] [B, L, query_dim], a frozen pre-trained encoder's output
            assert query_dim is not None, "a features query needs its width"
        self.query_gru = BiGRU(query_dim if c.query == "features" else c.d, c.d)
        fusion = Interaction(c.d, c.d_att, c.cross_gate) if c.fusion == "attention" else PoolAdd(c.d)
        self.head = proposals.ProposalHead(fusion, c.d, c.map_kernel, c.n_clips, map_dropout=c.dropout)

    def encode_video(self, batch: dict[str, Tensor]) -> Tensor:
        return self.video(self.video_dropout(batch["video"]))

    def encode_query(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        if self.speech is not None:
            s, mask = self.speech(batch["mel"], batch["mel_len"])
        elif self.words is not None:
            s, mask = self.words(batch["words"], batch["words_len"])
        else:
            s, mask = batch["sem"], lengths_to_mask(batch["sem_len"], batch["sem"].shape[1])
        return self.query_gru(s, mask), mask

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        s, mask = self.encode_query(batch)
        return self.head(self.encode_video(batch), s, mask)


@dataclass
class WeakPass:
    """One weakly-supervised pass: the loss and what SIL's AVCL reads from the same forward."""

    loss: Tensor
    scalars: dict[str, float]
    v: Tensor  # video encoder output [B, N, d]
    s: Tensor  # query after the Bi-GRU [B, L, d]
    s_mask: Tensor
    k: Tensor  # the positive pairs' proposal scores [B, n_cand]
    clip_logits: Tensor | None  # their clip-level logits [B, N] (only when asked for)


def weak_pass(model: BaseNet, batch: dict[str, Tensor], clips: bool = False) -> WeakPass:
    """Eq. 10 + div_weight * eq. 11, with the two negative pairs scored in the same pass as the positive one."""
    v = model.encode_video(batch)
    s, mask = model.encode_query(batch)
    b = v.shape[0]
    other, distinct = losses.partner(batch["video_idx"])
    out = model.head(torch.cat([v, v[other], v]), torch.cat([s, s, s[other]]), torch.cat([mask, mask, mask[other]]),
                      clip_rows=b if clips else 0)  # fmt: skip
    logits, clip_logits = out if clips else (out, None)
    k, k_other_video, k_other_query = torch.sigmoid(logits).split(b)
    mil = losses.mil_loss(k, k_other_video, k_other_query, model.c.top_r, distinct, distinct)
    div = losses.diversity_loss(k if model.c.div_on == "scores" else logits[:b], model.c.top_r)
    loss = mil + model.c.div_weight * div
    return WeakPass(loss, {"mil": mil.item(), "div": div.item()}, v, s, mask, k, clip_logits)


def weak_loss(model: BaseNet, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    p = weak_pass(model, batch)
    return p.loss, p.scalars


def full_loss(model: BaseNet, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """SBase (App. C.1): scaled-IoU BCE of every candidate against the annotated span."""
    logits = model(batch)
    spans = proposals.candidate_spans(batch["duration"], model.c.n_clips)
    iou = evaluate.temporal_iou(spans, batch["span"][:, None])
    bce = losses.scaled_iou_bce(logits, iou)
    return bce, {"bce": bce.item()}


def run(ctx: RunContext, prepare: recipe.Prepare | None = None) -> RunResult:
    """Train on train, select on val, test once (:func:`methods.parts.recipe.ground`); ``prepare`` gives the
    cascade's ASR transcripts for ``asr-base`` (``methods/cascade.py``)."""
    c: BaseConfig = ctx.config

    def build(data: grounding.GroundingData) -> BaseNet:
        return BaseNet(c, data.train.videos.shape[-1], data.word_vectors)

    return recipe.ground(ctx, c, build, weak_loss if c.supervision == "weak" else full_loss, prepare=prepare)


def _spec(name: str, title: str, query: str, supervision: str, desc: str) -> MethodSpec:
    return MethodSpec(name, title, ("ground",), query, supervision, desc, run=run,
                      config=partial(base_config, query=query, supervision=supervision), issue=4)  # fmt: skip


register(_spec("base", "Base", "speech", "weak", "App. A, no pre-training"))
register(
    _spec(
        "base-text",
        "Base (gold text)",
        "gold-text",
        "weak",
        "Base with word vectors + Bi-GRU over the gold transcript: the ceiling for speech",
    )
)
register(
    _spec("sbase", "SBase", "speech", "full", "the Base network trained with scaled-IoU BCE (C.1)")
)
