"""2D-TAN on the gold transcript (Zhang et al., AAAI 2020): the fully supervised proposal-map model Base builds on.

A reference row, not a row of the SIL paper: it is not under test, and it calibrates the synthetic benchmark from
above (issue 14: a supervised model that sees the words must beat the blind prior clearly, or the world measures
nothing). One query's way through the network (:meth:`TANNet.forward`), after ``shared/research/baselines.md`` §1:

1. clips: each clip feature L2-normalised (2D-TAN's ``NORMALIZE``), a linear map to d and a ReLU (its
   ``FrameAvgPool``: a 1x1 convolution + ReLU; the average pooling to N clips is the harness's resampling);
2. the sparse 2D map: every valid cell the max over its clips (``SparsePropMaxPool``, :mod:`methods.parts.proposals`),
   laid out on the dense ``N x N`` grid, zeros elsewhere;
3. the sentence: fixed word vectors -> an LSTM (3 layers in the paper's configuration) -> the hidden state at the
   last word -> a linear map; **Hadamard fusion**: ``F.normalize(t * Conv1x1(map)) * mask`` (``BaseFusion``);
4. the map convolutions: ``L`` layers of ``k x k`` convolutions, ReLU and 2D-TAN's masked re-weighting with a mask
   that spreads one layer at a time (``get_padded_mask_and_weight``); the first layer is padded by
   ``L (k - 1) / 2`` and the others not, so the map shrinks back to ``N x N`` (2D-TAN's padding ``[16, 0, 0, 0]``
   for four 9x9 layers);
5. a 1x1 convolution gives one logit per cell; every valid cell of the sparse map is a candidate (2D-TAN scores them
   all, not SIL's 153).

Loss: the binary cross-entropy between each valid cell's score and its scaled IoU with the annotated moment
(``bce_rescale_loss``, IoU 0.5 -> 0, 1.0 -> 1), averaged over the valid cells. Inference: cells ranked by score; the
evaluator applies NMS for R@5. Differences from the released code: the shared training loop (Adam with warm-up and
inverse square root, selection on val_1; 2D-TAN uses Adam at 1e-4 with a plateau schedule and selects on test),
the harness's clip resampling, and the small profile's sizes (d = 64, fewer and smaller map convolutions, N = 32
clips) so that it trains on 2 CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bench import config as cfg
from bench import evaluate
from bench.context import MethodSpec, RunContext, RunResult, register
from bench.data import grounding
from methods.parts import losses, proposals, recipe


@dataclass(frozen=True)
class TANConfig:
    d: int = 512  # 2D-TAN's ActivityNet configuration (hidden 512)
    n_clips: int = 64
    lstm_layers: int = 3
    conv_layers: int = 4  # "K9L4"
    kernel: int = 9
    select_on: str = "R1@0.5"
    eval_batch_size: int = 128
    train: cfg.TrainConfig = field(default_factory=lambda: cfg.GROUNDING_TRAIN["paper"])


def tan_config(profile: str, **kw) -> TANConfig:
    """``paper``: 2D-TAN's ActivityNet sizes; ``small``: d = 64, two 5x5 map layers; ``tiny``: CI smoke size."""
    cfg.check_profile(profile)
    size = {
        "tiny": dict(d=16, lstm_layers=1, conv_layers=1, kernel=3),
        "small": dict(d=64, lstm_layers=2, conv_layers=2, kernel=5),
        "paper": {},
    }
    return TANConfig(**{"train": cfg.GROUNDING_TRAIN[profile], "n_clips": cfg.GROUNDING_CLIPS[profile],
                        **size[profile], **kw})  # fmt: skip


class MaskedMapConv(nn.Module):
    """2D-TAN's ``MapConv``: ``x = relu(conv(x)) * w`` per layer, ``w`` = 1 / (valid cells in the window) where the
    window has any, else 0; the valid set grows to every position whose window held a valid cell."""

    def __init__(self, d: int, layers: int, kernel: int, mask: Tensor) -> None:
        super().__init__()
        pads = [layers * (kernel - 1) // 2] + [0] * (layers - 1)
        self.convs = nn.ModuleList(nn.Conv2d(d, d, kernel, padding=p) for p in pads)
        m = mask[None, None].float()
        for i, pad in enumerate(pads):
            count = torch.round(F.conv2d(m, torch.ones(1, 1, kernel, kernel), padding=pad))
            weight = torch.where(count > 0, 1.0 / count.clamp_min(1.0), 0.0)
            self.register_buffer(f"weight{i}", weight, persistent=False)
            m = (weight > 0).float()

    def forward(self, x: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = torch.relu(conv(x)) * getattr(self, f"weight{i}")
        return x


class TANNet(nn.Module):
    """2D-TAN on a text query; ``forward`` gives one logit per valid cell of the sparse map ``[B, n_cells]``."""

    def __init__(self, c: TANConfig, video_dim: int, word_vectors: Tensor) -> None:
        super().__init__()
        self.c = c
        n = c.n_clips
        self.clips = nn.Linear(video_dim, c.d)
        cells = proposals.valid_cells(n)
        self.register_buffer("cells", cells, persistent=False)
        self.register_buffer("flat", cells[:, 0] * n + cells[:, 1], persistent=False)  # cell -> position in N x N
        mask = torch.zeros(n, n, dtype=torch.bool)
        mask[cells[:, 0], cells[:, 1]] = True
        self.register_buffer("mask", mask, persistent=False)
        self.map = proposals.CellMax(cells, n)
        self.embed = nn.Embedding.from_pretrained(word_vectors, freeze=True, padding_idx=0)
        self.lstm = nn.LSTM(word_vectors.shape[1], c.d, c.lstm_layers, batch_first=True)
        self.sentence = nn.Linear(c.d, c.d)
        self.map_fc = nn.Conv2d(c.d, c.d, 1)
        self.map_conv = MaskedMapConv(c.d, c.conv_layers, c.kernel, mask)
        self.head = nn.Conv2d(c.d, 1, 1)

    def dense_map(self, video: Tensor) -> Tensor:
        """Clip features ``[B, N, D]`` -> the sparse map on the dense grid ``[B, d, N, N]`` (zeros off the cells)."""
        x = torch.relu(self.clips(F.normalize(video, dim=-1)))
        cells = self.map(x.transpose(0, 1).contiguous())  # [n_cells, B, d]
        b, n = x.shape[0], self.c.n_clips
        dense = cells.new_zeros(n * n, b, self.c.d).index_copy(0, self.flat, cells)
        return dense.permute(1, 2, 0).reshape(b, self.c.d, n, n)

    def encode_query(self, words: Tensor, length: Tensor) -> Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(words), length.cpu(), batch_first=True,
                                                   enforce_sorted=False)  # fmt: skip
        _, (h, _) = self.lstm(packed)
        return self.sentence(h[-1])  # the last layer's state after each sentence's last word

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        t = self.encode_query(batch["words"], batch["words_len"])
        fused = F.normalize(t[:, :, None, None] * self.map_fc(self.dense_map(batch["video"])), dim=1) * self.mask
        logits = self.head(self.map_conv(fused))[:, 0]  # [B, N, N]
        return logits.flatten(1)[:, self.flat]


def tan_loss(model: TANNet, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """2D-TAN's ``bce_rescale_loss`` over the valid cells."""
    logits = model(batch)
    spans = proposals.cell_spans(batch["duration"], model.cells, model.c.n_clips)
    bce = losses.scaled_iou_bce(logits, evaluate.temporal_iou(spans, batch["span"][:, None]))
    return bce, {"bce": bce.item()}


@torch.no_grad()
def evaluate_split(model: TANNet, split: grounding.GroundingSplit, path: Path | None) -> dict[str, float]:
    """Every valid cell ranked by score, through the one evaluator."""
    scores = torch.cat([torch.sigmoid(model(b)) for b in split.batches(model.c.eval_batch_size)])
    order = scores.argsort(dim=1, descending=True, stable=True)
    spans = proposals.cell_spans(split.queries["duration"], model.cells, model.c.n_clips)
    spans = spans.gather(1, order[..., None].expand(-1, -1, 2))
    return recipe.score_ranked(split, spans, scores.gather(1, order), path)


def run(ctx: RunContext) -> RunResult:
    c: TANConfig = ctx.config

    def build(data: grounding.GroundingData) -> TANNet:
        return TANNet(c, data.train.videos.shape[-1], data.word_vectors)

    return recipe.ground(ctx, c, build, tan_loss, evaluate_split)


register(MethodSpec("2dtan-text", "2D-TAN (gold text)", ("ground",), "gold-text", "full",
                    "reference, not a paper row: 2D-TAN's proposal map with Hadamard fusion and scaled-IoU BCE on the "
                    "gold transcript", run=run, config=tan_config, issue=14))  # fmt: skip
