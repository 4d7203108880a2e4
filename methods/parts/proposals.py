"""The 2D-TAN sparse proposal map (Zhang et al. 2020) as SIL's Base uses it (App. A.3).

A video of ``N`` clips has a proposal for every (start clip ``s``, end clip ``e``), ``e`` inclusive; its span in
seconds is ``[s * D / N, (e + 1) * D / N]``. 2D-TAN's ``SparsePropMaxPool`` with scale layers ``[16, 8, 8]``
fills only some cells of the ``N x N`` map: at layer ``i`` of a scale with stride ``sigma`` and accumulated
offset ``A`` the starts are ``range(0, N - A - i * sigma, sigma)`` and the ends ``s + A + i * sigma``, with
``A = 0, 17, 35`` for the three scales (``shared/research/sil-original.md`` §3.14). For N = 64 that is
**1104 valid cells**: every start for lengths 1..16, even starts for lengths 18, 20, ..., 32, and starts
divisible by 4 for lengths 36, 40, ..., 64. Each cell holds the max over its clips (``max(x[s..e])``).

Only **153 candidates** are scored (``baselines.md`` §3): lengths 8 and 16 at stride 1, 24 and 32 at stride 2,
48, 56 and 64 at stride 4 (57 + 49 + 21 + 17 + 5 + 3 + 1).

Other clip counts ``N`` (a multiple of 8; the small profile resamples videos to 32 clips to cut the cost of an
update, issue 15) scale the same design: scales of ``N/4``, ``N/8`` and ``N/8`` layers at strides 1, 2, 4, with
offsets ``0``, ``N/4 + 1`` and ``N/2 + 3``, and candidates at the same fractions of the video, lengths ``N/8, N/4``
(stride 1), ``3N/8, N/2`` (stride 2) and ``3N/4, 7N/8, N`` (stride 4). N = 32 gives 280 valid cells and 80
candidates, with the same candidate lengths as fractions of the video and starts on a grid half as fine.

:class:`SparseMapConv` is the map convolution of A.3 computed only where it is read: a ``k x k`` convolution
over the map, evaluated at the 153 candidate cells by gathering each one's ``k x k`` neighbourhood of valid
cells (invalid or outside cells are zero, as in the dense map) and multiplying by the kernel. It equals
``torch.nn.Conv2d`` on the dense map read at the candidates (tested), at about 1/27 of the cost for N = 64,
k = 5, which is what makes the Base network trainable on a CPU. 2D-TAN's masked re-weighting follows:
the ReLU output is divided by the number of valid cells in the window (``get_padded_mask_and_weight``).

:class:`ProposalScorer` is the whole of A.3 (map, dropout, convolution, FC) as the grounding networks run it. Its
fast path (issue 15) computes only the cells that the convolution reads (503 of the 1104 for a 3 x 3 kernel, 651
for 5 x 5), each cell's max from a sparse table of maxima over power-of-two windows (``max(x[s..e]) =
max(T_j[s], T_j[e - 2^j + 1])`` with ``2^j <= e - s + 1``: six elementwise maxima build the table, two gathers read
a cell), in a clips-first layout ``[N, B, C]`` where every gather moves whole ``B x C`` blocks. It gives the values
and gradients of the straightforward path (:class:`ProposalMap` over every valid cell, dropout over all of them,
:class:`SparseMapConv`), which ``reference = True`` runs for the tests and the speed benchmark. Dropout is drawn
on the cells read only; cells never read cannot change the output, so the distribution is the same.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

N_CLIPS = 64
CANDIDATE_FRACTIONS = (1 / 8, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 7 / 8, 1)  # the scored lengths, as shares of the N clips


def scales(n: int) -> tuple[tuple[int, int, int], ...]:
    """2D-TAN's scales for ``n`` clips as ``(layers, stride, offset A)``: ``((16, 1, 0), (8, 2, 17), (8, 4, 35))``
    for n = 64 (``NUM_SCALE_LAYERS [16, 8, 8]``)."""
    if n < 8 or n % 8:
        raise ValueError(f"the sparse map needs a clip count that is a multiple of 8, got {n}")
    return ((n // 4, 1, 0), (n // 8, 2, n // 4 + 1), (n // 8, 4, n // 2 + 3))


@functools.lru_cache(maxsize=8)
def _cells(n: int) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    cells = [
        (s, s + offset + i * stride)
        for layers, stride, offset in scales(n)
        for i in range(layers)
        for s in range(0, n - offset - i * stride, stride)
    ]
    lengths = {round(f * n) for f in CANDIDATE_FRACTIONS}
    return tuple(cells), tuple(c for c in cells if c[1] - c[0] + 1 in lengths)


def valid_cells(n: int = N_CLIPS) -> Tensor:
    """The valid (start, end-inclusive) clip pairs of the sparse map, ``[n_cells, 2]`` int64, layer by layer."""
    return torch.tensor(_cells(n)[0], dtype=torch.long).reshape(-1, 2)


def candidates(n: int = N_CLIPS) -> Tensor:
    """The scored candidates, ``[n_cand, 2]`` int64 (start, end inclusive): 153 for N = 64."""
    return torch.tensor(_cells(n)[1], dtype=torch.long).reshape(-1, 2)


def candidate_spans(duration: Tensor, n: int = N_CLIPS) -> Tensor:
    """Every candidate's span in seconds, ``[Q, n_cand, 2]``: ``[s * D / n, (e + 1) * D / n]``."""
    return cell_spans(duration, candidates(n), n)


def cell_spans(duration: Tensor, cells: Tensor, n: int = N_CLIPS) -> Tensor:
    """The spans in seconds of (start, end inclusive) cells of an ``n``-clip map, ``[Q, n_cells, 2]``."""
    cells = cells.to(duration.device, duration.dtype)
    bounds = torch.stack([cells[:, 0], cells[:, 1] + 1], dim=1) / n  # [n_cells, 2] as fractions
    return bounds[None] * duration[:, None, None]


class ProposalMap(nn.Module):
    """Clip features ``[B, N, C]`` -> the valid cells' features ``[B, n_cells, C]``, each the max over its clips.

    Computed as a running max (``y_L[s] = max(y_{L-1}[s], x[s + L - 1])``), reading the valid starts of each
    valid length: one elementwise max per length instead of 2D-TAN's pooling cascade, with the same values.
    """

    def __init__(self, n: int = N_CLIPS) -> None:
        super().__init__()
        self.n = n
        cells = valid_cells(n)
        lengths = cells[:, 1] - cells[:, 0] + 1
        self.lengths = sorted(set(lengths.tolist()))
        # Per valid length, the starts in the order of ``valid_cells`` (cells are grouped by length).
        self.starts = {L: cells[lengths == L, 0].tolist() for L in self.lengths}
        self.register_buffer(
            "order",
            torch.argsort(torch.cat([torch.nonzero(lengths == L)[:, 0] for L in self.lengths])),
            persistent=False,
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.n:
            raise ValueError(f"ProposalMap expects {self.n} clips, got {x.shape[1]}")
        parts, y = [], x
        for L in range(1, self.n + 1):
            if L > 1:
                y = torch.maximum(y[:, :-1], x[:, L - 1 :])
            if L in self.starts:
                parts.append(y[:, self.starts[L]])
        return torch.cat(parts, dim=1)[:, self.order]


class SparseMapConv(nn.Module):
    """A ``k x k`` map convolution + ReLU + 2D-TAN's masked re-weighting, evaluated at the candidate cells.

    Input: valid-cell features ``[B, n_cells, C_in]`` (the order of :func:`valid_cells`); output: candidate
    features ``[B, n_cand, C_out]``. ``weight`` has ``nn.Conv2d``'s layout ``[C_out, C_in, k, k]`` over the map
    whose rows are starts and columns are ends.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 5, n: int = N_CLIPS) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd (centred), got {kernel}")
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)  # holds the parameters, in Conv2d's layout
        cells = valid_cells(n)
        where = torch.full((n, n), len(cells), dtype=torch.long)  # index of each valid cell; n_cells = "zero"
        where[cells[:, 0], cells[:, 1]] = torch.arange(len(cells))
        self.n_cells = len(cells)
        diagonal = torch.arange(n)[:, None].expand(n, 2)  # the single-clip cells (i, i), read by clip-level scoring
        for name, read in (("", candidates(n)), ("clip_", diagonal)):
            idx = _neighbourhoods(where, read, kernel, n, len(cells))
            self.register_buffer(f"{name}neighbours", idx, persistent=False)
            count = (idx < len(cells)).sum(dim=1).float()  # >= 1: the cell itself is valid
            self.register_buffer(f"{name}scale", 1.0 / count, persistent=False)

    def forward(self, cells: Tensor, at: str = "candidates") -> Tensor:
        """The convolution read at the candidates ``[B, n_cand, C_out]``, or at ``at="clips"``: the N single-clip
        cells ``[B, N, C_out]`` (SIL's clip-level scores, §3.4: the proposal scorer with clip features as input)."""
        neighbours, scale = (self.neighbours, self.scale) if at == "candidates" else (self.clip_neighbours,
                                                                                    self.clip_scale)  # fmt: skip
        b, n_cells, c = cells.shape
        padded = torch.cat([cells, cells.new_zeros(b, 1, c)], dim=1)  # the "zero" cell at index n_cells
        nb = padded[:, neighbours]  # [B, n_read, k*k, C_in]
        w = self.conv.weight  # [C_out, C_in, k, k] -> [(k*k) * C_in, C_out] matching nb's (k*k, C_in) order
        w = w.permute(2, 3, 1, 0).reshape(-1, w.shape[0])
        out = nb.reshape(b, nb.shape[1], -1) @ w + self.conv.bias
        return torch.relu(out) * scale[None, :, None]


def _neighbourhoods(where: Tensor, read: Tensor, kernel: int, n: int, zero: int) -> Tensor:
    """For each cell to read, the indices of its ``k x k`` window's valid cells (``zero`` = outside or invalid)."""
    r = kernel // 2
    offsets = torch.arange(-r, r + 1)
    rows = read[:, 0, None, None] + offsets[None, :, None]  # [n_read, k, 1]
    cols = read[:, 1, None, None] + offsets[None, None, :]  # [n_read, 1, k]
    inside = (rows >= 0) & (rows < n) & (cols >= 0) & (cols < n)
    idx = torch.where(inside, where[rows.clamp(0, n - 1), cols.clamp(0, n - 1)], torch.tensor(zero))
    return idx.reshape(len(read), kernel * kernel)


class CellMax(nn.Module):
    """The max over each given cell's clips, ``[N, B, C]`` (clips first) -> ``[n_cells, B, C]``, by a sparse table.

    Cells are (start, end inclusive) pairs; they are grouped by ``j = floor(log2(length))`` and each read as the
    max of two overlapping windows of length ``2^j``. :attr:`order` restores the order the cells were given in.
    """

    def __init__(self, cells: Tensor, n: int) -> None:
        super().__init__()
        lengths = cells[:, 1] - cells[:, 0] + 1
        if bool((cells[:, 0] < 0).any() or (cells[:, 1] >= n).any() or (lengths < 1).any()):
            raise ValueError("every cell needs 0 <= start <= end < n")
        level = torch.floor(torch.log2(lengths.double())).long()
        self.levels = int(level.max()) + 1
        groups = [torch.nonzero(level == j)[:, 0] for j in range(self.levels)]
        for j, idx in enumerate(groups):
            self.register_buffer(f"lo{j}", cells[idx, 0], persistent=False)
            self.register_buffer(f"hi{j}", cells[idx, 1] - 2**j + 1, persistent=False)
        self.register_buffer("order", torch.argsort(torch.cat(groups)), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        parts, table = [], x
        for j in range(self.levels):
            if j:  # T_j[s] = max(T_{j-1}[s], T_{j-1}[s + 2^(j-1)]): the max over x[s .. s + 2^j - 1]
                half = 2 ** (j - 1)
                table = _max2(table[:-half], table[half:])
            lo, hi = getattr(self, f"lo{j}"), getattr(self, f"hi{j}")
            if len(lo):
                parts.append(_max2(table.index_select(0, lo), table.index_select(0, hi)))
        return torch.cat(parts).index_select(0, self.order)


def _max2(a: Tensor, b: Tensor) -> Tensor:
    """The elementwise max; as ``torch.where`` its backward is two selections (``torch.maximum``'s is about eight
    elementwise passes, to split the gradient of exact ties, which real-valued features do not have)."""
    return torch.where(a >= b, a, b)


class ProposalScorer(nn.Module):
    """A.3 as one module: clip features ``[B, N, C]`` -> the sparse map (each cell the max over its clips) ->
    dropout -> the ``k x k`` map convolution (ReLU, 2D-TAN's re-weighting) -> a fully connected layer -> one logit
    per candidate ``[B, n_cand]``; with ``clip_rows = b`` also the first ``b`` rows' logits at the ``N``
    single-clip cells ``[b, N]`` (SIL's clip-level scores, §3.4). Parameters in ``nn.Conv2d``'s and
    ``nn.Linear``'s layouts (``conv``, ``head``); the fast path and ``reference = True`` are in the module docstring.
    """

    reference: bool = False

    def __init__(self, d: int, kernel: int = 5, n: int = N_CLIPS, dropout: float = 0.0) -> None:
        super().__init__()
        self.sparse = SparseMapConv(d, d, kernel, n)  # the reference path; its tables say which cells are read
        self.head = nn.Linear(d, 1)
        self.dropout = nn.Dropout(dropout)
        self.map = ProposalMap(n)
        for name in ("", "clip_"):
            neighbours = getattr(self.sparse, f"{name}neighbours")  # [n_out, k*k] rows of valid_cells, n_cells = zero
            read = torch.unique(neighbours[neighbours < self.sparse.n_cells])  # the valid cells the conv reads
            local = torch.full((self.sparse.n_cells + 1,), len(read), dtype=torch.long)
            local[read] = torch.arange(len(read))  # valid-cell row -> row among the read cells (len(read) = zero)
            setattr(self, f"{name}cells", CellMax(valid_cells(n)[read], n))
            self.register_buffer(f"{name}neighbours", local[neighbours], persistent=False)
            self.register_buffer(f"{name}scale", getattr(self.sparse, f"{name}scale"), persistent=False)

    @property
    def conv(self) -> nn.Conv2d:
        return self.sparse.conv

    def forward(self, m: Tensor, clip_rows: int = 0) -> Tensor | tuple[Tensor, Tensor]:
        if self.reference:
            cells = self.dropout(self.map(m))
            logits = self.head(self.sparse(cells)).squeeze(-1)
            clips = self.head(self.sparse(cells[:clip_rows], at="clips")).squeeze(-1) if clip_rows else None
        else:
            x = m.transpose(0, 1).contiguous()  # [N, B, C]: every gather below moves whole B x C blocks
            logits = self._read(x, "")
            clips = self._read(x[:, :clip_rows], "clip_") if clip_rows else None
        return logits if clips is None else (logits, clips)

    def _read(self, x: Tensor, name: str) -> Tensor:
        """Logits ``[B, n_out]`` at the candidates (``name=""``) or the single-clip cells (``"clip_"``)."""
        cells = self.dropout(getattr(self, f"{name}cells")(x))  # [n_read, B, C]
        padded = torch.cat([cells, cells.new_zeros(1, *cells.shape[1:])])  # the "zero" cell last
        neighbours, w = getattr(self, f"{name}neighbours"), self.conv.weight  # w: [C_out, C_in, k, k]
        k = w.shape[-1]
        out = self.conv.bias
        for t in range(k * k):  # the convolution as a sum over the window's offsets of gathered cells @ W_offset
            out = out + padded.index_select(0, neighbours[:, t]) @ w[:, :, t // k, t % k].T
        out = torch.relu(out) * getattr(self, f"{name}scale")[:, None, None]
        return self.head(out).squeeze(-1).T


class ProposalHead(nn.Module):
    """The proposal head Base and RTBPN share: ``fusion`` of the clips with the query, dropout, then A.3's
    :class:`ProposalScorer` (the sparse map, its convolution and the FC layer), one logit per candidate.

    Both papers score a (video, query) pair this way; Base's fusion is §3.2's interaction (or Table 5's Pool+Add),
    RTBPN's the same attention, cross gate and Bi-GRU (``methods.parts.fusion.Interaction``). The two differ only in
    where their code drops features, which each keeps: Base on the map's cells (``map_dropout``, SIL's code), RTBPN on
    the fused clip features (``fused_dropout``, RTBPN's code after its fusion Bi-GRU). One head, so that a change to
    how candidates are scored reaches both networks.
    """

    def __init__(self, fusion: nn.Module, d: int, kernel: int, n: int = N_CLIPS, map_dropout: float = 0.0,
                 fused_dropout: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.fusion = fusion
        self.fused_dropout = nn.Dropout(fused_dropout)  # p = 0 (Base) passes the features through, drawing nothing
        self.scorer = ProposalScorer(d, kernel, n, map_dropout)

    def forward(self, v: Tensor, s: Tensor, s_mask: Tensor, clip_rows: int = 0) -> Tensor | tuple[Tensor, Tensor]:
        """Logits ``[B, n_cand]`` of each (clips ``v [B, N, d]``, query ``s [B, L, d]``) pair; with ``clip_rows =
        b`` also the first ``b`` pairs' logits at the single-clip cells ``[b, N]`` (AVCL's clip-level scores, §3.4)."""
        return self.scorer(self.fused_dropout(self.fusion(v, s, s_mask)), clip_rows)
