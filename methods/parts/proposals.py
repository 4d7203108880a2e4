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

:class:`SparseMapConv` is the map convolution of A.3 computed only where it is read: a ``k x k`` convolution
over the map, evaluated at the 153 candidate cells by gathering each one's ``k x k`` neighbourhood of valid
cells (invalid or outside cells are zero, as in the dense map) and multiplying by the kernel. It equals
``torch.nn.Conv2d`` on the dense map read at the candidates (tested), at about 1/27 of the cost for N = 64,
k = 5, which is what makes the Base network trainable on a CPU. 2D-TAN's masked re-weighting follows:
the ReLU output is divided by the number of valid cells in the window (``get_padded_mask_and_weight``).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

N_CLIPS = 64
SCALES: tuple[tuple[int, int, int], ...] = ((16, 1, 0), (8, 2, 17), (8, 4, 35))  # (layers, stride, offset A)
KEEP: tuple[tuple[int, ...], ...] = ((7, 15), (3, 7), (3, 5, 7))  # layers whose cells are scored candidates


@functools.lru_cache(maxsize=8)
def _cells(n: int) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    cells, cands = [], []
    for (layers, stride, offset), keep in zip(SCALES, KEEP, strict=True):
        for i in range(layers):
            for s in range(0, n - offset - i * stride, stride):
                cell = (s, s + offset + i * stride)
                cells.append(cell)
                if i in keep:
                    cands.append(cell)
    return tuple(cells), tuple(cands)


def valid_cells(n: int = N_CLIPS) -> Tensor:
    """The valid (start, end-inclusive) clip pairs of the sparse map, ``[n_cells, 2]`` int64, layer by layer."""
    return torch.tensor(_cells(n)[0], dtype=torch.long).reshape(-1, 2)


def candidates(n: int = N_CLIPS) -> Tensor:
    """The scored candidates, ``[n_cand, 2]`` int64 (start, end inclusive): 153 for N = 64."""
    return torch.tensor(_cells(n)[1], dtype=torch.long).reshape(-1, 2)


def candidate_spans(duration: Tensor, n: int = N_CLIPS) -> Tensor:
    """Every candidate's span in seconds, ``[Q, n_cand, 2]``: ``[s * D / n, (e + 1) * D / n]``."""
    cand = candidates(n).to(duration.device, duration.dtype)
    bounds = torch.stack([cand[:, 0], cand[:, 1] + 1], dim=1) / n  # [n_cand, 2] as fractions
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
