"""VSLNet: span-based localizing network (Zhang et al., ACL 2020), the paper's supervised reference (Tables 1, 10).

Re-implemented from the VSLNet paper and the PyTorch port of its public code (``shared/research/baselines.md`` §2,
``baselines-2.md``). One query's way through the network (:class:`VSLNet`):

1. **video**: the clip features ``[B, 64, 500]`` -> dropout -> linear map to d (the code's ``VisualProjection``);
2. **query**: speech (``vslnet``, SIL App. B.3: "we simply replace the textual features with the log-mel
   spectrograms features of speech") or the gold transcript (``vslnet-text``), see :class:`MelEmbedding` and
   :class:`TextEmbedding`; both give ``[B, L, d]`` and a mask;
3. **feature encoder** (:class:`FeatureEncoder`), ONE module shared by video and query: learned position
   embedding, 4 depthwise-separable convolution layers (kernel 7), one self-attention block;
4. **context-query attention** (:class:`ContextQueryAttention`): the trilinear score
   ``S_ij = w_c.c_i + w_q.q_j + w_m.(c_i * q_j)``, ``A = softmax_q(S) Q``, ``B = softmax_q(S) softmax_c(S)^T C``,
   output ``W [C; A; C*A; C*B]``; then **CQ concatenation** (:class:`QueryConcat`): the query pooled with a learned
   vector, tiled over the clips, concatenated, mapped back to d;
5. **query-guided highlighting** (QGH): ``h_t = sigmoid(w.f_t + b)``, and the features become ``f_t * h_t``;
6. **conditioned span predictor** (:class:`SpanPredictor`): a start LSTM over the highlighted features, an end
   LSTM over the start LSTM's outputs; each head is ``Linear(2d -> d) -> ReLU -> Linear(d -> 1)`` on
   ``[lstm output ; features]``: start and end logits ``[B, 64]``.

**Training** (:func:`vslnet_loss`, fully supervised): ``CE(start) + CE(end) + lambda * L_QGH`` with lambda = 5.
Labels as the code derives them (:func:`span_labels`, :func:`highlight_labels`): (s, e) = the grid span
``[i D/n, (j+1) D/n]`` of highest IoU with the annotated moment (ties to the smallest i, then j); the highlight
label is 1 on the clips ``[s - k, e + k]`` with ``k = round(0.1 (e - s + 1))`` (Python's round, half to even),
clipped to the video; ``L_QGH`` is the BCE of h against it, weighted 2 on the foreground and 1 on the background,
averaged over the clips (:func:`highlight_loss`).

**Inference** (:mod:`methods.parts.spans`): ``P = softmax(start) (x) softmax(end)`` on the upper triangle (j >= i),
every one of the ``n (n + 1) / 2`` spans ranked by P, in seconds ``[i D/n, (j + 1) D/n]``; the top-1 is VSLNet's argmax.
The evaluator takes R@5 after its own NMS (0.45), so each query's list goes down to its fifth NMS survivor (and at
least ``n_ranked`` = 100 spans): R@1 and R@5 are what the whole ranking gives.

**How the log-mel frames enter** (:class:`MelEmbedding`). VSLNet maps each word's [word ; char] vector to d with a
width-1 convolution. Its speech counterpart here maps each group of 4 consecutive 80-d frames (80 ms) to d: a
``Conv1d(80 -> d, kernel = stride = 4)``, i.e. a linear map of the stacked frames. Why a stride: SIL downsamples
its speech input to 1/4 (App. B.2), the shared encoder's self-attention costs grow with the square of the length
and its learned position table has VSLNet's 128 entries, and 20 ms frames would make a 6 s caption 300 steps
(on synth/small the longest utterance is 312 frames, 78 steps after the stride; mean 43). Why no deeper front-end:
App. B.3 replaces only the textual features; everything after the embedding is VSLNet as written.

**The text query** (:class:`TextEmbedding`): the frozen word vectors (GloVe format, ``data.word_vectors``); words
without a vector (a zero row) get VSLNet's trainable UNK vector; VSLNet's character CNN over each word's
characters (``data.vocab`` gives the strings): a character embedding, convolutions of widths 1-4 with 10/20/30/40
channels, ReLU, max over the characters (100-d); ``[word ; char]`` -> linear -> d.

Differences from the code, and why:

- **Video**: every method of the suite shares the 64-clip resampling of ``bench.data.grounding`` (2D-TAN's
  average to a fixed length); VSLNet's code keeps up to 128 native features (longer videos averaged down to 128,
  shorter ones kept as they are), so its grid is finer on long videos.
- **Optimiser**: the shared loop ``bench.train`` (Adam with L2 weight decay, linear warm-up then inverse square
  root, gradient clipping). VSLNet's code runs AdamW (decoupled decay 0.01, none on biases and LayerNorms), lr
  1e-4 decayed linearly to 0 with no warm-up, batch 16, 100 epochs, clip 1.0. ``paper`` keeps its lr, batch,
  epochs and clip, with one epoch of warm-up (2,340 updates of 16 on ActivityNet's 37,417 queries) because the
  inverse square root without warm-up would divide the rate by sqrt(update) from the first step; the weight
  decay stays the suite's 1e-7, since a coupled L2 of 0.01 under Adam is a far stronger pull than AdamW's
  decoupled 0.01 (a shrink of lr * 0.01 = 1e-6 per update). ``small`` uses the suite's small grounding loop, the
  same for every grounding method, with VSLNet's clip 1.0.
- **Selection**: on val (``select_on``), never on test (the code keeps the best test R@1 IoU=0.7).
- **Padding**: padded query steps are set to zero before each convolution of the feature encoder, so a query's
  features never depend on the other queries of its batch (the code convolves over the padding).
- **Attention**: ``torch.nn.MultiheadAttention``, which has the standard output projection W^O; the code's block
  adds the heads' concatenation to the residual without it.
- **Character CNN**: run once per distinct word of a batch (the same function, so the same values at eval;
  character dropout is drawn per distinct word rather than per occurrence), over each word padded to the longest
  word of the vocabulary.
- **Ties in decoding**: the highest cell of P, ties to the smallest (i, j) in row-major order; the code takes the
  start and the end arguments of P's row and column maxima separately, which agrees whenever the maximum is unique.

Known behaviour (measured on synth/small, seed 0, ``bench run --method M --profile small --seeds 0 --set
train.epochs=10``; test R1@0.5, the fixed-span prior 28.3): with the small loop's lr 3e-4, ``vslnet-text`` 18.3
(val 17.6 at epoch 10, still rising) and ``vslnet`` 18.7 (epoch 9); with ``--set train.lr=1e-3``, 35.1 (epoch 8)
and 34.6 (epoch 10), both above the prior. The first epoch's mean loss is 42-66 (at initialisation, on one
batch of text queries: CE 24.2, L_QGH 6.8): the synthetic clip features have a standard deviation of 2.5 per
dimension, and the products in ``[C; A; C*A; C*B]`` carry that scale into large logits, so the first updates are
spent shrinking them. Clip features z-scored on train (a diagnostic outside the method, text, lr 3e-4) gave a first
epoch's mean loss of 25 against 66, and val R1@0.5 24.7 against 12.4 at epoch 4.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bench import config as cfg
from bench import evaluate
from bench.context import MethodSpec, RunContext, RunResult, register
from bench.data import grounding
from bench.train import fit_grounding
from methods.parts import spans
from methods.parts.encoders import lengths_to_mask

MASK_VALUE = -1e30  # the code's mask_logits
# VSLNet's own settings (argparse defaults of the code; the paper's ActivityNet run), in the suite's loop.
PAPER_TRAIN = cfg.TrainConfig(epochs=100, batch_size=16, lr=1e-4, warmup_updates=2340, grad_clip=1.0)


@dataclass(frozen=True)
class VSLNetConfig:
    query: Literal["speech", "gold-text"] = "speech"
    d: int = 128  # the code's dim
    heads: int = 8
    n_clips: int = 64  # the suite's shared resampling (the code: up to 128 native features)
    n_conv: int = 4  # depthwise-separable conv layers of the feature encoder
    kernel: int = 7
    max_pos_len: int = 128  # the learned position table; the longest query (after the mel stride) must fit
    dropout: float = 0.2
    mel_stride: int = 4  # log-mel frames per query step (SIL App. B.2 downsamples speech to 1/4)
    char: bool = True  # the character CNN of the text query
    char_dim: int = 100  # the code's help text: "set to 100 for activitynet"
    char_kernels: tuple[int, ...] = (1, 2, 3, 4)
    char_channels: tuple[int, ...] = (10, 20, 30, 40)
    extend: float = 0.1  # the highlight label's extension, as a share of the moment's clips
    highlight_lambda: float = 5.0
    n_ranked: int = 100  # the shortest ranked list a query hands to the evaluator
    select_on: str = "R1@0.5"
    eval_batch_size: int = 128
    train: cfg.TrainConfig = field(default_factory=lambda: PAPER_TRAIN)


def vslnet_config(profile: str, **kw) -> VSLNetConfig:
    """``paper``: VSLNet's own hyper-parameters (d 128, 8 heads, dropout 0.2, lr 1e-4, batch 16, 100 epochs, clip
    1.0); ``tiny``: CI smoke size.

    ``small`` is sized for 2 CPU cores: the suite's small grounding loop with VSLNet's clip 1.0, d = 64 with 4 heads
    (VSLNet's 16 features per head), 2 conv layers, a 32-d character embedding. Measured on synth/small, batch 64,
    one thread, as CPU time per update (the wall time was 2-2.5x more on the shared, loaded machine): 0.29 s on the
    text query, 0.40 s on speech (its queries are longer: 43 steps on average, up to 78); the paper's sizes cost
    0.71 / 1.03 s. A third of it is dropout (PyTorch's CPU Bernoulli sampling). d = 32 with 2 heads costs 0.17 /
    0.21 s but learned more slowly (text, lr 1e-3, 6 epochs: val R1@0.5 17.8 against 31.6 at d = 64).
    """
    cfg.check_profile(profile)
    if profile == "paper":
        return VSLNetConfig(**kw)
    train = dataclasses.replace(cfg.GROUNDING_TRAIN[profile], grad_clip=PAPER_TRAIN.grad_clip)
    size = {
        "tiny": dict(d=16, heads=2, n_conv=1, char_dim=8, char_channels=(2, 4, 4, 6)),
        "small": dict(d=64, heads=4, n_conv=2, char_dim=32),
    }[profile]
    return VSLNetConfig(**{"train": train, "n_clips": cfg.GROUNDING_CLIPS[profile], **size, **kw})


def mask_logits(x: Tensor, mask: Tensor) -> Tensor:
    """``x`` where ``mask`` is True, -1e30 elsewhere (so softmax and sigmoid give 0 there)."""
    return x.masked_fill(~mask, MASK_VALUE)


# -- query embeddings ---------------------------------------------------------------------------------------------


class MelEmbedding(nn.Module):
    """The speech query: dropout on the 80-d log-mel, then ``Conv1d(80 -> d, kernel = stride = s)``.

    The batch is right-padded to a multiple of s; an utterance of T frames gives ceil(T / s) steps (its last step
    may hold fewer than s real frames, the rest being the zero padding of the standardised log-mel).
    """

    def __init__(self, d: int, stride: int, dropout: float, n_mels: int = 80) -> None:
        super().__init__()
        self.stride = stride
        self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv1d(n_mels, d, stride, stride=stride)

    def forward(self, mel: Tensor, mel_len: Tensor) -> tuple[Tensor, Tensor]:
        mel = F.pad(mel, (0, 0, 0, (-mel.shape[1]) % self.stride))
        x = self.conv(self.dropout(mel).transpose(1, 2)).transpose(1, 2)
        steps = torch.div(mel_len + self.stride - 1, self.stride, rounding_mode="floor")
        return x, lengths_to_mask(steps, x.shape[1])


def char_table(vocab: list[str], width: int) -> tuple[Tensor, int]:
    """Each word row's character ids ``[len(vocab) + 1, W]`` (row 0 = no word; ids 1-based, 0 = padding), W = the
    longest word or ``width``, whichever is more; and the number of distinct characters."""
    chars = {ch: i + 1 for i, ch in enumerate(sorted({ch for w in vocab for ch in w}))}
    table = torch.zeros(len(vocab) + 1, max([width, *map(len, vocab)]), dtype=torch.long)
    for row, word in enumerate(vocab, start=1):
        table[row, : len(word)] = torch.tensor([chars[ch] for ch in word], dtype=torch.long)
    return table, len(chars)


class TextEmbedding(nn.Module):
    """The text query: [frozen word vector (UNK trainable) ; character CNN] -> linear -> d, with dropout."""

    def __init__(self, word_vectors: Tensor, vocab: list[str], c: VSLNetConfig) -> None:
        super().__init__()
        if len(vocab) + 1 != word_vectors.shape[0]:
            raise ValueError(f"{len(vocab)} words but {word_vectors.shape[0]} vector rows (expected one more: row 0)")
        self.register_buffer("vectors", word_vectors.float().clone(), persistent=False)
        self.register_buffer("unknown", word_vectors.abs().sum(1) == 0, persistent=False)  # row 0 and vectorless
        self.unk = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, word_vectors.shape[1])))
        self.dropout = nn.Dropout(c.dropout)
        self.char = c.char
        width = word_vectors.shape[1]
        if c.char:
            table, n_chars = char_table(vocab, max(c.char_kernels))
            self.register_buffer("chars", table, persistent=False)
            self.char_embed = nn.Embedding(n_chars + 1, c.char_dim, padding_idx=0)
            self.char_convs = nn.ModuleList(
                nn.Conv1d(c.char_dim, ch, k) for k, ch in zip(c.char_kernels, c.char_channels, strict=True)
            )
            width += sum(c.char_channels)
        self.project = nn.Linear(width, c.d)

    def char_features(self, words: Tensor) -> Tensor:
        """The character CNN of each word ``[B, L]`` -> ``[B, L, sum(channels)]``, once per distinct word."""
        distinct, where = torch.unique(words, return_inverse=True)
        x = self.dropout(self.char_embed(self.chars[distinct])).transpose(1, 2)  # [U, char_dim, W]
        feats = torch.cat([torch.relu(conv(x)).max(dim=-1).values for conv in self.char_convs], dim=-1)
        return feats[where]

    def forward(self, words: Tensor, words_len: Tensor) -> tuple[Tensor, Tensor]:
        mask = lengths_to_mask(words_len, words.shape[1])
        vec = torch.where((self.unknown[words] & mask)[..., None], self.unk, self.vectors[words])
        parts = [self.dropout(vec)] + ([self.char_features(words)] if self.char else [])
        return self.project(torch.cat(parts, dim=-1)), mask


# -- the network ---------------------------------------------------------------------------------------------------


class FeatureEncoder(nn.Module):
    """Position embedding, ``n_conv`` x [LN -> depthwise conv -> pointwise conv -> ReLU -> dropout, + residual],
    then [LN -> dropout -> multi-head self-attention -> dropout, + residual; LN -> dropout -> linear -> dropout,
    + residual]. Shared by the video and the query."""

    def __init__(self, d: int, heads: int, max_pos_len: int, n_conv: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.position = nn.Embedding(max_pos_len, d)
        self.conv_norms = nn.ModuleList(nn.LayerNorm(d, eps=1e-6) for _ in range(n_conv))
        self.depthwise = nn.ModuleList(
            nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d, bias=False) for _ in range(n_conv)
        )
        self.pointwise = nn.ModuleList(nn.Conv1d(d, d, 1) for _ in range(n_conv))
        self.attention_norm = nn.LayerNorm(d, eps=1e-6)
        self.attention = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.out_norm = nn.LayerNorm(d, eps=1e-6)
        self.out = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        length = x.shape[1]
        if length > self.position.num_embeddings:
            raise ValueError(
                f"a sequence of {length} steps is longer than the position table ({self.position.num_embeddings}); "
                f"raise max_pos_len (--set max_pos_len={length})"
            )
        x = x + self.position.weight[:length]
        keep = mask[..., None].to(x.dtype)
        for norm, depthwise, pointwise in zip(self.conv_norms, self.depthwise, self.pointwise, strict=True):
            y = (norm(x) * keep).transpose(1, 2)
            x = x + self.dropout(torch.relu(pointwise(depthwise(y))).transpose(1, 2))
        y = self.dropout(self.attention_norm(x))
        y = self.attention(y, y, y, key_padding_mask=~mask, need_weights=False)[0]
        x = x + self.dropout(y)
        return x + self.dropout(self.out(self.dropout(self.out_norm(x))))


class ContextQueryAttention(nn.Module):
    """Trilinear context-query attention: ``W [C; A; C*A; C*B]`` (dropout on C and Q inside the score only)."""

    def __init__(self, d: int, dropout: float) -> None:
        super().__init__()
        self.w_c, self.w_q, self.w_m = (nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, 1))) for _ in range(3))
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Linear(4 * d, d)

    def score(self, c: Tensor, q: Tensor) -> Tensor:
        """``S [B, Lc, Lq]``, ``S_ij = w_c.c_i + w_q.q_j + w_m.(c_i * q_j)``."""
        c, q = self.dropout(c), self.dropout(q)
        return c @ self.w_c + (q @ self.w_q).transpose(1, 2) + (c * self.w_m[:, 0]) @ q.transpose(1, 2)

    def forward(self, c: Tensor, q: Tensor, c_mask: Tensor, q_mask: Tensor) -> Tensor:
        s = self.score(c, q)
        to_query = torch.softmax(mask_logits(s, q_mask[:, None, :]), dim=2)  # each clip over the query steps
        to_context = torch.softmax(mask_logits(s, c_mask[:, :, None]), dim=1)  # each query step over the clips
        a = to_query @ q
        b = to_query @ to_context.transpose(1, 2) @ c
        return self.project(torch.cat([c, a, c * a, c * b], dim=-1))


class QueryConcat(nn.Module):
    """CQ concatenation: the query pooled by a learned vector's softmax weights, tiled, ``W [F ; q_pool]``."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.pool = nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, 1)))
        self.project = nn.Linear(2 * d, d)

    def forward(self, f: Tensor, q: Tensor, q_mask: Tensor) -> Tensor:
        alpha = torch.softmax(mask_logits((q @ self.pool)[..., 0], q_mask), dim=1)
        pooled = (alpha[..., None] * q).sum(1, keepdim=True).expand(-1, f.shape[1], -1)
        return self.project(torch.cat([f, pooled], dim=-1))


class SpanPredictor(nn.Module):
    """The conditioned span predictor: start LSTM, end LSTM over its outputs, two heads on [h ; f]."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.start_lstm = nn.LSTM(d, d, batch_first=True)
        self.end_lstm = nn.LSTM(d, d, batch_first=True)
        self.start_head = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, 1))
        self.end_head = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, 1))

    def forward(self, f: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        keep = mask[..., None].to(f.dtype)
        h_start = self.start_lstm(f)[0] * keep
        h_end = self.end_lstm(h_start)[0] * keep
        start = self.start_head(torch.cat([h_start, f], dim=-1))[..., 0]
        end = self.end_head(torch.cat([h_end, f], dim=-1))[..., 0]
        return mask_logits(start, mask), mask_logits(end, mask)


@dataclass
class VSLNetOutput:
    start: Tensor  # [B, n] start logits
    end: Tensor  # [B, n] end logits
    highlight: Tensor  # [B, n] QGH logits
    mask: Tensor  # [B, n] the clips (all True: every video has n_clips clips)


class VSLNet(nn.Module):
    """VSLNet on a speech or text query; ``forward`` gives the start, end and highlight logits per clip."""

    def __init__(self, c: VSLNetConfig, video_dim: int, word_vectors: Tensor | None = None,
                 vocab: list[str] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.c = c
        self.video_dropout = nn.Dropout(c.dropout)
        self.video = nn.Linear(video_dim, c.d)
        if c.query == "speech":
            self.query: nn.Module = MelEmbedding(c.d, c.mel_stride, c.dropout)
        else:
            if word_vectors is None or vocab is None:
                raise ValueError("a text query needs the word vectors and the vocabulary")
            self.query = TextEmbedding(word_vectors, vocab, c)
        self.encoder = FeatureEncoder(c.d, c.heads, c.max_pos_len, c.n_conv, c.kernel, c.dropout)
        self.cq_attention = ContextQueryAttention(c.d, c.dropout)
        self.cq_concat = QueryConcat(c.d)
        self.highlight = nn.Linear(c.d, 1)
        self.predictor = SpanPredictor(c.d)
        for m in self.modules():  # the code's initialisation; LSTMs and embeddings keep PyTorch's
            if isinstance(m, nn.Linear | nn.Conv1d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def embed_query(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        if self.c.query == "speech":
            return self.query(batch["mel"], batch["mel_len"])
        return self.query(batch["words"], batch["words_len"])

    def forward(self, batch: dict[str, Tensor]) -> VSLNetOutput:
        video = self.video(self.video_dropout(batch["video"]))
        v_mask = torch.ones(video.shape[:2], dtype=torch.bool, device=video.device)
        q, q_mask = self.embed_query(batch)
        v, q = self.encoder(video, v_mask), self.encoder(q, q_mask)
        f = self.cq_concat(self.cq_attention(v, q, v_mask, q_mask), q, q_mask)
        highlight = mask_logits(self.highlight(f)[..., 0], v_mask)
        start, end = self.predictor(f * torch.sigmoid(highlight)[..., None], v_mask)
        return VSLNetOutput(start, end, highlight, v_mask)


# -- labels and loss -----------------------------------------------------------------------------------------------


def grid_spans(duration: Tensor, n: int) -> Tensor:
    """Every grid span's seconds ``[B, n, n, 2]``: cell (i, j) is ``[i D/n, (j + 1) D/n]``."""
    steps = torch.arange(n + 1, device=duration.device, dtype=torch.float32) / n
    starts = (duration[:, None] * steps[:-1])[:, :, None].expand(-1, n, n)
    ends = (duration[:, None] * steps[1:])[:, None, :].expand(-1, n, n)
    return torch.stack([starts, ends], dim=-1)


def span_labels(span: Tensor, duration: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The code's ``time_to_index``: the start and end clip ``[B]`` of the grid span of highest IoU with ``span``
    (seconds ``[B, 2]``); among equal IoUs the first in row-major order (smallest start, then smallest end)."""
    iou = evaluate.temporal_iou(grid_spans(duration, n), span[:, None, None])  # [B, n, n]; i > j gives 0
    best = iou.flatten(1).argmax(dim=1)
    return torch.div(best, n, rounding_mode="floor"), best % n


def highlight_labels(start: Tensor, end: Tensor, n: int, extend: float = 0.1) -> Tensor:
    """1 on the clips ``[s - k, e + k]`` (clipped to ``[0, n - 1]``), 0 elsewhere, ``k = round(extend (e - s + 1))``
    with Python's rounding (half to even, in float64 as the code computes it): ``[B, n]`` floats."""
    k = torch.round(extend * (end - start + 1).double()).long()
    clips = torch.arange(n, device=start.device)
    return ((clips >= (start - k).clamp(min=0)[:, None]) & (clips <= (end + k)[:, None])).float()


def highlight_loss(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """L_QGH: the BCE of sigmoid(logits) against ``labels``, weight 2 on the foreground and 1 on the background,
    summed over the real clips and divided by their number (the code's ``compute_loss``; from the logits, which is
    the same value without its clamping of log 0)."""
    weights = 1.0 + labels
    bce = F.binary_cross_entropy_with_logits(logits, labels, weights, reduction="none")
    m = mask.to(bce.dtype)
    return (bce * m).sum() / (m.sum() + 1e-12)


def vslnet_loss(model: VSLNet, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """``CE(start) + CE(end) + lambda * L_QGH``, each CE averaged over the batch."""
    out = model(batch)
    n = out.start.shape[1]
    s, e = span_labels(batch["span"], batch["duration"], n)
    ce = F.cross_entropy(out.start, s) + F.cross_entropy(out.end, e)
    qgh = highlight_loss(out.highlight, highlight_labels(s, e, n, model.c.extend), out.mask)
    return ce + model.c.highlight_lambda * qgh, {"ce": ce.item(), "qgh": qgh.item()}


# -- decoding and scoring ------------------------------------------------------------------------------------------


def span_logits(model: VSLNet) -> spans.SpanLogits:
    def logits(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        out = model(batch)
        return out.start, out.end

    return logits


def evaluate_split(model: VSLNet, split: grounding.GroundingSplit, predictions: Path | None = None) -> dict[str, float]:
    """Every span ranked by ``P = softmax(start) (x) softmax(end)`` (:mod:`methods.parts.spans`), scored."""
    c = model.c
    return spans.evaluate_split(span_logits(model), split, c.eval_batch_size, c.n_ranked, predictions)


def check_query_lengths(c: VSLNetConfig, data: grounding.GroundingData) -> None:
    """Fail before training if a query of any split is longer than the position table."""
    for split in (data.train, data.val, data.test):
        if c.query == "speech":
            longest = math.ceil(int(split.queries["mel_len"].max()) / c.mel_stride)
        else:
            longest = int(split.queries["words_len"].max())
        if max(longest, c.n_clips) > c.max_pos_len:
            raise ValueError(
                f"split {split.name}: a query of {longest} steps (or {c.n_clips} clips) does not fit the position "
                f"table of {c.max_pos_len}; run with --set max_pos_len={max(longest, c.n_clips)}"
            )


def run(ctx: RunContext) -> RunResult:
    """Train on train (fully supervised), select on val, test once."""
    c: VSLNetConfig = ctx.config
    data = grounding.load(ctx.data, ctx.cache_dir, ctx.device, c.n_clips)
    check_query_lengths(c, data)
    model = VSLNet(c, data.train.videos.shape[-1], data.word_vectors, data.vocab).to(ctx.device)
    ctx.log.log_params({"parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)})
    return fit_grounding(ctx, model, lambda batch: vslnet_loss(model, batch), data, c.train, c.select_on,
                         lambda split, path: evaluate_split(model, split, path))  # fmt: skip


register(
    MethodSpec(
        "vslnet",
        "VSLNet (log-mel)",
        ("ground",),
        "speech",
        "full",
        "VSLNet with log-mel features in place of word features (App. B.3): span predictor, QGH, fully supervised",
        run=run,
        config=vslnet_config,
        issue=14,
    )
)
register(
    MethodSpec(
        "vslnet-text",
        "VSLNet (gold text)",
        ("ground",),
        "gold-text",
        "full",
        "VSLNet on the gold transcript (word vectors + char CNN): a supervised reference, no paper row",
        run=run,
        config=lambda profile: vslnet_config(profile, query="gold-text"),
        issue=14,
    )
)
