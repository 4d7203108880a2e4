"""Encoders shared by the grounding methods: video (QANet-style), speech (conv front-end + Transformer), words, and
a frozen encoder's features.

Each returns a sequence ``[B, T, d]``; the query encoders also return a boolean mask ``[B, T]`` (True = real).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def lengths_to_mask(lengths: Tensor, width: int) -> Tensor:
    """``[B]`` lengths -> ``[B, width]`` boolean mask, True on the first ``lengths[b]`` steps."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def sinusoid(length: int, d: int, device: torch.device | None = None) -> Tensor:
    """The Transformer's fixed sinusoidal position encoding ``[length, d]``."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return pe


class ConvBlock(nn.Module):
    """QANet's depthwise-separable convolution: LayerNorm -> depthwise conv -> pointwise conv -> ReLU, residual."""

    def __init__(self, d: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.depthwise = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.pointwise = nn.Conv1d(d, d, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.pointwise(self.depthwise(self.norm(x).transpose(1, 2))).transpose(1, 2)
        return x + self.dropout(torch.relu(y))


class VideoEncoder(nn.Module):
    """App. A.1: a linear projection of the clip features to d, then a QANet encoder block over the N clips.

    The block follows VSLNet's ``FeatureEncoder`` (which the original SIL code uses): a learned position
    embedding, ``n_conv`` depthwise-separable convolution layers, then one pre-LN self-attention layer with its
    feed-forward network.
    """

    def __init__(self, d_in: int, d: int, n_clips: int, n_conv: int = 4, kernel: int = 7, heads: int = 4,
                 dropout: float = 0.1) -> None:  # fmt: skip
        super().__init__()
        self.project = nn.Linear(d_in, d)
        self.position = nn.Parameter(torch.zeros(1, n_clips, d))
        self.convs = nn.Sequential(*[ConvBlock(d, kernel, dropout) for _ in range(n_conv)])
        self.attention = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout, batch_first=True, norm_first=True)

    def forward(self, clips: Tensor) -> Tensor:
        x = self.project(clips) + self.position
        return self.attention(self.convs(x))


class Conv2dSubsampling(nn.Module):
    """Two 3x3 stride-2 convolutions over (time, mel), each with LayerNorm and GELU, then a linear map to d."""

    def __init__(self, n_mels: int, channels: int, d: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2)
        self.norm1, self.norm2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
        freq = ((n_mels - 3) // 2 + 1 - 3) // 2 + 1
        self.project = nn.Linear(channels * freq, d)

    @staticmethod
    def out_lengths(lengths: Tensor) -> Tensor:
        return (((lengths - 3) // 2 + 1) - 3) // 2 + 1

    def forward(self, mel: Tensor) -> Tensor:
        x = mel[:, None]  # [B, 1, T, F]
        for conv, norm in ((self.conv1, self.norm1), (self.conv2, self.norm2)):
            x = nn.functional.gelu(norm(conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        b, c, t, f = x.shape
        return self.project(x.permute(0, 2, 1, 3).reshape(b, t, c * f))


class SpeechEncoder(nn.Module):
    """§3.2 / App. B.3 in its Base form: conv front-end over the 80-d log-mel, then ``layers`` Transformer layers.

    The Base model uses 2 layers "for stability" and no I&F (App. A.1, B.3). Utterances shorter than 7 frames
    (0.14 s) leave no step after subsampling and raise.
    """

    def __init__(self, d: int, n_mels: int = 80, channels: int = 64, layers: int = 2, heads: int = 4,
                 dropout: float = 0.1) -> None:  # fmt: skip
        super().__init__()
        self.subsample = Conv2dSubsampling(n_mels, channels, d)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def forward(self, mel: Tensor, mel_len: Tensor) -> tuple[Tensor, Tensor]:
        x = self.subsample(mel)
        lengths = Conv2dSubsampling.out_lengths(mel_len).clamp(max=x.shape[1])
        if int(lengths.min()) < 1:
            raise ValueError("an utterance is shorter than 7 log-mel frames (0.14 s); drop it from the data")
        mask = lengths_to_mask(lengths, x.shape[1])
        x = x + sinusoid(x.shape[1], x.shape[2], x.device)
        return self.norm(self.transformer(x, src_key_padding_mask=~mask)), mask


class WordEncoder(nn.Module):
    """The text query: fixed pre-trained word vectors (GloVe format), projected to d (§4.2; 2D-TAN's OOV rule)."""

    def __init__(self, word_vectors: Tensor, d: int) -> None:
        super().__init__()
        self.embed = nn.Embedding.from_pretrained(word_vectors, freeze=True, padding_idx=0)
        self.project = nn.Linear(word_vectors.shape[1], d)

    def forward(self, words: Tensor, words_len: Tensor) -> tuple[Tensor, Tensor]:
        return self.project(self.embed(words)), lengths_to_mask(words_len, words.shape[1])


class FeatureEncoder(nn.Module):
    """A frozen pre-trained speech encoder's features as a query: a trainable FC layer to d (App. B.3's recipe for
    pre-trained encoders, "another trainable fully-connected layer with a Bi-GRU"; the Bi-GRU is the caller's). The
    speech counterpart of :class:`WordEncoder`, whose fixed word vectors the frozen features replace."""

    def __init__(self, d_in: int, d: int) -> None:
        super().__init__()
        self.project = nn.Linear(d_in, d)

    def forward(self, feats: Tensor, feats_len: Tensor) -> tuple[Tensor, Tensor]:
        return self.project(feats), lengths_to_mask(feats_len, feats.shape[1])


def query_encoders(query: str, d: int, word_vectors: Tensor | None, query_dim: int | None
                   ) -> tuple[WordEncoder | None, FeatureEncoder | None]:  # fmt: skip
    """A text backbone's query encoder: ``(WordEncoder, None)`` for words, ``(None, FeatureEncoder)`` for a frozen
    speech encoder's features (``query == "features"``: ``batch["sem"]`` of width ``query_dim``)."""
    if query == "features":
        if query_dim is None:
            raise ValueError("a features query needs its width (query_dim)")
        return None, FeatureEncoder(query_dim, d)
    if word_vectors is None:
        raise ValueError("a text query needs word vectors")
    return WordEncoder(word_vectors, d), None


class BiGRU(nn.Module):
    """A bidirectional GRU whose two directions together give d features (d/2 each), run on packed sequences."""

    def __init__(self, d_in: int, d: int) -> None:
        super().__init__()
        if d % 2:
            raise ValueError(f"BiGRU output size must be even, got {d}")
        self.gru = nn.GRU(d_in, d // 2, batch_first=True, bidirectional=True)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            return self.gru(x)[0]
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """The mean of ``x [B, L, d]`` over the steps where ``mask [B, L]`` is True (a row with none gives zeros)."""
    m = mask[..., None].to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)
