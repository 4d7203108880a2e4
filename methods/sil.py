"""SIL: acoustic-semantic pre-training (ASP, §3.3) and acoustic-visual contrastive learning (AVCL, §3.4), and ablations.

Builds on: ``methods.base`` (the paper builds SIL on Base: its grounding network, eq. 10 and eq. 11, App. A). AVCL's
selection and estimator are :mod:`methods.parts.avcl` (RTBPN + AVCL uses them too).

Two stages, as the paper trains them (§3.5):

1. **ASP pre-training** of the speech encoder on the external speech-text corpus (LibriSpeech; here the synthetic
   corpus in its layout), a cached stage (:mod:`bench.stages`) shared by every run and row with the same encoder:

   - time domain: the 4 kHz wave -> 1D conv front-end; frequency domain: the 80-d log-mel -> 2D conv front-end;
     each -> its own N_a Transformer layers -> ``S_a`` (both at an 80 ms step);
   - conciseness (§3.3.2, App. D.2): CIF (:mod:`methods.parts.cif`) integrates ``S_a`` into segments ``S_c``,
     scaled to the word count in pre-training; then N_s Transformer layers, **shared** by the two domains -> ``S_s``;
   - losses (eq. 7): ``L_ASP = l1 L_rob + l2 L_conc + L_sem``, ``L_sem = L_ctc + L_seq + L_word``, each task on both
     domains (summed, as the original code does):
     ``L_rob`` (eq. 1) L1 between ``S_s^t`` and ``S_s^f``; ``L_conc`` (eq. 2) the length term ``|sum(alpha) - n_w|``
     plus the cross-entropy of a 4-layer non-autoregressive decoder reading the segments, one word per segment;
     ``L_ctc`` (eq. 3) word-level CTC over ``S_a`` with a two-layer MLP head; ``L_seq`` (eq. 4) InfoNCE between the
     mean-pooled ``S_s`` and the mean word vectors of the transcript against B other transcripts of the corpus;
     ``L_word`` (eq. 5) a 4-layer bidirectional Transformer decoder, masked word vectors as queries and ``S_s`` as
     memory, predicting the masked words, content words masked first (the paper's "masked key word").
   Eqs. 2, 3 and 5 sum over an utterance's words and the batch loss is their mean over utterances; eqs. 1 and 4 and
   the length term are per utterance (eq. 1 a mean over the feature entries).

2. **Grounding** (eq. 8): the encoder is frozen, so each query's ``S~ = [S_s^t, S_s^f]`` is computed once and cached;
   a Bi-GRU reads it (``S-bar``) and the Base network (``methods/base.py``, App. A) scores the proposals; the loss is
   ``L_base + l3 L_AVCL``. AVCL: the top proposal ``p`` of each positive pair gives T positive and T negative clips,
   negatives outside ``p`` (location-based selection) and, where those are fewer than T, the lowest-scored clips
   inside ``p`` (score-based mining: the scorer read at single-clip cells); positives are the T highest-scored clips
   inside ``p``. Eq. 6 is the Jensen-Shannon estimator with a bilinear discriminator
   ``phi(S, v) = <W_q mean(S-bar), W_v v>``: ``E_neg[softplus(-phi) + phi - log 2] - E_pos[log 2 - softplus(-phi)]``.

Departures from the paper, and choices where it is silent (``shared/research/sil-original.md`` for the code):

- eq. 4 is written with plain dot products; here both pooled vectors are projected to d, L2-normalised and divided
  by a temperature 0.1 (the original code's form): unnormalised dot products over 300-d vectors overflow ``exp``.
  B = 512 negatives are sampled from the corpus' other transcripts, or all of them when the corpus has fewer.
- eq. 5 indexes ``p(w_{i+1} | e_i)``; with a *bidirectional* decoder the next word is visible in its own input slot
  unless masked, so the masked words are predicted at their own positions (BERT's reading, which the paper cites).
- ``L_conc``'s length term is on every epoch (the code switches it on after epoch 10); CTC stays on throughout, as
  in the code (the paper calls it a warm-up without saying when it ends).
- The shared N_s layers get sinusoidal positions (the code adds none after CIF); the segments of the two domains are
  concatenated **along time** for grounding: at inference (no scaling) the two domains may fire different numbers of
  segments, and the code's feature-wise concatenation pairs them by index, mis-pairing them when they differ.
- CIF tail handling applies at each sequence's own end (see :mod:`methods.parts.cif`); threshold 1.0, as the paper.
- Padding never enters an utterance's encoding: CIF's weight predictor convolves zeroed padding, the wave front-end's
  GroupNorm takes its statistics over the wave's own steps (:func:`masked_group_norm`), so an utterance gets the same
  frozen features in any batch (float tolerance; tested). The original code reads the padding in both places.
- AVCL's positives and negatives are the video encoder's clip features (the code's choice; the paper writes V-bar);
  location-based negatives are drawn at random outside ``p`` ("coarsely"). The code's active loss is an InfoNCE
  with location-based selection unused; this follows the paper (both strategies, JS estimator), as the issue asks.
- Word sums (``asp.token_reduction``): eqs. 2, 3 and 5 are sums over words, so CTC, ``L_conc``'s cross-entropy and
  ``L_word`` weigh about n_w times (5-16 words on synth, about 30 on LibriSpeech) what they weigh as token means,
  against ``L_seq``, ``L_rob`` and the length term. The default follows the paper (``sum``); ``mean`` is the original
  code's token mean (``F.ctc_loss(reduction="mean")``, ``cal_nll_loss``). The held-out word terms are also logged as
  means over words (``*_per_word``) under either setting, so the two can be compared on one scale. Measured on
  synth/small (pre-training seed 0, 8 epochs, the ASP stage's held-out record in ``stage.json`` of ``bench run
  --method sil --profile small`` with and without ``--set asp.token_reduction=mean``; both domains' terms added):
  ``sum`` gives CTC 7.17, ``L_conc``'s CE 4.42, ``L_word`` 4.41 per word, ``L_seq`` 7.81, ``L_rob`` 0.205; ``mean``
  gives 8.98, 6.12, 4.99, 8.75 and 0.158. One seed; the effect on grounding is left to the 3-seed runs.
- ``L_word``'s masked words (``asp.word_masking``): the paper masks x % "as (Devlin et al.)" to reconstruct "the
  masked key word"; here the content words of an utterance are masked first, in random order, then function words
  when x % asks for more (``content-first``, the default). ``weighted`` is the original code's draw (probability
  proportional to exp(2) for nouns, verbs, adjectives and adverbs, exp(1) for the rest), ``uniform`` ignores word
  class. With no tagger, content words are those outside SCN's closed list of function words (:func:`content_rows`),
  one rule for the synthetic world and real transcripts. On the synth/small corpus 59 % of an utterance's words are
  content words (mean), so at x = 50 % 82 % of the utterances mask a random subset of their content words only, and
  18 % mask all of them plus some function words.
- The non-autoregressive decoder of ``L_conc`` has **no cross-attention**: App. B.2 calls it "an ordinary 4-layer
  Transformer decoder" but names no memory for it; it is a 4-layer self-attention stack over the segments, as the
  original code's ``trans_d_aux``. Cross-attention to ``S_a`` would let the word predictions bypass the segments,
  which eq. 2 is there to make carry one word each.
- Pre-training targets are never cut: the original code cuts transcripts at 50 words and keeps the whole audio (and
  CIF is then scaled to the cut count). ``asp.max_words`` (default none) leaves longer utterances out instead; an
  utterance none of whose words has a vector is left out too (the code trains it on the CTC blank as its target).
  Both counts are logged (``dropped_over_max_words``, ``dropped_no_vocab_word``; none on synth).
- The pre-training epoch is selected on a held-out 5 % of the corpus (lowest ``L_ASP``); the paper trains 40 epochs.
- One encoder serves every grounding seed (``asp.seed``, the code's practice), so a row's seed spread is the
  grounding's alone; ``--set asp.seeding=per-run`` pre-trains one encoder per grounding seed (seed ``asp.seed + s``)
  and the spread then holds both. Each run logs which as ``spread`` (:data:`SPREAD`) for the table caption.
  Measured once (issue 21, synth/small, Base + L_sem, seeds 0-2, val_2 R@1 IoU=0.5): shared 15.06 ± 7.39
  (19.06, 19.59, 6.54), per-run 14.85 ± 3.66 (19.06, 12.37, 13.14; seed 0 is the same run): the spread did not grow,
  the grounding seeds' own spread (one seed collapsing) is the larger part at n = 3; the paired difference shared −
  per-run +0.21 [-0.69, +1.07] (`bench compare base+lsem base+lsem --set-a asp.seeding=shared --set-b
  asp.seeding=per-run`), inside noise.
- The speech encoder is frozen in grounding, as §4.4 has it for Table 1's main numbers. The fine-tune column is
  ``--set finetune=true`` (registered as ``sil-ft`` and ``base+lut-ft``): the encoder goes in front of the grounding
  network and trains with it on the grounding loss, AVCL included (:mod:`methods.parts.finetune`), one optimiser at
  the grounding learning rate (the paper gives no fine-tuning settings).

Ablations (one registered configuration each): the rows of Table 3 (every row without ``L_rob`` takes the log-mel
only, as Figure 4's ablations "without training of robustness task", so neighbouring rows differ by one component;
only row 5 -> 6 adds two, ``L_rob`` and the time-domain input it aligns, and ``sil-both-no-rob`` lies between
them), Table 4 (10 / 50 % of the corpus), Table 5
(Pool+Add fusion with and without L_conc), Table 11 (without location / score), Figure 4 (one domain), Figure 5(a)
(``L_dis-s + L_dis-w``: MSE distillation of the pooled and the per-word vectors, LUT's attention read-out; ``L_seq``;
``L_seq + L_word``), Table 10 (SBase + ASP). Without the conciseness task there is no CIF: the N_s layers run over
``S_a``'s frames. Figure 9's sweeps are ``--set asp.mask_ratio=...`` and ``--set T=...``.

Table 3's chain, measured once on synth/small (issue 21; seeds 0-2, val_2 R@1 IoU=0.5, mean ± std over seeds; each
step's paired difference over the 2,078 queries with seeds kept paired, ``bench compare``; every step's Student-t
interval over the three seed pairs contains 0, so no step is told apart from the seeds' noise): row 2 ``base+lsem``
15.06 ± 7.38; row 3 ``base+lconc+lsem`` 13.63 ± 2.04 (-1.43 [-2.61, -0.22] from row 2); row 4 ``base+lsem+avcl``
13.46 ± 7.90 (-1.60 [-2.65, -0.53] from row 2); row 5 ``sil-no-rob`` 20.64 ± 6.96 (+7.01 [+5.73, +8.29] from row 3,
+7.19 [+6.00, +8.36] from row 4); ``sil-both-no-rob`` 15.93 ± 7.88 (-4.72 [-5.73, -3.72] from row 5: row 5 as it was
before each row took one input); row 6 ``sil`` 13.14 ± 11.43 (-2.79 [-3.83, -1.75] from both inputs without L_rob).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bench import config as cfg
from bench import stages
from bench.context import MethodSpec, RunContext, RunResult, finetuned, register
from bench.data import corpus, grounding, loader, ondisk
from bench.train import Task, fit
from methods import base
from methods.parts import cif as ciflib
from methods.parts import finetune, frozen, recipe
from methods.parts.avcl import AVCL, avcl_clips, select_clips
from methods.parts.encoders import Conv2dSubsampling, lengths_to_mask, masked_mean, sinusoid
from methods.parts.words import FUNCTION_WORDS

ASP_VERSION = 2  # part of the stage key: raised whenever the encoder or its pre-training computes something else


# -- configuration ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ASPConfig:
    """The speech encoder and its pre-training (App. B.2 for ``paper``)."""

    d: int = 256
    n_a: int = 4
    n_s: int = 4
    heads: int = 4
    mel_channels: int = 64
    wave_channels: int = 512
    domains: Literal["both", "freq", "time"] = "both"  # the robustness task needs both
    conc: bool = True  # the conciseness task: CIF + eq. 2 (off: no CIF, S_s over the frames)
    rob: bool = True  # eq. 1
    ctc: bool = True  # eq. 3
    # LUT's confidence penalty on the CTC head (Pereyra et al. 2017; Base + LUT uses 0.3): minus this times the mean
    # entropy of the head's per-frame distribution; 0 for SIL and its ablations (the paper has no such term)
    ctc_penalty: float = 0.0
    seq: bool = True  # eq. 4
    word: bool = True  # eq. 5
    dis: bool = False  # Figure 5(a): L_dis-s + L_dis-w (MSE distillation)
    lambda1: float = 1.0
    lambda2: float = 1.0
    nar_layers: int = 4
    word_layers: int = 4
    mask_ratio: float = 0.5
    # L_word's masked words: content words first (the paper's "key word"), the original code's part-of-speech
    # weighted draw, or uniform over the words
    word_masking: Literal["content-first", "weighted", "uniform"] = "content-first"
    # eqs. 2, 3, 5 sum over an utterance's words ("sum", the paper); "mean": a mean over the tokens (the original code)
    token_reduction: Literal["sum", "mean"] = "sum"
    negatives: int = 512
    temperature: float = 0.1
    corpus_subset: Literal["10%", "50%", "100%"] = "100%"
    max_words: int | None = None  # utterances with more words are left out of pre-training (never cut); None: keep all
    dropout: float = 0.1
    heldout: float = 0.05
    seed: int = 0  # the pre-training seed
    # "shared": one encoder (of ``seed``) for every grounding seed; "per-run": each grounding seed s pre-trains its own
    # encoder with seed ``seed + s`` (so the seed spread also holds the pre-training's variance)
    seeding: Literal["shared", "per-run"] = "shared"
    train: cfg.TrainConfig = field(default_factory=lambda: cfg.PRETRAIN_TRAIN["paper"])


@dataclass(frozen=True)
class SILConfig:
    asp: ASPConfig
    ground: base.BaseConfig
    avcl: bool = True
    T: int = 12  # positive / negative clips (App. B.2: SIL_T of 64 clips; sil_config scales it to the profile's clips)
    location: bool = True  # location-based selection (Table 11)
    score: bool = True  # score-based mining (Table 11)
    lambda3: float = 0.1  # eq. 8
    finetune: bool = False  # Table 1's "finetune" column: the encoder trained with the grounding network (§4.4)


ASP_SIZES = {
    "tiny": dict(d=32, n_a=1, n_s=1, heads=2, mel_channels=8, wave_channels=16, nar_layers=1, word_layers=1),
    "small": dict(d=64, n_a=2, n_s=2, heads=4, mel_channels=16, wave_channels=32, nar_layers=1, word_layers=1),
    "paper": {},
}


def sil_config(profile: str, asp: dict | None = None, **kw) -> SILConfig:
    """``paper``: App. B.2; ``small``: sized for 2 CPU cores (the grounding network is Base's ``small``)."""
    cfg.check_profile(profile)
    a = ASPConfig(**{"train": cfg.PRETRAIN_TRAIN[profile], **ASP_SIZES[profile], **(asp or {})})
    ground_kw = {k: kw.pop(k) for k in ("supervision", "fusion") if k in kw}
    ground = base.base_config(profile, query="features", **ground_kw)
    kw.setdefault("T", avcl_clips(ground.n_clips))
    return SILConfig(asp=a, ground=ground, **kw)


# -- the speech encoder (§3.3) -----------------------------------------------------------------------------------


class WaveFrontEnd(nn.Module):
    """Time domain: 1D convolutions over the 4 kHz wave, wav2vec 2.0's feature encoder in its "group" form (a
    GroupNorm after the first convolution, GELU after each), stride 320 (80 ms, the log-mel front-end's step), then
    a linear map to d. (The original code puts a LayerNorm after every convolution; on a CPU those norms over the
    long early feature maps cost more than the convolutions.)

    The GroupNorm (one group per channel: a per-channel norm over time) takes its statistics over each wave's own
    steps only, never over the batch's padding, and the convolutions have no padding, so an output step inside a
    wave's :meth:`out_lengths` reads that wave alone: its features do not change with the batch it is encoded in."""

    LAYERS = ((10, 5), (8, 4), (4, 4), (4, 2), (4, 2))  # (kernel, stride)

    def __init__(self, channels: int, d: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, (k, s) in enumerate(self.LAYERS):
            layers.append(nn.Conv1d(c_in, channels, k, stride=s, bias=False))
            if i == 0:
                layers.append(nn.GroupNorm(channels, channels))
            layers.append(nn.GELU())
            c_in = channels
        self.convs = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(channels)
        self.project = nn.Linear(channels, d)

    @classmethod
    def out_lengths(cls, lengths: Tensor) -> Tensor:
        for k, s in cls.LAYERS:
            lengths = (lengths - k) // s + 1
        return lengths

    def forward(self, wave: Tensor, lengths: Tensor) -> Tensor:
        x = wave[:, None]
        for layer in self.convs:
            if isinstance(layer, nn.GroupNorm):  # right after the first convolution
                k, s = self.LAYERS[0]
                x = masked_group_norm(x, lengths_to_mask((lengths - k) // s + 1, x.shape[-1]), layer)
            else:
                x = layer(x)
        return self.project(self.norm(x.transpose(1, 2)))


def masked_group_norm(x: Tensor, steps: Tensor, norm: nn.GroupNorm) -> Tensor:
    """``norm`` (one group per channel) on ``x`` [B, C, T] with the mean and variance over the real ``steps``
    [B, T] only; padded steps come out zero. Equals ``norm(x)`` on a batch without padding."""
    m = steps[:, None].to(x.dtype)
    count = m.sum(-1, keepdim=True).clamp_min(1.0)
    mean = (x * m).sum(-1, keepdim=True) / count
    var = ((x - mean) ** 2 * m).sum(-1, keepdim=True) / count
    y = (x - mean) / torch.sqrt(var + norm.eps)
    return (y * norm.weight[None, :, None] + norm.bias[None, :, None]) * m


def transformer(d: int, heads: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False, norm=nn.LayerNorm(d))


@dataclass
class Encoded:
    """One domain's pass: acoustic ``S_a`` (frames), CIF weights, semantic ``S_s`` (segments, or frames)."""

    s_a: Tensor
    a_mask: Tensor
    alpha: Tensor | None
    s_c: Tensor  # CIF segments (or the frames, without the conciseness task)
    s_s: Tensor
    s_mask: Tensor


class ASPEncoder(nn.Module):
    """Front-end -> N_a layers (per domain) -> CIF (per domain weights) -> N_s shared layers."""

    def __init__(self, c: ASPConfig) -> None:
        super().__init__()
        self.c = c
        self.domains = ("time", "freq") if c.domains == "both" else (c.domains,)
        self.front = nn.ModuleDict()
        self.acoustic = nn.ModuleDict()
        self.weights = nn.ModuleDict()
        for dom in self.domains:
            self.front[dom] = WaveFrontEnd(c.wave_channels, c.d) if dom == "time" else Conv2dSubsampling(
                80, c.mel_channels, c.d)  # fmt: skip
            self.acoustic[dom] = transformer(c.d, c.heads, c.n_a, c.dropout)
            if c.conc:
                self.weights[dom] = ciflib.WeightPredictor(c.d, dropout=c.dropout)
        self.semantic = transformer(c.d, c.heads, c.n_s, c.dropout)

    @property
    def out_dim(self) -> int:
        return self.c.d

    def encode(self, dom: str, batch: dict[str, Tensor], target: Tensor | None = None) -> Encoded:
        if dom == "time":
            x = self.front[dom](batch["wave"], batch["wave_len"])
            lengths = WaveFrontEnd.out_lengths(batch["wave_len"])
        else:
            x = self.front[dom](batch["mel"])
            lengths = Conv2dSubsampling.out_lengths(batch["mel_len"])
        lengths = lengths.clamp(1, x.shape[1])
        a_mask = lengths_to_mask(lengths, x.shape[1])
        s_a = self.acoustic[dom](x + sinusoid(x.shape[1], x.shape[2], x.device), src_key_padding_mask=~a_mask)
        alpha = None
        if self.c.conc:
            alpha = self.weights[dom](s_a, a_mask)
            scaled = ciflib.scale_weights(alpha, target) if target is not None else alpha
            seg, seg_mask = ciflib.cif(s_a, scaled, a_mask)
            seg, seg_mask = ciflib.ensure_one(seg, seg_mask, s_a, a_mask)
        else:
            seg, seg_mask = s_a, a_mask
        s_s = self.semantic(seg + sinusoid(seg.shape[1], seg.shape[2], seg.device), src_key_padding_mask=~seg_mask)
        return Encoded(s_a, a_mask, alpha, seg, s_s, seg_mask)

    @torch.no_grad()
    def features(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Grounding input ``S~`` [B, L, d] of the frozen encoder, and its lengths."""
        return self.grounding_features(batch)

    def grounding_features(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``S~``: each domain's ``S_s``, concatenated along time, and its lengths (differentiable: fine-tuning)."""
        parts = [self.encode(dom, batch) for dom in self.domains]
        rows = []
        for b in range(batch["mel"].shape[0]):
            rows.append(torch.cat([p.s_s[b, p.s_mask[b]] for p in parts]))
        feats, lengths = loader.pad_stack(rows)
        return feats, lengths


# -- pre-training heads and losses --------------------------------------------------------------------------------


class ASPModel(nn.Module):
    """The encoder and the pre-training heads: CTC MLP, NAR decoder, masked-word decoder, contrastive projections."""

    def __init__(self, c: ASPConfig, word_vectors: Tensor, seq_table: Tensor, content: Tensor | None = None) -> None:
        super().__init__()
        self.c = c
        self.encoder = ASPEncoder(c)
        vocab = word_vectors.shape[0]  # row 0: padding for the decoders, blank for CTC
        dw = word_vectors.shape[1]
        self.register_buffer("word_vectors", word_vectors, persistent=False)
        # [V + 1] bool: which vocabulary rows are content words (L_word masks them first; see :func:`content_rows`)
        content = torch.ones(vocab, dtype=torch.bool) if content is None else content
        self.register_buffer("content", content, persistent=False)
        self.register_buffer("seq_table", seq_table, persistent=False)  # [N_train, dw] mean word vector per utterance
        self.ctc_head = nn.Sequential(nn.Linear(c.d, c.d), nn.ReLU(), nn.Linear(c.d, c.d), nn.ReLU(),
                                      nn.Linear(c.d, vocab))  # fmt: skip
        if c.conc:
            self.nar = transformer(c.d, c.heads, c.nar_layers, c.dropout)
            self.nar_out = nn.Linear(c.d, vocab)
        if c.seq or c.dis:
            self.seq_speech = nn.Linear(c.d, c.d if c.seq else dw)
            self.seq_text = nn.Linear(dw, c.d)
        if c.word:
            self.mask_vector = nn.Parameter(torch.zeros(dw))
            self.word_in = nn.Linear(dw, c.d)
            layer = nn.TransformerDecoderLayer(c.d, c.heads, 4 * c.d, c.dropout, batch_first=True, norm_first=True)
            self.word_decoder = nn.TransformerDecoder(layer, c.word_layers, norm=nn.LayerNorm(c.d))
            self.word_out = nn.Linear(c.d, vocab)
        if c.dis:
            self.dis_query = nn.Linear(dw, c.d)
            self.dis_attention = nn.MultiheadAttention(c.d, c.heads, batch_first=True)
            self.dis_out = nn.Linear(c.d, dw)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        return asp_loss(self, batch)


def ctc_losses(logits: Tensor, lengths: Tensor, words: Tensor, words_len: Tensor) -> Tensor:
    """Eq. 3 over word targets (rows 1..V; 0 is the blank): ``-log P(W | S_a)`` of each utterance ``[B]``."""
    logp = logits.log_softmax(-1).transpose(0, 1)
    return F.ctc_loss(logp, words, lengths, words_len, blank=0, zero_infinity=True, reduction="none")


def ctc_loss(logits: Tensor, lengths: Tensor, words: Tensor, words_len: Tensor, reduction: str = "sum") -> Tensor:
    """Eq. 3 as a batch loss: the utterances' ``-log P(W | S_a)`` averaged over the batch (``"sum"``: the paper's
    sum over the words of an utterance), or each divided by its word count first (``"mean"``: the original code's
    ``F.ctc_loss(reduction="mean")``)."""
    return reduce_utterances(ctc_losses(logits, lengths, words, words_len), words_len, reduction)


def frame_entropy(logits: Tensor, mask: Tensor) -> Tensor:
    """The mean entropy (nats) of the per-frame output distributions of each utterance ``[B]``, over its valid
    frames (``mask`` ``[B, T]``): the quantity a confidence penalty rewards."""
    logp = logits.log_softmax(-1)
    h = -(logp.exp() * logp).sum(-1)  # [B, T]
    m = mask.to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


def reduce_utterances(per_utt: Tensor, words_len: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        per_utt = per_utt / words_len.clamp_min(1).to(per_utt.dtype)
    return per_utt.mean()


def token_loss(per_token: Tensor, n_rows: int, reduction: str = "sum") -> Tensor:
    """A loss over words of ``n_rows`` utterances from its per-word values: summed over each utterance's words and
    averaged over the utterances (``"sum"``: eqs. 2 and 5 add the words up), or the mean over the words (``"mean"``,
    the original code's ``cal_nll_loss`` / ``cross_entropy``)."""
    if reduction == "mean":
        return per_token.mean() if per_token.numel() else per_token.sum()
    return per_token.sum() / max(n_rows, 1)


def info_nce(speech: Tensor, text: Tensor, negatives: Tensor, negative_ok: Tensor, temperature: float) -> Tensor:
    """Eq. 4 (cosine / temperature): ``-log e^{s.w+} / (e^{s.w+} + sum_j e^{s.w-_j})``, batch mean.

    ``speech``, ``text`` [B, d]; ``negatives`` [K, d]; ``negative_ok`` [B, K] drops a row's own transcript.
    """
    s, w, n = F.normalize(speech, dim=-1), F.normalize(text, dim=-1), F.normalize(negatives, dim=-1)
    pos = (s * w).sum(-1, keepdim=True) / temperature
    neg = (s @ n.T / temperature).masked_fill(~negative_ok, float("-inf"))
    return -(pos - torch.logsumexp(torch.cat([pos, neg], 1), 1, keepdim=True)).mean()


# the original code's part-of-speech weights: 2 for nouns, verbs, adjectives, adverbs, 1 for the rest, as a softmax
POS_LOGITS = (2.0, 1.0)


def content_rows(vocab: list[str]) -> Tensor:
    """``[V + 1]`` bool: vocabulary row i + 1 is a content word (row 0, padding, is not).

    No tagger: a content word is one outside :data:`methods.parts.words.FUNCTION_WORDS`, the closed-class words
    (determiners, pronouns, prepositions, conjunctions, modals) that the original code's part-of-speech rule
    weights 1, so nouns, verbs, adjectives and adverbs are content words. One list for the synthetic world and
    real transcripts; on the world it makes every verb form and object a content word and every determiner and
    pronoun a function word (tested against :mod:`bench.data.world`)."""
    return torch.tensor([False] + [w not in FUNCTION_WORDS for w in vocab])


def mask_words(words_len: Tensor, width: int, ratio: float, content: Tensor | None = None,
               rule: str = "uniform") -> Tensor:  # fmt: skip
    """``round(ratio * n_w)`` of each row's words (at least one), ``[B, width]`` bool, never padding.

    ``content`` ``[B, width]`` bool marks the content words. ``rule``: ``"content-first"`` masks content words
    first, in random order, then function words if the ratio asks for more (the paper's "masked key word");
    ``"weighted"`` draws without replacement with probability proportional to ``exp(2)`` for content words and
    ``exp(1)`` for the others (the original code's part-of-speech softmax; Gumbel top-k); ``"uniform"`` ignores
    ``content``. Every rule draws the same uniforms, so the choice of rule does not move the random stream."""
    real = lengths_to_mask(words_len, width)
    n_mask = (words_len.to(torch.float32) * ratio).round().long().clamp(min=1)
    u = torch.rand(real.shape, device=words_len.device)
    if content is None or rule == "uniform":
        keys = u
    elif rule == "content-first":
        keys = u + (~content).to(u.dtype)  # content words in [0, 1), function words in [1, 2)
    elif rule == "weighted":
        logit = torch.where(content, POS_LOGITS[0], POS_LOGITS[1])
        keys = -(logit - torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7))))  # ascending keys = descending scores
    else:
        raise ValueError(f"word masking rule {rule!r}: choose content-first, weighted or uniform")
    rank = keys.masked_fill(~real, float("inf")).argsort(dim=1, stable=True).argsort(dim=1)
    return (rank < n_mask[:, None]) & real


def asp_loss(model: ASPModel, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Eq. 7 on one batch of the corpus; every term also logged alone."""
    c = model.c
    words, n_w = batch["words"], batch["words_len"]
    w_mask = lengths_to_mask(n_w, words.shape[1])
    w_vec = model.word_vectors[words]  # [B, L, dw]
    terms: dict[str, Tensor] = {}
    per_word: dict[str, float] = {}  # the word-level terms as means over words too, whatever the reduction

    def add(name: str, value: Tensor) -> None:
        terms[name] = terms.get(name, value.new_zeros(())) + value

    def note(name: str, value: Tensor) -> None:
        per_word[f"{name}_per_word"] = per_word.get(f"{name}_per_word", 0.0) + value.item()

    b, red = words.shape[0], c.token_reduction
    enc = {dom: model.encoder.encode(dom, batch, n_w if c.conc else None) for dom in model.encoder.domains}
    for e in enc.values():
        if c.ctc:
            ctc_logits = model.ctc_head(e.s_a)
            per_utt = ctc_losses(ctc_logits, e.a_mask.sum(1), words, n_w)
            add("ctc", reduce_utterances(per_utt, n_w, red))
            note("ctc", reduce_utterances(per_utt, n_w, "mean"))
            if c.ctc_penalty:
                add("ctc_penalty", -c.ctc_penalty * frame_entropy(ctc_logits, e.a_mask).mean())
        if c.conc:
            width = min(e.s_c.shape[1], words.shape[1])  # equal in pre-training: CIF is scaled to the word count
            seg = e.s_c[:, :width] + sinusoid(width, c.d, words.device)
            logits = model.nar_out(model.nar(seg, src_key_padding_mask=~e.s_mask[:, :width]))
            both = e.s_mask[:, :width] & w_mask[:, :width]
            ce_tokens = F.cross_entropy(logits[both], words[:, :width][both], reduction="none")
            note("conc_ce", token_loss(ce_tokens, b, "mean"))
            ce = token_loss(ce_tokens, b, red)
            add("conc", ciflib.quantity(e.alpha, n_w) + ce)
        pooled = masked_mean(e.s_s, e.s_mask)
        text = masked_mean(w_vec, w_mask)
        if c.seq:
            idx, ok = sample_negatives(batch["index"], model.seq_table.shape[0], c.negatives)
            add("seq", info_nce(model.seq_speech(pooled), model.seq_text(text), model.seq_text(model.seq_table[idx]),
                                ok, c.temperature))  # fmt: skip
        if c.word:
            masked = mask_words(n_w, words.shape[1], c.mask_ratio, model.content[words], c.word_masking)
            queries = torch.where(masked[..., None], model.mask_vector.expand_as(w_vec), w_vec)
            q = model.word_in(queries) + sinusoid(words.shape[1], c.d, words.device)
            o = model.word_decoder(q, e.s_s, tgt_key_padding_mask=~w_mask, memory_key_padding_mask=~e.s_mask)
            word_tokens = F.cross_entropy(model.word_out(o)[masked], words[masked], reduction="none")
            note("word", token_loss(word_tokens, b, "mean"))
            add("word", token_loss(word_tokens, b, red))
        if c.dis:
            dis_s = F.mse_loss(model.seq_speech(pooled), text)
            q = model.dis_query(w_vec) + sinusoid(words.shape[1], c.d, words.device)
            read, _ = model.dis_attention(q, e.s_s, e.s_s, key_padding_mask=~e.s_mask)
            dis_w = F.mse_loss(model.dis_out(read)[w_mask], w_vec[w_mask])
            add("dis", dis_s + dis_w)
    if c.rob and len(enc) == 2:
        t, f = enc["time"], enc["freq"]
        add("rob", rob_loss(t.s_s, t.s_mask, f.s_s, f.s_mask))
    weight = {"rob": c.lambda1, "conc": c.lambda2}
    loss = sum(weight.get(k, 1.0) * v for k, v in terms.items())
    return loss, {**{k: v.item() for k, v in terms.items()}, **per_word}


def rob_loss(s_t: Tensor, t_mask: Tensor, s_f: Tensor, f_mask: Tensor) -> Tensor:
    """Eq. 1: the mean absolute difference of the two domains' semantic features, over the segments both have
    (in pre-training both are scaled to the word count, so they have the same number)."""
    width = min(s_t.shape[1], s_f.shape[1])
    both = (t_mask[:, :width] & f_mask[:, :width])[..., None].to(s_t.dtype)
    diff = (s_t[:, :width] - s_f[:, :width]).abs() * both
    return diff.sum() / (both.sum() * s_t.shape[-1]).clamp_min(1.0)


def sample_negatives(index: Tensor, n: int, k: int) -> tuple[Tensor, Tensor]:
    """``min(k, n - 1)`` corpus rows drawn without replacement, and which of them are negatives for each row."""
    k = min(k, n - 1) if n > 1 else n
    idx = torch.randperm(n, device=index.device)[: max(k, 1)]
    return idx, idx[None, :] != index[:, None]


# -- the pre-training stage ---------------------------------------------------------------------------------------


def _stage_inputs(dataset_hash: str) -> dict[str, str]:
    return {"dataset": dataset_hash, "asp_version": str(ASP_VERSION)}


def asp_stage(cache_dir: str | Path, c: ASPConfig, dataset_hash: str) -> stages.Stage:
    """The cached ASP stage of ``c`` pre-trained on the dataset whose content hash is ``dataset_hash``."""
    return stages.stage(cache_dir, "asp", c, _stage_inputs(dataset_hash))


def pretrain_stage(ctx: RunContext, c: ASPConfig) -> tuple[stages.Stage, dict]:
    """The ASP stage for this dataset and configuration: built the first time, then reused (:mod:`bench.stages`)."""
    data = ctx.data
    st = asp_stage(ctx.cache_dir, c, data.content_hash)  # the grounding seed is not an input
    record = stages.run_stage(st, lambda sctx: _pretrain(sctx, data, c, ctx.cache_dir), config=c,
                              inputs=_stage_inputs(data.content_hash), device=ctx.device, seed=c.seed,
                              log=ctx.log)  # fmt: skip
    return st, record


def usable_rows(words: Tensor, words_len: Tensor, max_words: int | None) -> tuple[Tensor, dict[str, int]]:
    """The corpus rows pre-training uses, and how many were left out and why.

    Left out: an utterance none of whose words has a vector (the corpus gives it the single target 0, which is
    CTC's blank and the decoders' padding: no word to learn), and, with ``max_words``, one with more words (cutting
    its words would leave audio without text, and CIF would be scaled to the wrong count)."""
    no_word = (words_len == 1) & (words[:, 0] == 0)
    too_long = words_len > max_words if max_words is not None else torch.zeros_like(no_word)
    keep = ~(no_word | too_long)
    counts = {"dropped_no_vocab_word": int(no_word.sum()), "dropped_over_max_words": int((too_long & ~no_word).sum())}
    return keep.nonzero().squeeze(1), counts


@dataclass
class CorpusSplits:
    """The pre-training corpus as an encoder stage reads it: training and held-out rows, vocabulary, word vectors
    ``[V + 1, D]`` (row 0 zero) and what was left out (:func:`usable_rows`)."""

    train: loader.PaddedSplit | ondisk.DiskSplit  # on disk when the corpus is too large for memory (bench.data.ondisk)
    held: loader.PaddedSplit | ondisk.DiskSplit
    vocab: list[str]
    vectors: Tensor
    dropped: dict[str, int]


def corpus_splits(data, cache_dir: Path, subset: str, max_words: int | None, heldout: float, seed: int,
                  device) -> CorpusSplits:  # fmt: skip
    """The usable corpus utterances of ``subset``, a share ``heldout`` of them (at least one) held out for epoch
    selection, drawn with ``seed`` by a generator of its own (so the split does not move any other random stream)."""
    full, vocab, vectors = corpus.load_corpus(data, Path(cache_dir) / "corpus", subset, None, device)
    rows, dropped = usable_rows(full["words"], full["words_len"], max_words)
    if len(rows) == 0:
        raise ValueError(f"no pre-training utterance is usable ({dropped}); raise asp.max_words or check the corpus")
    split = full.select(rows)
    n = len(split)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(n * heldout)) if n > 1 else 0
    return CorpusSplits(split.select(order[n_val:]), split.select(order[:n_val]), vocab, vectors, dropped)


def _pretrain(sctx: stages.StageContext, data, c: ASPConfig, cache_dir: Path) -> dict:
    cs = corpus_splits(data, cache_dir, c.corpus_subset, c.max_words, c.heldout, c.seed, sctx.device)
    train, held, vocab, vectors, dropped = cs.train, cs.held, cs.vocab, cs.vectors, cs.dropped
    w = vectors[train["words"]]
    m = lengths_to_mask(train["words_len"], w.shape[1])[..., None].to(w.dtype)
    seq_table = (w * m).sum(1) / m.sum(1).clamp_min(1.0)
    model = ASPModel(c, vectors, seq_table, content_rows(vocab).to(sctx.device)).to(sctx.device)
    sctx.log.log_params({"corpus_utterances": len(train), "heldout_utterances": len(held), "vocab": len(vocab),
                         "parameters": sum(p.numel() for p in model.encoder.parameters()), **dropped})  # fmt: skip

    def held_out() -> dict[str, float]:
        sums: dict[str, float] = {}
        count = 0
        for b in loader.BatchIterator(held, c.train.batch_size):
            b["index"] = torch.full_like(b["index"], -1)  # held-out rows are not in the negatives table
            loss, parts = asp_loss(model, b)
            for k, v in {"loss": loss.item(), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v * len(b["index"])
            count += len(b["index"])
        out = {k: v / max(count, 1) for k, v in sums.items()}
        out["neg_loss"] = -out["loss"]
        return out

    task = Task(
        model=model,
        loss=lambda batch: asp_loss(model, batch),
        batches=lambda gen, shard: loader.BatchIterator(
            train,
            shard.batch_size(c.train.batch_size),
            shuffle=True,
            generator=gen,
            rank=shard.rank,
            world_size=shard.world,
        ),
        n_batches=-(-len(train) // c.train.batch_size),
        validate=held_out,
        test=lambda path: held_out(),
    )
    out = fit(task, c.train, sctx, select_on="neg_loss")
    loader.save_atomic({"config": cfg.to_dict(c), "encoder": model.encoder.state_dict()}, sctx.out / "encoder.pt")
    return {"selected_epoch": out.selected_epoch, "heldout": out.val_best, "vocab": len(vocab), **dropped}


def load_encoder(st: stages.Stage, c: ASPConfig, device) -> ASPEncoder:
    enc = ASPEncoder(c)
    enc.load_state_dict(st.load("encoder.pt")["encoder"])
    return enc.to(device).eval()


def with_speech_features(ctx: RunContext, data: grounding.GroundingData, st: stages.Stage, c: ASPConfig,
                         batch_size: int = 32) -> grounding.GroundingData:  # fmt: skip
    """The grounding splits with each query's frozen ``S~`` as ``sem`` / ``sem_len``, encoded once per stage."""
    return frozen.with_stage_speech_features(ctx, data, "sem", st.key, lambda: load_encoder(st, c, ctx.device),
                                             batch_size)


# -- grounding with AVCL (§3.4) ----------------------------------------------------------------------------------


class SILNet(nn.Module):
    """The Base grounding network over the frozen encoder's features, with AVCL's discriminator."""

    def __init__(self, c: SILConfig, video_dim: int, query_dim: int) -> None:
        super().__init__()
        self.c = c
        self.base = base.BaseNet(c.ground, video_dim, query_dim=query_dim)
        self.avcl = AVCL(c.ground.d) if c.avcl else None

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.base(batch)


def sil_loss(model: SILNet, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Eq. 8: ``L_base + lambda3 L_AVCL`` (``L_base`` = eq. 10 + eq. 11, as Base)."""
    c = model.c
    p = base.weak_pass(model.base, batch, clips=model.avcl is not None)
    if model.avcl is None:
        return p.loss, p.scalars
    pos, neg = select_clips(p.k.detach(), torch.sigmoid(p.clip_logits.detach()), c.ground.n_clips, c.T, c.location,
                            c.score)  # fmt: skip
    avcl = model.avcl(p.s, p.s_mask, p.v, pos, neg)
    return p.loss + c.lambda3 * avcl, {**p.scalars, "avcl": avcl.item()}


SPREAD = {"shared": "grounding seeds, one encoder", "per-run": "pre-training and grounding seeds"}


def pretrain_config(c: ASPConfig, run_seed: int) -> ASPConfig:
    """The encoder a grounding run of seed ``run_seed`` uses: ``c`` itself, or with ``asp.seeding=per-run`` the same
    configuration pre-trained with seed ``c.seed + run_seed`` (written as a shared one, so that grounding seed 0 of a
    per-run sweep reuses the encoder of the default runs)."""
    if c.seeding == "per-run":
        return dataclasses.replace(c, seed=c.seed + run_seed, seeding="shared")
    return c


def run(ctx: RunContext) -> RunResult:
    """Pre-train (or reuse) the encoder, encode the queries once, train the grounding network, select on val, test.

    The run logs ``spread``: which randomness its seed varies (:data:`SPREAD`), for a table's caption."""
    c: SILConfig = ctx.config
    asp_c = pretrain_config(c.asp, ctx.seed)
    ctx.log.log_params({"spread": SPREAD[c.asp.seeding], "asp.pretrain_seed": asp_c.seed})
    st, record = pretrain_stage(ctx, asp_c)

    def features(ctx: RunContext, data: grounding.GroundingData) -> grounding.GroundingData:
        return with_speech_features(ctx, data, st, asp_c)

    def build(data: grounding.GroundingData) -> SILNet:
        return SILNet(c, data.train.videos.shape[-1], c.asp.d)

    def full(m: SILNet, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        return base.full_loss(m.base, batch)

    loss = sil_loss if c.ground.supervision == "weak" else full
    if c.finetune:
        tune = finetune.Finetune(lambda: load_encoder(st, asp_c, ctx.device))
        return recipe.ground(ctx, c.ground, build, loss, finetune=tune)
    return recipe.ground(ctx, c.ground, build, loss, prepare=features)


# -- the registry: SIL and every ablation ------------------------------------------------------------------------


def _spec(name: str, title: str, desc: str, asp: dict | None = None, **kw) -> MethodSpec:
    supervision = kw.get("supervision", "weak")

    def config(profile: str) -> SILConfig:
        return sil_config(profile, asp=asp, **kw)

    return MethodSpec(name, title, ("pretrain", "ground"), "speech", supervision, desc, run=run, config=config,
                      issue=5)  # fmt: skip


SEM = dict(domains="freq", conc=False, rob=False)  # L_sem alone: the log-mel front-end, no CIF, no L1
NO_AVCL = dict(avcl=False)
for _s in [
    _spec(
        "sil",
        "SIL (Base + L_AVCL, L_ASP)",
        "the full method: ASP pre-training and AVCL",
    ),
    _spec(
        "base+lsem",
        "Base + L_sem",
        "Base with only the semantic task as pre-training",
        asp=SEM,
        **NO_AVCL,
    ),
    _spec(
        "base+asp",
        "Base + L_ASP",
        "Base with the full ASP pre-training, no AVCL",
        **NO_AVCL,
    ),
    _spec(
        "base+lconc+lsem",
        "Base + L_conc + L_sem",
        "Table 3 row 3",
        asp=dict(domains="freq", rob=False),
        **NO_AVCL,
    ),
    _spec("base+lsem+avcl", "Base + L_sem + L_AVCL", "Table 3 row 4", asp=SEM),
    # Table 3 row 5: one input (Figure 4: "only uses frequency- or time-based features without training of robustness
    # task"), so it differs from row 3 by L_AVCL and from row 4 by L_conc; row 6 (SIL) adds L_rob and, with it, the
    # time-domain input (eq. 1 needs both). The same configuration as Figure 4's sil-freq-only.
    _spec(
        "sil-no-rob",
        "SIL without L_rob",
        "Table 3 row 5: log-mel input only, no robustness task (as Figure 4's frequency-only ablation)",
        asp=dict(domains="freq", rob=False),
    ),
    _spec(
        "sil-both-no-rob",
        "SIL, both inputs without L_rob",
        "both domains encoded side by side without eq. 1: between Table 3's rows 5 and 6, it adds the time-domain "
        "input alone",
        asp=dict(rob=False),
    ),
    _spec(
        "sil-data10", "SIL, 10 % pre-training data", "Table 4", asp=dict(corpus_subset="10%")
    ),
    _spec(
        "sil-data50", "SIL, 50 % pre-training data", "Table 4", asp=dict(corpus_subset="50%")
    ),
    _spec(
        "base-pooladd+lsem",
        "Pool+Add fusion, without L_conc",
        "Table 5: Pool+Add fusion over the L_sem encoder",
        asp=SEM,
        fusion="pool-add",
        **NO_AVCL,
    ),
    _spec(
        "base-pooladd+asp",
        "Pool+Add fusion, with L_conc",
        "Table 5: Pool+Add fusion over the L_ASP encoder",
        fusion="pool-add",
        **NO_AVCL,
    ),
    _spec(
        "sil-no-location",
        "SIL without location-based selection",
        "Table 11",
        location=False,
    ),
    _spec("sil-no-score", "SIL without score-based mining", "Table 11", score=False),
    _spec(
        "sil-freq-only",
        "SIL, frequency-domain input only",
        "Figure 4: log-mel only, no robustness task",
        asp=dict(domains="freq", rob=False),
    ),
    _spec(
        "sil-time-only",
        "SIL, time-domain input only",
        "Figure 4: wave only, no robustness task",
        asp=dict(domains="time", rob=False),
    ),
    _spec(
        "base+ldis",
        "Base + L_dis-s + L_dis-w (MSE distillation)",
        "Figure 5(a)",
        asp=dict(SEM, ctc=True, seq=False, word=False, dis=True),
        **NO_AVCL,
    ),
    _spec("base+lseq", "Base + L_seq", "Figure 5(a)", asp=dict(SEM, ctc=True, seq=True, word=False), **NO_AVCL),
    _spec(
        "base+lseq+lword",
        "Base + L_seq + L_word",
        "Figure 5(a); with the CTC warm-up this is Base + L_sem",
        asp=SEM,
        **NO_AVCL,
    ),
    _spec(
        "sbase+asp",
        "SBase + ASP",
        "SBase with the ASP-pre-trained encoder (Table 10)",
        supervision="full",
        **NO_AVCL,
    ),
]:
    register(_s)
    if _s.name == "sil":  # Table 1's fine-tune column
        register(finetuned(_s))
