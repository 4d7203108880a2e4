"""The one evaluator of the suite: R@n,IoU=m, mIoU, dR@1,IoU=m and two diagnostics, batched in torch.

Every method writes predictions in rank order and is scored here, so that no method carries its own metric
quirks (``shared/research/baselines.md`` §9). The protocol is SIL's (paper §4.3, App. B.2):

- IoU is the 2D-TAN formula in seconds: ``inter = max(0, min(e1, e2) - max(s1, s2))``,
  ``union = max(e1, e2) - min(s1, s2)``, ``IoU = inter / union``; 0 where ``union <= 0``, so two identical
  zero-length spans have IoU 0 (a point has no extent to overlap).
- R@1,IoU=m: the top-1 span has IoU **strictly** greater than m. R@5,IoU=m: at least one of the top 5 spans
  kept by greedy NMS (threshold 0.45, standard IoU) has IoU > m. mIoU: the mean top-1 IoU. NMS never
  removes the top-1 span, so R@1 and mIoU do not depend on the NMS threshold.
- dR@1,IoU=m, the discounted recall of Yuan et al. 2021 ("A Closer Look at Temporal Sentence Grounding in Videos";
  ``shared/research/baselines-2.md``, "Debiased evaluation"): each R@1 hit counts
  ``(1 - |p_s - g_s|) * (1 - |p_e - g_e|)`` instead of 1, with the top-1 start/end ``p`` and the ground truth ``g``
  as fractions of the video's duration. A long blind span that "hits" a long moment with loose boundaries earns
  little. Only n = 1 is computed: for n > 1 the definition does not say which of the top-n spans carries the
  discount (the hit, the top-1, the best?), and the papers that use it report dR@1 alone.
- ``centre_in``: share of queries whose top-1 centre lies in the ground truth (ends included);
  ``pred_len``: mean top-1 length divided by the video duration. Both say *how* a method fails.
- All values are fractions in [0, 1]; tables multiply by 100.
- ``iou_mode="inflated-original"`` swaps in the original SIL/RTBPN/SCN code's (inter + 1) / (union + 1) IoU
  against the ground truth, only to compare with their printed numbers (see ``temporal_iou``).

**Exact ties** (``ties="exact"``, the default). A moment whose IoU is exactly a threshold must not be counted as
a hit because of float rounding: the whole-video moment [0, 84.8] against a prediction [11.34, 36.78] has IoU
3/10 exactly, yet float64 gives 0.30000000000000004 > 0.3. So every comparison with a threshold (``IoU > m`` for
R@n and dR@1, ``IoU > 0.45`` in NMS, the centre-in test) is decided exactly, in integers: each time is put on a
grid of :data:`TIME_GRID` steps per second (1 ns), rounded to the nearest step, and for a threshold ``m = p/q``
(its decimal as written, e.g. 0.45 = 9/20) the test ``IoU > m`` is ``q * inter > p * union`` in int64. Why 1 ns:
the annotations are decimals with 2 places, and 2D-TAN candidates are ``k * D / N`` for N = 64 (8 decimal places
when D has 2) or 128 (9 places), so all of them lie on the grid exactly and their ties are decided as the decimal
numbers would decide them; any other time (``D / 3``) moves by at most 0.5 ns. "Exact" is exact for the numbers
given: a span computed in float32 (about 1e-5 s of rounding at 100 s) is scored as the float32 value it is, so a
tie the method meant can be lost before the evaluator sees it; write predictions in float64. The grid bounds
durations to :data:`MAX_DURATION` seconds (so that ``q * union`` stays far inside int64) and thresholds to at most
3 decimal places. mIoU and the discount stay float64 means of ``inter / union`` computed from the same grid
spans. The result counts the queries whose top-1 IoU equals each threshold exactly (``n_tied@m``): the queries
that float rounding would decide. ``ties="float"`` keeps the float64 comparisons of evaluator v1 (``IoU > m`` on
float64 IoUs, NMS likewise), only to compare with other code bases; it is labelled wherever it is used
(:func:`definition`).

Before scoring, predicted and ground-truth spans are clipped to ``[0, duration]``; the result counts how many
queries had a span clipped (``n_clipped_pred``, ``n_clipped_gt``). A span entirely outside the video
becomes a zero-length span at its border. All metrics, ``pred_len`` included, use the clipped spans.
Bad input is never repaired: start > end, NaN/inf, duration <= 0 or a query without any valid prediction
raise ``ValueError``.

:func:`score_queries` gives the per-query values behind every metric (0/1 hits, IoUs, discounted hits), which
``bench compare`` pairs across methods; :func:`evaluate` is their mean.

Predictions file (JSON lines, read by ``bench evaluate``), one object per line::

    {"qid": "v_abc#0", "duration": 120.5, "gt": [10.0, 30.0], "pred": [[12.0, 28.0, 0.91], [0.0, 60.0, 0.80]]}

- ``qid``: unique non-empty string; ``duration``: seconds, > 0; ``gt``: ``[start, end]`` in seconds.
- ``pred``: a non-empty list of predicted spans **in rank order, best first**, each ``[start, end]`` or
  ``[start, end, score]`` (all spans of a line with a score, or none). Scores must not increase down the list;
  equal scores are allowed and the order in the file decides between them. Scores are kept for reference
  only: the evaluator uses the order of the list, never re-sorts.
- Numbers are finite JSON numbers; every span has start <= end (never swapped silently).
- Extra keys are allowed and ignored; blank lines are skipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor

__all__ = [
    "IOU_THRESHOLDS", "RECALL_AT", "NMS_THRESHOLD", "METRIC_KEYS", "DIAGNOSTIC_KEYS", "IOU_MODES", "TIES",
    "DR_KEYS", "TIE_KEYS", "TIME_GRID", "MAX_DURATION", "temporal_iou", "to_grid", "iou_exceeds", "nms",
    "score_queries", "QueryScores", "evaluate", "Predictions", "read_predictions", "write_predictions",
    "evaluate_file", "score_file", "DEFINITION", "definition",
]  # fmt: skip

IOU_THRESHOLDS = (0.1, 0.3, 0.5, 0.7)
RECALL_AT = (1, 5)
NMS_THRESHOLD = 0.45  # SIL App. B.2
DR_KEYS: tuple[str, ...] = tuple(f"dR1@{m}" for m in IOU_THRESHOLDS)
METRIC_KEYS: tuple[str, ...] = tuple(f"R{n}@{m}" for n in RECALL_AT for m in IOU_THRESHOLDS) + ("mIoU",) + DR_KEYS
DIAGNOSTIC_KEYS = ("centre_in", "pred_len")
TIE_KEYS: tuple[str, ...] = tuple(f"n_tied@{m}" for m in IOU_THRESHOLDS)
"""Counts of queries whose top-1 IoU equals the threshold exactly (on the time grid), in every result."""
IOU_MODES = ("standard", "inflated-original")
TIES = ("exact", "float")
TIME_GRID = 10**9
"""Grid steps per second (1 ns): every time is rounded to it before a threshold is compared (module docstring)."""
MAX_DURATION = 1e6
"""Seconds (11.6 days). Keeps ``q * union`` (q <= 1000) under 1e18, inside int64's 9.2e18."""
MAX_THRESHOLD_DENOMINATOR = 1000
# Logged with every run, so a number can always be traced to the protocol that produced it.
DEFINITION = (
    "bench.evaluate v2: 2D-TAN IoU, strict IoU > m decided exactly (times on a 1 ns grid, integer test), top-1 mIoU, "
    "dR@1 (Yuan et al. 2021), greedy NMS 0.45 (exact) for R@5, clip to video"
)
DEFINITION_FLOAT_TIES = (
    "bench.evaluate v2 with FLOAT TIES (v1 comparisons, for comparison with other code bases only): 2D-TAN IoU, "
    "strict float64 IoU > m, top-1 mIoU, dR@1 (Yuan et al. 2021), greedy float NMS 0.45 for R@5, clip to video"
)


def definition(ties: str = "exact") -> str:
    """The evaluator's definition string for ``ties`` (what a run or a report must say it used)."""
    _check_ties(ties)
    return DEFINITION if ties == "exact" else DEFINITION_FLOAT_TIES


def _check_ties(ties: str) -> None:
    if ties not in TIES:
        raise ValueError(f"unknown ties mode {ties!r}; use one of {TIES} ('float' only to compare with other code)")


def temporal_iou(a: Tensor, b: Tensor, mode: str = "standard") -> Tensor:
    """IoU of spans ``a`` and ``b`` (``[..., 2]`` as (start, end), broadcast against each other), in floats.

    ``mode="standard"`` is the 2D-TAN formula in the module docstring. ``mode="inflated-original"`` is
    ``max(0, (min(e1, e2) - max(s1, s2) + 1) / (max(e1, e2) - min(s1, s2) + 1))`` in seconds, as in the
    original SIL/RTBPN/SCN code (``calculate_IoU_batch1``): the raw overlap is not clamped before the +1, so
    disjoint spans less than 1 s apart still score > 0, and short moments are inflated. It exists only to
    compare with numbers printed by those papers; it is NOT comparable to the standard IoU.

    A float IoU is right for training targets and means; a comparison with a threshold goes through
    :func:`iou_exceeds`, which is exact.
    """
    s1, e1, s2, e2 = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    overlap = torch.minimum(e1, e2) - torch.maximum(s1, s2)  # negative when the spans are disjoint
    union = torch.maximum(e1, e2) - torch.minimum(s1, s2)  # the hull; equals the union whenever they overlap
    if mode == "standard":
        positive = union > 0
        return torch.where(positive, overlap.clamp(min=0) / torch.where(positive, union, 1.0), 0.0)
    if mode == "inflated-original":
        return ((overlap + 1) / (union + 1)).clamp(min=0)
    raise ValueError(f"unknown IoU mode {mode!r}; use one of {IOU_MODES}")


def to_grid(times: Tensor) -> Tensor:
    """Seconds -> int64 steps of the :data:`TIME_GRID` (1 ns), rounded to the nearest step.

    Raises ``ValueError`` beyond :data:`MAX_DURATION` seconds, where the exact tests could overflow.
    """
    times = times.double()
    if times.numel() and bool((times.abs() > MAX_DURATION).any()):
        raise ValueError(f"a time beyond {MAX_DURATION:g} s: the exact comparison supports videos up to that length")
    return torch.round(times * TIME_GRID).to(torch.int64)


def _fraction(threshold: float) -> tuple[int, int]:
    """A threshold as ``(p, q)``, ``p / q`` its decimal as written (``0.45`` -> ``(9, 20)``)."""
    exact = Fraction(str(float(threshold)))
    if exact.denominator > MAX_THRESHOLD_DENOMINATOR:
        raise ValueError(
            f"threshold {threshold!r} has more than 3 decimal places; the exact comparison supports at most 3 "
            "(or use ties='float')"
        )
    return exact.numerator, exact.denominator


def _ratio(a: Tensor, b: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    """IoU of grid spans as an exact ratio ``num / den`` (int64, ``num >= 0``, ``den >= 0``)."""
    s1, e1, s2, e2 = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    overlap = torch.minimum(e1, e2) - torch.maximum(s1, s2)
    union = torch.maximum(e1, e2) - torch.minimum(s1, s2)
    if mode == "standard":
        return overlap.clamp(min=0), union
    if mode == "inflated-original":  # + 1 s on both sides, as the original code adds 1 to seconds
        return (overlap + TIME_GRID).clamp(min=0), union + TIME_GRID
    raise ValueError(f"unknown IoU mode {mode!r}; use one of {IOU_MODES}")


def _exceeds(num: Tensor, den: Tensor, threshold: float) -> Tensor:
    """``num / den > threshold`` exactly (``0 / 0`` is IoU 0)."""
    p, q = _fraction(threshold)
    return q * num > p * den


def _equals(num: Tensor, den: Tensor, threshold: float) -> Tensor:
    """``num / den == threshold`` exactly (``0 / 0`` is IoU 0)."""
    p, q = _fraction(threshold)
    return (q * num == p * den) & ((den > 0) | (p == 0))


def _as_float(num: Tensor, den: Tensor) -> Tensor:
    positive = den > 0
    return torch.where(positive, num.double() / torch.where(positive, den, 1).double(), 0.0)


def iou_exceeds(a: Tensor, b: Tensor, threshold: float, mode: str = "standard") -> Tensor:
    """``IoU(a, b) > threshold``, decided exactly: spans ``[..., 2]`` in seconds (or int64 grid steps), broadcast.

    Float inputs are put on the 1 ns grid first (:func:`to_grid`); int64 inputs are taken as grid steps.
    """
    if a.is_floating_point():
        a = to_grid(a)
    if b.is_floating_point():
        b = to_grid(b)
    num, den = _ratio(a, b, mode)
    return _exceeds(num, den, threshold)


def nms(
    spans: Tensor,
    valid: Tensor | None = None,
    threshold: float = NMS_THRESHOLD,
    top_k: int = 5,
    ties: str = "exact",
) -> tuple[Tensor, Tensor]:
    """Greedy temporal NMS over spans ``[Q, K, 2]`` that are already in rank order (index 0 = best).

    Walking down the ranks, a candidate is dropped iff its standard IoU with ANY span kept so far is
    > ``threshold`` (decided exactly on the time grid; ``ties="float"``: in float64); invalid (padding)
    candidates are skipped; a query stops at ``top_k`` kept spans. Returns ``(kept [Q, top_k, 2],
    kept_valid [Q, top_k])`` in rank order; slots not filled are zeros with ``kept_valid`` False. The loop runs
    over ranks and is vectorised over queries, holding only the ``[Q, top_k]`` kept spans (never a ``[Q, K, K]``
    matrix), and ends once every query is full.
    """
    kept, kept_valid, _ = _nms(spans, valid, threshold, top_k, ties)
    return kept, kept_valid


def _nms(
    spans: Tensor, valid: Tensor | None, threshold: float, top_k: int, ties: str
) -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`nms`, also returning the kept spans on the grid (``ties="exact"``; ``None`` for float ties)."""
    _check_ties(ties)
    n_query, n_cand = spans.shape[:2]
    if valid is None:
        valid = torch.ones(n_query, n_cand, dtype=torch.bool, device=spans.device)
    exact = ties == "exact"
    if exact:
        _fraction(threshold)  # a bad threshold fails before the loop
    kept = spans.new_zeros(n_query, top_k, 2)
    kept_grid = torch.zeros(n_query, top_k, 2, dtype=torch.int64, device=spans.device) if exact else None
    kept_valid = torch.zeros(n_query, top_k, dtype=torch.bool, device=spans.device)
    n_kept = torch.zeros(n_query, dtype=torch.long, device=spans.device)
    for rank in range(n_cand):  # usually ends after a few dozen ranks: each rank is put on the grid only when reached
        cand = spans[:, rank]  # [Q, 2]
        if kept_grid is not None:
            cand_grid = to_grid(cand) if cand.is_floating_point() else cand
            num, den = _ratio(kept_grid, cand_grid[:, None], "standard")
            over = _exceeds(num, den, threshold)
        else:
            over = temporal_iou(kept, cand[:, None]) > threshold
        suppressed = (over & kept_valid).any(dim=1)
        take = valid[:, rank] & ~suppressed & (n_kept < top_k)
        rows, slots = take.nonzero(as_tuple=True)[0], n_kept[take]
        kept[rows, slots] = cand[take]
        if kept_grid is not None:
            kept_grid[rows, slots] = cand_grid[take]
        kept_valid[rows, slots] = True
        n_kept += take
        if bool((n_kept >= top_k).all()):
            break
    return kept, kept_valid, kept_grid


def _validated(pred: Tensor, gt: Tensor, duration: Tensor, valid: Tensor) -> Tensor:
    """Return ``pred`` with its padding zeroed, or raise ``ValueError`` naming the first bad query.

    The evaluator never repairs its input: a swapped or NaN span is a bug upstream, not noise to hide.
    """
    if pred.ndim != 3 or pred.shape[-1] != 2 or pred.shape[0] == 0:
        raise ValueError(f"pred must be [Q, K, 2] with Q >= 1, got shape {tuple(pred.shape)}")
    n_query, n_cand = pred.shape[:2]
    expected = {
        "gt": (gt, (n_query, 2)),
        "duration": (duration, (n_query,)),
        "valid": (valid, (n_query, n_cand)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} to match pred, got {tuple(tensor.shape)}")
    pred = torch.where(valid[..., None], pred, 0.0)  # padding may hold anything
    problems = [
        (~valid.any(dim=1), "has no valid prediction (every query needs at least one span)"),
        (~torch.isfinite(duration) | (duration <= 0), "has a duration that is not a finite number > 0"),
        (~torch.isfinite(gt).all(dim=1), "has a non-finite (NaN/inf) ground-truth span"),
        (gt[:, 0] > gt[:, 1], "has a ground-truth span with start > end"),
        (~torch.isfinite(pred).all(dim=2).all(dim=1), "has a non-finite (NaN/inf) predicted span"),
        ((pred[..., 0] > pred[..., 1]).any(dim=1), "has a predicted span with start > end"),
    ]
    for bad, what in problems:
        if bool(bad.any()):
            index = int(bad.nonzero()[0, 0])
            raise ValueError(f"query index {index} {what}: gt={gt[index].tolist()}, duration={float(duration[index])}")
    return pred


@dataclass
class QueryScores:
    """Per-query values behind every metric, so that two methods can be compared query by query.

    ``values[key]`` is a float64 ``[Q]`` tensor for every key of ``METRIC_KEYS`` and ``DIAGNOSTIC_KEYS``: 0/1 for a
    hit (R@n), the top-1 IoU (mIoU), the discounted hit (dR@1), 0/1 for centre-in, the top-1 length share
    (pred_len). ``tied[m]`` marks the queries whose top-1 IoU equals ``m`` exactly (on the time grid).
    """

    values: dict[str, Tensor]
    tied: dict[float, Tensor]
    n_clipped_pred: int
    n_clipped_gt: int
    ties: str

    @property
    def n(self) -> int:
        return int(next(iter(self.values.values())).shape[0])

    def means(self) -> dict[str, float]:
        """The metrics (means over queries) with ``n``, the clipping counts and ``n_tied@m``."""
        result = {key: v.mean().item() for key, v in self.values.items()}
        result.update(n=self.n, n_clipped_pred=self.n_clipped_pred, n_clipped_gt=self.n_clipped_gt)
        result.update({f"n_tied@{m}": int(t.sum()) for m, t in self.tied.items()})
        return result


def score_queries(
    pred: Tensor,
    gt: Tensor,
    duration: Tensor,
    valid: Tensor | None = None,
    *,
    nms_threshold: float = NMS_THRESHOLD,
    iou_mode: str = "standard",
    ties: str = "exact",
) -> QueryScores:
    """Score ranked predictions ``pred [Q, K, 2]`` (seconds, best first) against ``gt [Q, 2]``, query by query.

    ``duration [Q]`` is each video's length in seconds and ``valid [Q, K]`` marks real candidates (False =
    padding). ``iou_mode`` changes only the IoU against the ground truth; NMS always uses the standard IoU.
    ``ties`` is ``"exact"`` (the suite's protocol) or ``"float"`` (evaluator v1's float64 comparisons, only to
    compare with other code bases). Computed in float64 and, for the comparisons, int64.
    """
    if iou_mode not in IOU_MODES:
        raise ValueError(f"unknown IoU mode {iou_mode!r}; use one of {IOU_MODES}")
    _check_ties(ties)
    pred, gt, duration = pred.double(), gt.double(), duration.double()
    if valid is None:
        valid = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
    valid = valid.bool()
    pred = _validated(pred, gt, duration, valid)
    if bool((duration > MAX_DURATION).any()):
        index = int((duration > MAX_DURATION).nonzero()[0, 0])
        raise ValueError(f"query index {index} has a duration over {MAX_DURATION:g} s, beyond the exact comparison")

    # Clip to the video, [0, duration], and count the queries that needed it.
    clipped_pred = torch.minimum(pred.clamp(min=0), duration[:, None, None])
    clipped_gt = torch.minimum(gt.clamp(min=0), duration[:, None])
    n_clipped_pred = int(((clipped_pred != pred).any(dim=2) & valid).any(dim=1).sum())
    n_clipped_gt = int((clipped_gt != gt).any(dim=1).sum())
    grid_gt, grid_duration = to_grid(clipped_gt), to_grid(duration)
    if bool((grid_duration <= 0).any()):
        raise ValueError("a duration is below the 1 ns time grid of the exact comparison")

    top_k = max(RECALL_AT)
    # kept[:, 0] = the first valid span = top-1 (NMS never removes it)
    kept, kept_valid, kept_grid = _nms(clipped_pred, valid, nms_threshold, top_k, ties)
    if kept_grid is None:  # float ties: the exact ratio is still needed to count the exact ties
        kept_grid = to_grid(kept)
    num, den = _ratio(kept_grid, grid_gt[:, None], iou_mode)  # [Q, top_k] exact IoU with the ground truth
    if ties == "exact":
        iou = _as_float(num, den)
        top1 = kept_grid[:, 0].double() / TIME_GRID
        gt_s, gt_e = grid_gt[:, 0].double() / TIME_GRID, grid_gt[:, 1].double() / TIME_GRID
        length = grid_duration.double() / TIME_GRID
        twice_centre = kept_grid[:, 0].sum(dim=1)  # s + e, compared with 2 g_s and 2 g_e: exact
        centre_in = (twice_centre >= 2 * grid_gt[:, 0]) & (twice_centre <= 2 * grid_gt[:, 1])
    else:
        iou = temporal_iou(kept, clipped_gt[:, None], iou_mode)
        top1, gt_s, gt_e, length = kept[:, 0], clipped_gt[:, 0], clipped_gt[:, 1], duration
        centre = (top1[:, 0] + top1[:, 1]) / 2
        centre_in = (centre >= gt_s) & (centre <= gt_e)

    values: dict[str, Tensor] = {}
    for n in RECALL_AT:
        for m in IOU_THRESHOLDS:
            over = _exceeds(num[:, :n], den[:, :n], m) if ties == "exact" else iou[:, :n] > m  # strict >, as the paper
            values[f"R{n}@{m}"] = (over & kept_valid[:, :n]).any(dim=1).double()
    values["mIoU"] = iou[:, 0]
    # Yuan et al.'s discount: (1 - |p_s - g_s|)(1 - |p_e - g_e|), times as fractions of the duration
    discount = (1 - (top1[:, 0] - gt_s).abs() / length) * (1 - (top1[:, 1] - gt_e).abs() / length)
    for m in IOU_THRESHOLDS:
        values[f"dR1@{m}"] = values[f"R1@{m}"] * discount
    values["centre_in"] = centre_in.double()
    values["pred_len"] = (top1[:, 1] - top1[:, 0]) / length
    tied = {m: _equals(num[:, 0], den[:, 0], m) for m in IOU_THRESHOLDS}
    return QueryScores(values, tied, n_clipped_pred, n_clipped_gt, ties)


def evaluate(
    pred: Tensor,
    gt: Tensor,
    duration: Tensor,
    valid: Tensor | None = None,
    *,
    nms_threshold: float = NMS_THRESHOLD,
    iou_mode: str = "standard",
    ties: str = "exact",
) -> dict[str, float]:
    """Score ranked predictions ``pred [Q, K, 2]`` (seconds, best first) against ``gt [Q, 2]``.

    The means of :func:`score_queries`: ``METRIC_KEYS`` and ``DIAGNOSTIC_KEYS`` as fractions, plus ``n``
    (queries), ``n_clipped_pred`` / ``n_clipped_gt`` (queries with a span clipped to the video) and ``TIE_KEYS``
    (queries whose top-1 IoU equals the threshold exactly; counted in either ``ties`` mode).
    """
    scores = score_queries(pred, gt, duration, valid, nms_threshold=nms_threshold, iou_mode=iou_mode, ties=ties)
    return scores.means()


@dataclass
class Predictions:
    """A predictions file in memory, padded to the longest list (float64 tensors)."""

    qids: list[str]
    duration: Tensor  # [Q]
    gt: Tensor  # [Q, 2]
    pred: Tensor  # [Q, K, 2], zeros where padded
    scores: Tensor  # [Q, K], NaN where a span has no score or is padding
    valid: Tensor  # [Q, K], False where padded


def _is_number(x: Any) -> bool:
    """A finite JSON number (``true``/``false`` are not numbers; huge integers are not finite floats)."""
    if not isinstance(x, int | float) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def _parse_line(line: str, fail: Callable[..., ValueError]) -> tuple[str, float, list[float], list[list[float]]]:
    """Parse one JSON line; ``fail(problem, fix, qid)`` builds the error with the file and line."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise fail(f"invalid JSON ({err.msg})", "write one JSON object per line") from None
    if not isinstance(obj, dict):
        raise fail("the line is not a JSON object", "write one object per line", None)
    qid = obj.get("qid")
    if not isinstance(qid, str) or not qid:
        raise fail(
            "'qid' is missing or not a non-empty string",
            'add "qid": "<video>#<index>" (a non-empty string)',
            None,
        )
    for key in ("duration", "gt", "pred"):
        if key not in obj:
            raise fail(f"missing key {key!r}", "every line needs qid, duration, gt and pred", qid)
    duration, gt, pred = obj["duration"], obj["gt"], obj["pred"]
    if not _is_number(duration) or duration <= 0:
        raise fail(f"duration {duration!r} is not a finite number > 0", "give the video length in seconds", qid)
    if not (isinstance(gt, list) and len(gt) == 2 and all(map(_is_number, gt))):
        raise fail(f"gt {gt!r} is not [start, end] of finite numbers", 'write "gt": [start, end]', qid)
    if gt[0] > gt[1]:
        raise fail(f"gt {gt} has start > end", "write the ground truth as [start, end] with start <= end", qid)
    if not isinstance(pred, list) or not pred:
        raise fail("pred is empty or not a list", "give at least one predicted span, best first", qid)
    for rank, span in enumerate(pred):
        if not (isinstance(span, list) and len(span) in (2, 3) and all(map(_is_number, span))):
            raise fail(
                f"pred[{rank}] = {span!r} is not [start, end] or [start, end, score] of finite numbers",
                "write each span as [start, end] or [start, end, score]",
                qid,
            )
        if span[0] > span[1]:
            raise fail(f"pred[{rank}] = {span} has start > end", "write spans as [start, end], start <= end", qid)
    if len({len(span) for span in pred}) > 1:
        raise fail("some spans have a score and some do not", "give a score for every span or for none", qid)
    for rank in range(1, len(pred) if len(pred[0]) == 3 else 0):
        if pred[rank][2] > pred[rank - 1][2]:
            raise fail(
                f"score of pred[{rank}] ({pred[rank][2]}) is higher than pred[{rank - 1}]'s",
                "list the spans in rank order, best (highest score) first",
                qid,
            )
    return qid, float(duration), [float(x) for x in gt], [[float(x) for x in span] for span in pred]


def _open_predictions(path: str | Path) -> TextIO:
    """Open a predictions file, or raise one ``ValueError`` line naming it and the fix (never a bare errno)."""
    fix = "Fix: give the path of a JSON-lines predictions file (a run's is under its predictions/ artifacts)."
    try:
        return open(path, encoding="utf-8")  # noqa: SIM115 (the caller's with block closes it)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such predictions file. {fix}") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a predictions file. {fix}") from None
    except PermissionError:
        raise ValueError(f"{path}: not readable (permission denied). Fix: make the file readable.") from None


def read_predictions(path: str | Path) -> Predictions:
    """Read and validate a predictions file (format in the module docstring)."""
    rows: list[tuple[str, float, list[float], list[list[float]]]] = []
    seen: dict[str, int] = {}
    with _open_predictions(path) as handle:
        try:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue

                def fail(problem: str, fix: str, qid: str | None = None, lineno: int = lineno) -> ValueError:
                    who = f"qid {qid!r}" if qid is not None else "qid unknown"
                    return ValueError(f"{path}, line {lineno} ({who}): {problem}. Fix: {fix}.")

                row = _parse_line(line, fail)
                if row[0] in seen:
                    raise fail(f"duplicate qid, first seen on line {seen[row[0]]}", "give every query once", row[0])
                seen[row[0]] = lineno
                rows.append(row)
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{path}: not UTF-8 text ({e.reason}). Fix: write the predictions as UTF-8 JSON lines."
            ) from None
    if not rows:
        raise ValueError(f"{path}: no predictions in the file. Fix: write one JSON object per query.")
    n_cand = max(len(row[3]) for row in rows)
    pred = torch.zeros(len(rows), n_cand, 2, dtype=torch.float64)
    scores = torch.full((len(rows), n_cand), math.nan, dtype=torch.float64)
    valid = torch.zeros(len(rows), n_cand, dtype=torch.bool)
    for q, (_, _, _, spans) in enumerate(rows):
        table = torch.tensor(spans, dtype=torch.float64)
        pred[q, : len(spans)] = table[:, :2]
        valid[q, : len(spans)] = True
        if table.shape[1] == 3:
            scores[q, : len(spans)] = table[:, 2]
    return Predictions(
        qids=[row[0] for row in rows],
        duration=torch.tensor([row[1] for row in rows], dtype=torch.float64),
        gt=torch.tensor([row[2] for row in rows], dtype=torch.float64),
        pred=pred,
        scores=scores,
        valid=valid,
    )


def write_predictions(
    path: str | Path,
    qids: list[str],
    duration: Tensor,
    gt: Tensor,
    pred: Tensor,
    scores: Tensor | None = None,
    valid: Tensor | None = None,
) -> None:
    """Write ranked predictions ``pred [Q, K, 2]`` as a predictions file, dropping padding (``valid`` False).

    A span gets a score when ``scores`` is given and its score is not NaN. Non-finite numbers raise
    ``ValueError`` (JSON has none); everything else is checked when the file is read back.
    """
    if len(qids) != pred.shape[0]:
        raise ValueError(f"{len(qids)} qids for {pred.shape[0]} queries in pred")
    if valid is None:
        valid = torch.ones(pred.shape[:2], dtype=torch.bool)
    with open(path, "w", encoding="utf-8") as handle:
        for q, qid in enumerate(qids):
            spans = []
            for k in valid[q].nonzero(as_tuple=True)[0].tolist():
                span = pred[q, k].tolist()
                if scores is not None and not math.isnan(score := float(scores[q, k])):
                    span.append(score)
                spans.append(span)
            obj = {"qid": qid, "duration": float(duration[q]), "gt": gt[q].tolist(), "pred": spans}
            handle.write(json.dumps(obj, allow_nan=False) + "\n")


QUERY_MEANS_SUFFIX = "_query_means.jsonl"
"""``<split>_query_means.jsonl`` beside ``<split>_predictions.jsonl``: a drawing method's per-query means."""


def write_query_means(path: str | Path, qids: list[str], values: dict[str, Tensor], draws: int) -> None:
    """Write each query's metric values averaged over ``draws`` random draws (``values[key]``: a ``[Q]`` tensor
    of means, the keys of :class:`QueryScores`): what a method that averages draws (``random``) is compared on query
    by query, since its predictions file can hold one draw only (:func:`read_query_means`)."""
    keys = sorted(values)
    with open(path, "w", encoding="utf-8") as handle:
        for q, qid in enumerate(qids):
            obj = {"qid": qid, "draws": draws, **{k: float(values[k][q]) for k in keys}}
            handle.write(json.dumps(obj, allow_nan=False) + "\n")


def read_query_means(path: str | Path) -> tuple[list[str], dict[str, list[float]]]:
    """``(qids, {metric: per-query mean})`` of a :func:`write_query_means` file; a malformed line names the file."""
    qids: list[str] = []
    values: dict[str, list[float]] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        try:
            obj = json.loads(line)
            qids.append(str(obj.pop("qid")))
            obj.pop("draws")
            for key, value in obj.items():
                values.setdefault(key, []).append(float(value))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{n}: not a query-means line ({err}); re-run the method that wrote it") from None
    if any(len(v) != len(qids) for v in values.values()):
        raise ValueError(f"{path}: a metric is missing on some lines; re-run the method that wrote it")
    return qids, values


def evaluate_file(
    path: str | Path, *, nms_threshold: float = NMS_THRESHOLD, iou_mode: str = "standard", ties: str = "exact"
) -> dict[str, float]:
    """Read a predictions file and score it with ``evaluate``."""
    p = read_predictions(path)
    return evaluate(p.pred, p.gt, p.duration, p.valid, nms_threshold=nms_threshold, iou_mode=iou_mode, ties=ties)


def score_file(
    path: str | Path, *, nms_threshold: float = NMS_THRESHOLD, iou_mode: str = "standard", ties: str = "exact"
) -> tuple[list[str], QueryScores]:
    """Read a predictions file and score it query by query: ``(qids, scores)`` in the file's order."""
    p = read_predictions(path)
    scores = score_queries(p.pred, p.gt, p.duration, p.valid, nms_threshold=nms_threshold, iou_mode=iou_mode, ties=ties)
    return p.qids, scores
