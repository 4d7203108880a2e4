"""SCN: Semantic Completion Network (Lin et al., AAAI 2020), weakly supervised by reconstruction (SIL App. B.3).

Built from ``baselines.md`` §4, which read the released code (``ikuinen/semantic_completion_network``, ActivityNet
config; the paper's own equations could not be read there, so the code's terms are the reference). SIL runs it
only as a cascade on text ("reconstruction-based methods ... can't be applied to speech").

One query's way through the network (:class:`SCNNet`), the code's ``DualTransformer``: two post-LN decoders
(``decoder1``, ``decoder2``; 3 layers, d = 256, 4 heads, FFN 2d, dropout 0.1) whose self-attention is **always
causal**, frames included:

1. **proposal generation**: frames -> dropout -> linear (no position encoding); words (a learned start vector,
   then the word vectors) -> dropout -> linear + sinusoidal positions. ``decoder2`` encodes the words,
   ``decoder1`` runs over the frames with cross-attention to them; ``sigmoid(FC(h_t))`` scores one anchor per
   (end clip t, width k): ``[t + 1 - w_k, t + 1)`` in clips, ``w_k = N k / 8`` (k = 1..8), valid if it starts at
   or after 0 (708 anchors for N = 200, 232 for N = 64; :func:`anchors`);
2. **selection** of K = 3 proposals (:func:`select_proposals`): the best anchor, or during training a random one
   with probability ``0.5 exp(-updates / 2000)``; each later pick the same way among the anchors of IoU < tau = 0.65
   with the previous pick, that filter applied only while more than 2 anchors survive it;
3. **semantic completion**: each proposal is 16 frames taken by ``linspace`` over its projected frames, encoded
   by ``decoder1`` (no cross-attention); floor(L / 3) words are replaced by a learned mask vector, drawn without
   replacement with probability proportional to exp(2) for content words and exp(1) for the others
   (:func:`choose_masked`); ``decoder2`` over the masked words, with cross-attention to the proposal, predicts
   every word from its prefix (teacher forcing), and then the end of the sentence (:func:`completion_targets`),
   through a linear layer over the vocabulary and an end class;
4. **losses** (:func:`scn_loss`): L_rec = label-smoothed NLL (eps = 0.1) averaged over the words, then over B x K;
   **rank rewards** (:func:`rank_rewards`): the K proposals sorted by NLL get r = (0, 0.5, 1.0), the lowest NLL 1.0;
   ``L_prop = -mean_{b,k} r_k log_softmax_k(score_k)`` over the K selected sigmoid scores; L = L_rec + L_prop.

Inference: every valid anchor ranked by its score (the code keeps only the top-1; the suite's evaluator takes the
top-1 and the top-5 after NMS 0.45, which SIL's Table 9 reports for SCN).

Departures: no POS tagger, so "content word" means any word outside :data:`FUNCTION_WORDS`, a closed list of the
Penn tags the code weights 1 (determiners, pronouns, prepositions, conjunctions, modals); the 8000-word target
vocabulary is the most frequent training words as the code's, but a word outside it (or outside the grounding
vocabulary: an ASR OOV word) stays in the sentence as an unknown class instead of being dropped; the selection
IoU is the standard one on clip indices (the code adds 1 to inter and union); the random first pick is drawn
with torch's generator. Sizes: ``paper`` = the code's ActivityNet config (N = 200 clips, d = 256, Adam lr 4e-4, no
weight decay, 400 warm-up updates, batch 128, 19 epochs); ``small`` keeps SCN's learning rate and weight decay with
the suite's small loop, N = 64 clips (the resampling every other method uses, so the featurized splits are shared)
and d = 64 (FFN 2d; 3 layers per decoder as the code) for 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bench import config as cfg
from bench import evaluate
from bench.context import MethodSpec, RunContext, RunResult, register
from bench.data import grounding
from methods.parts import recipe, textquery
from methods.parts.encoders import WordEncoder, lengths_to_mask, sinusoid
from methods.parts.words import FUNCTION_WORDS

DESCRIPTION = "SCN: proposals scored by a causal Transformer, ranked by rewards of masked-word completion"
PAPER_TRAIN = cfg.TrainConfig(epochs=19, batch_size=128, lr=4e-4, warmup_updates=400, weight_decay=0.0)


@dataclass(frozen=True)
class SCNConfig:
    d: int = 256
    heads: int = 4
    layers: int = 3  # per decoder
    ffn: int = 512
    dropout: float = 0.1
    n_clips: int = 200  # max_num_frames, target_stride 1
    n_widths: int = 8  # len(prop_width)
    n_props: int = 3  # num_proposals
    tau: float = 0.65
    prop_frames: int = 16
    rewards: tuple[float, ...] = (0.0, 0.5, 1.0)
    random_p: float = 0.5
    random_decay: float = 2000.0  # random_p * exp(-updates / random_decay)
    smoothing: float = 0.1
    mask_every: int = 3  # floor(L / 3) words masked
    content_logit: float = 2.0
    function_logit: float = 1.0
    max_vocab: int = 8000
    max_words: int = 20
    select_on: str = "R1@0.5"
    eval_batch_size: int = 128
    train: cfg.TrainConfig = field(default_factory=lambda: PAPER_TRAIN)
    asr: Any = None  # methods.asr's configuration on the asr-scn row; None on the gold text


def scn_config(profile: str, **kw: Any) -> SCNConfig:
    """``paper``: the code's ActivityNet config; ``small``: N = 64, d = 64, the suite's small loop at SCN's lr 4e-4
    without weight decay; ``tiny``: CI smoke size."""
    cfg.check_profile(profile)
    if profile == "paper":
        return SCNConfig(**kw)
    train = dataclasses.replace(cfg.GROUNDING_TRAIN[profile], lr=PAPER_TRAIN.lr, weight_decay=PAPER_TRAIN.weight_decay)
    size = {
        "tiny": dict(d=32, heads=2, layers=1, ffn=64, n_clips=64),
        "small": dict(d=64, ffn=128, n_clips=64),
    }[profile]
    return SCNConfig(**{"train": train, **size, **kw})


def anchors(n: int, n_widths: int) -> tuple[Tensor, Tensor]:
    """SCN's anchors: for end clip t (exclusive end t + 1) and width ``w_k = n k // n_widths``, ``[t + 1 - w_k,
    t + 1)`` (the code's ``int(n * k / n_widths)``, equal for n = 200 and 64).

    Returns the valid ones' ``(start, end)`` in clips ``[A, 2]`` and their index in the flattened ``[n, n_widths]``
    score map (t-major, as the code's ``view(bsz, -1)``).
    """
    widths = torch.tensor([max(1, n * k // n_widths) for k in range(1, n_widths + 1)])
    end = torch.arange(1, n + 1)[:, None].expand(n, n_widths)
    spans = torch.stack([end - widths[None], end], dim=-1).reshape(-1, 2)
    index = torch.nonzero(spans[:, 0] >= 0)[:, 0]
    return spans[index], index


def select_proposals(scores: Tensor, iou: Tensor, k: int, tau: float, random_p: float = 0.0) -> Tensor:
    """K anchors per row ``[B, k]``: each pick the best surviving anchor (or, with probability ``random_p``, a uniform
    one of them); after a pick, the survivors with IoU >= ``tau`` to it are removed if more than 2 remain."""
    alive = torch.ones_like(scores, dtype=torch.bool)
    picks: list[Tensor] = []
    for j in range(k):
        if j:
            keep = alive & (iou[picks[-1]] < tau)
            alive = torch.where((keep.sum(1) > 2)[:, None], keep, alive)
        pick = scores.masked_fill(~alive, float("-inf")).argmax(1)
        if random_p > 0:
            uniform = torch.multinomial(alive.float(), 1).squeeze(1)
            pick = torch.where(torch.rand(pick.shape, device=pick.device) < random_p, uniform, pick)
        picks.append(pick)
    return torch.stack(picks, 1)


def proposal_frames(frames: Tensor, spans: Tensor, n: int) -> Tensor:
    """``n`` frames per proposal at the code's ``linspace(0, w - 1, n)`` (truncated; in integers here, so no float
    rounding moves a frame): ``[B, K, 2]`` spans -> ``[B * K, n, d]``."""
    b, k = spans.shape[:2]
    start, width = spans[..., :1], spans[..., 1:] - spans[..., :1]
    pos = start + torch.arange(n, device=spans.device) * (width - 1) // (n - 1)  # [B, K, n]
    out = frames.gather(1, pos.reshape(b, k * n, 1).expand(-1, -1, frames.shape[-1]))
    return out.reshape(b * k, n, frames.shape[-1])


def choose_masked(logits: Tensor, length: Tensor, every: int, gumbel: Tensor | None = None) -> Tensor:
    """floor(length / every) word positions per row ``[B, L]`` (bool), drawn without replacement with probability
    proportional to exp(logit): the Gumbel top-k trick, which equals sequential sampling without replacement."""
    valid = lengths_to_mask(length, logits.shape[1])
    if gumbel is None:
        gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-20, 1.0)))
    keys = (logits + gumbel).masked_fill(~valid, float("-inf"))
    rank = keys.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    return (rank < (length // every)[:, None]) & valid


def smoothed_nll(logits: Tensor, target: Tensor, mask: Tensor, eps: float) -> Tensor:
    """The code's ``cal_nll_loss``: ``(1 - eps) nll + eps / C * sum_c -log p_c``, averaged over the real words of
    each row ``[R]``."""
    logp = F.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, target[..., None]).squeeze(-1)
    loss = (1 - eps) * nll + eps / logits.shape[-1] * -logp.sum(-1)
    m = mask.to(loss.dtype)
    return (loss * m).sum(-1) / m.sum(-1).clamp_min(1)


def rank_rewards(nll: Tensor, rewards: tuple[float, ...]) -> Tensor:
    """Each proposal's reward by the rank of its NLL, highest NLL first: ``rewards[rank]`` ``[B, K]``."""
    rank = nll.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    return torch.tensor(rewards, dtype=nll.dtype, device=nll.device)[rank]


def proposal_loss(chosen: Tensor, nll: Tensor, rewards: tuple[float, ...]) -> Tensor:
    """L_prop = ``-mean_{b,k} r_k log_softmax_k(chosen)``: the softmax runs over the K selected sigmoid scores, the
    rewards (:func:`rank_rewards`, constants) over their NLL ranks."""
    return -(rank_rewards(nll.detach(), rewards) * F.log_softmax(chosen, dim=-1)).mean()


def target_vocabulary(words: Tensor, length: Tensor, n_rows: int, max_vocab: int) -> Tensor:
    """Row -> target class ``[n_rows]``: the ``max_vocab`` most frequent training words get 1.., the rest 0."""
    counts = torch.bincount(words[lengths_to_mask(length, words.shape[1])].cpu(), minlength=n_rows)
    counts[0] = 0
    order = counts.argsort(descending=True, stable=True)[:max_vocab]
    order = order[counts[order] > 0]
    classes = torch.zeros(n_rows, dtype=torch.long)
    classes[order] = torch.arange(1, len(order) + 1)
    return classes


class DecoderLayer(nn.Module):
    """The code's post-LN ``TransformerDecoderLayer``: causal self-attention, optional cross-attention, ReLU FFN."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, pad: Tensor | None, memory: Tensor | None, memory_pad: Tensor | None) -> Tensor:
        causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).triu(1)
        y = self.self_attn(x, x, x, key_padding_mask=pad, attn_mask=causal, need_weights=False)[0]
        x = self.norm1(x + self.dropout(y))
        if memory is not None:
            y = self.cross_attn(x, memory, memory, key_padding_mask=memory_pad, need_weights=False)[0]
            x = self.norm2(x + self.dropout(y))
        return self.norm3(x + self.dropout(self.fc2(F.relu(self.fc1(x)))))


class Decoder(nn.Module):
    def __init__(self, c: SCNConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(c.d, c.heads, c.ffn, c.dropout) for _ in range(c.layers))

    def forward(self, x: Tensor, pad: Tensor | None = None, memory: Tensor | None = None,
                memory_pad: Tensor | None = None) -> Tensor:  # fmt: skip
        for layer in self.layers:
            x = layer(x, pad, memory, memory_pad)
        return x


class SCNNet(nn.Module):
    """SCN's proposal generator and semantic-completion decoder; ``forward`` scores every valid anchor ``[B, A]``."""

    def __init__(self, c: SCNConfig, video_dim: int, word_vectors: Tensor, vocab: list[str],
                 train_words: Tensor, train_len: Tensor) -> None:  # fmt: skip
        super().__init__()
        self.c = c
        self.frame_dropout = nn.Dropout(c.dropout)
        self.frame_fc = nn.Linear(video_dim, c.d)
        self.words = WordEncoder(word_vectors, c.d)  # fixed vectors; its linear map is the code's word_fc
        self.word_dropout = nn.Dropout(c.dropout)
        self.start_vec = nn.Parameter(torch.zeros(word_vectors.shape[1]))
        self.mask_vec = nn.Parameter(torch.zeros(word_vectors.shape[1]))
        self.decoder1, self.decoder2 = Decoder(c), Decoder(c)
        self.fc_props = nn.Linear(c.d, c.n_widths)
        classes = target_vocabulary(train_words, train_len, word_vectors.shape[0], c.max_vocab)
        self.end_class = int(classes.max()) + 1  # the end of the sentence, predicted after its last word
        self.fc_comp = nn.Linear(c.d, self.end_class + 1)
        self.register_buffer("target_class", classes, persistent=False)
        logit = [c.function_logit] + [c.function_logit if w in FUNCTION_WORDS else c.content_logit for w in vocab]
        self.register_buffer("word_logit", torch.tensor(logit), persistent=False)
        spans, index = anchors(c.n_clips, c.n_widths)
        self.register_buffer("anchor_spans", spans, persistent=False)
        self.register_buffer("anchor_index", index, persistent=False)
        iou = evaluate.temporal_iou(spans[:, None].float(), spans[None].float())
        self.register_buffer("anchor_iou", iou, persistent=False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))  # drives the random first pick; resumed

    def frames(self, video: Tensor) -> Tensor:
        return self.frame_fc(self.frame_dropout(video))

    def embed_words(self, words: Tensor) -> Tensor:
        """``[start ; words]`` -> dropout -> linear: ``[B, L + 1, d]`` (positions added by the caller)."""
        e = self.words.embed(words)
        e = torch.cat([self.start_vec.expand(e.shape[0], 1, -1), e], dim=1)
        return self.words.project(self.word_dropout(e))

    def anchor_scores(self, frames: Tensor, words: Tensor, length: Tensor) -> Tensor:
        """decoder2 encodes the words, decoder1 runs over the frames attending to them: sigmoid scores ``[B, A]``."""
        pad = ~lengths_to_mask(length + 1, words.shape[1])
        h = self.decoder1(frames, None, self.decoder2(words, pad), pad)
        return torch.sigmoid(self.fc_props(h)).flatten(1)[:, self.anchor_index]

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        words, length = textquery.clip_words(batch, self.c.max_words)
        w = self.embed_words(words)
        return self.anchor_scores(self.frames(batch["video"]), w + sinusoid(w.shape[1], w.shape[2], w.device), length)


def completion_targets(classes: Tensor, length: Tensor, end: int) -> Tensor:
    """The words' classes ``[B, L]`` followed by the end class at each sentence's own end ``[B, L + 1]`` (padding 0).

    The original code masks the slot after the last word with target 0, so it learns an end token for every row but
    the longest of each batch; here every sentence predicts its end (issue 21).
    """
    return F.pad(classes, (0, 1)).scatter(1, length[:, None], end)


def scn_loss(model: SCNNet, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Score anchors, select K, complete the masked sentence from each, reward the proposals by their NLL rank."""
    c = model.c
    words, length = textquery.clip_words(batch, c.max_words)
    frames = model.frames(batch["video"])
    w = model.embed_words(words)
    pos = sinusoid(w.shape[1], w.shape[2], w.device)
    scores = model.anchor_scores(frames, w + pos, length)
    random_p = c.random_p * math.exp(-int(model.updates) / c.random_decay) if model.training else 0.0
    model.updates += int(model.training)
    picks = select_proposals(scores.detach(), model.anchor_iou, c.n_props, c.tau, random_p)
    props = model.decoder1(proposal_frames(frames, model.anchor_spans[picks], c.prop_frames))
    masked = choose_masked(model.word_logit[words], length, c.mask_every)  # word i sits at position i + 1 of w
    token = model.words.project(model.mask_vec)
    w = torch.where(F.pad(masked, (1, 0))[..., None], token, w) + pos
    k = c.n_props
    mask = lengths_to_mask(length + 1, words.shape[1] + 1)  # the words and the end after them
    h = model.decoder2(w.repeat_interleave(k, 0), ~mask.repeat_interleave(k, 0), props)
    target = completion_targets(model.target_class[words], length, model.end_class).repeat_interleave(k, 0)
    nll = smoothed_nll(model.fc_comp(h), target, mask.repeat_interleave(k, 0), c.smoothing).view(-1, k)
    prop = proposal_loss(scores.gather(1, picks), nll, c.rewards)
    rec = nll.mean()
    return rec + prop, {"rec": rec.item(), "prop": prop.item(), "random_p": random_p}


@torch.no_grad()
def rank_split(model: SCNNet, split: grounding.GroundingSplit, batch_size: int) -> tuple[Tensor, Tensor]:
    """Every query's valid anchors ranked by score: spans ``[Q, A, 2]`` (seconds) and scores ``[Q, A]``."""
    scores = torch.cat([model(b) for b in split.batches(batch_size)])
    order = scores.argsort(dim=1, descending=True, stable=True)
    fractions = model.anchor_spans.to(scores.dtype) / model.c.n_clips
    spans = fractions[order] * split.queries["duration"][:, None, None]
    return spans, scores.gather(1, order)


def evaluate_split(model: SCNNet, split: grounding.GroundingSplit, path: Path | None) -> dict[str, float]:
    """The one evaluator on the ranked anchors; optionally also writes the predictions file."""
    spans, scores = rank_split(model, split, model.c.eval_batch_size)
    return recipe.score_ranked(split, spans, scores, path)


def run(ctx: RunContext, prepare: recipe.Prepare | None = None) -> RunResult:
    """Train on train, select on val, test once; ``prepare`` gives the cascade's ASR transcripts for ``asr-scn``
    (``methods/cascade.py``)."""
    c: SCNConfig = ctx.config

    def build(data: grounding.GroundingData) -> SCNNet:
        q = data.train.queries
        return SCNNet(c, data.train.videos.shape[-1], data.word_vectors, data.vocab, q["words"], q["words_len"])

    return recipe.ground(ctx, c, build, scn_loss, evaluate_split, prepare)


register(MethodSpec("scn-text", "SCN (gold text)", ("ground",), "gold-text", "weak",
                    f"{DESCRIPTION}; on the gold transcript", run=run, config=scn_config, issue=6))  # fmt: skip
