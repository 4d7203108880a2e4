"""The one evaluator of the suite: R@n,IoU=m, mIoU and two diagnostics, batched in torch.

Every method writes predictions in rank order and is scored here, so that no method carries its own metric
quirks (``shared/research/baselines.md`` §9). The protocol is SIL's (paper §4.3, App. B.2):

- IoU is the 2D-TAN formula in seconds: ``inter = max(0, min(e1, e2) - max(s1, s2))``,
  ``union = max(e1, e2) - min(s1, s2)``, ``IoU = inter / union``; 0 where ``union <= 0``, so two identical
  zero-length spans have IoU 0 (a point has no extent to overlap).
- R@1,IoU=m: the top-1 span has IoU **strictly** greater than m. R@5,IoU=m: at least one of the top 5 spans
  kept by greedy NMS (threshold 0.45, standard IoU) has IoU > m. mIoU: the mean top-1 IoU. NMS never
  removes the top-1 span, so R@1 and mIoU do not depend on the NMS threshold.
- ``centre_in``: share of queries whose top-1 centre lies in the ground truth (ends included);
  ``pred_len``: mean top-1 length divided by the video duration. Both say *how* a method fails.
- All values are fractions in [0, 1]; tables multiply by 100.
- ``iou_mode="inflated-original"`` swaps in the original SIL/RTBPN/SCN code's (inter + 1) / (union + 1) IoU
  against the ground truth, only to compare with their printed numbers (see ``temporal_iou``).

Before scoring, predicted and ground-truth spans are clipped to ``[0, duration]``; the result counts how many
queries had a span clipped (``n_clipped_pred``, ``n_clipped_gt``). A span entirely outside the video
becomes a zero-length span at its border. All metrics, ``pred_len`` included, use the clipped spans.
Bad input is never repaired: start > end, NaN/inf, duration <= 0 or a query without any valid prediction
raise ``ValueError``.

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
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "IOU_THRESHOLDS", "RECALL_AT", "NMS_THRESHOLD", "METRIC_KEYS", "DIAGNOSTIC_KEYS", "IOU_MODES",
    "temporal_iou", "nms", "evaluate", "Predictions", "read_predictions", "write_predictions",
    "evaluate_file", "DEFINITION",
]  # fmt: skip

IOU_THRESHOLDS = (0.1, 0.3, 0.5, 0.7)
RECALL_AT = (1, 5)
NMS_THRESHOLD = 0.45  # SIL App. B.2
METRIC_KEYS: tuple[str, ...] = tuple(f"R{n}@{m}" for n in RECALL_AT for m in IOU_THRESHOLDS) + ("mIoU",)
DIAGNOSTIC_KEYS = ("centre_in", "pred_len")
IOU_MODES = ("standard", "inflated-original")
# Logged with every run, so a number can always be traced to the protocol that produced it.
DEFINITION = "bench.evaluate v1: 2D-TAN IoU, strict IoU > m, top-1 mIoU, greedy NMS 0.45 for R@5, clip to video"


def temporal_iou(a: Tensor, b: Tensor, mode: str = "standard") -> Tensor:
    """IoU of spans ``a`` and ``b`` (``[..., 2]`` as (start, end), broadcast against each other).

    ``mode="standard"`` is the 2D-TAN formula in the module docstring. ``mode="inflated-original"`` is
    ``max(0, (min(e1, e2) - max(s1, s2) + 1) / (max(e1, e2) - min(s1, s2) + 1))`` in seconds, as in the
    original SIL/RTBPN/SCN code (``calculate_IoU_batch1``): the raw overlap is not clamped before the +1, so
    disjoint spans less than 1 s apart still score > 0, and short moments are inflated. It exists only to
    compare with numbers printed by those papers; it is NOT comparable to the standard IoU.
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


def nms(
    spans: Tensor, valid: Tensor | None = None, threshold: float = NMS_THRESHOLD, top_k: int = 5
) -> tuple[Tensor, Tensor]:
    """Greedy temporal NMS over spans ``[Q, K, 2]`` that are already in rank order (index 0 = best).

    Walking down the ranks, a candidate is dropped iff its standard IoU with ANY span kept so far is
    > ``threshold``; invalid (padding) candidates are skipped; a query stops at ``top_k`` kept spans.
    Returns ``(kept [Q, top_k, 2], kept_valid [Q, top_k])`` in rank order; slots not filled are zeros with
    ``kept_valid`` False. The loop runs over ranks and is vectorised over queries, holding only the
    ``[Q, top_k]`` kept spans (never a ``[Q, K, K]`` matrix), and ends once every query is full.
    """
    n_query, n_cand = spans.shape[:2]
    if valid is None:
        valid = torch.ones(n_query, n_cand, dtype=torch.bool, device=spans.device)
    kept = spans.new_zeros(n_query, top_k, 2)
    kept_valid = torch.zeros(n_query, top_k, dtype=torch.bool, device=spans.device)
    n_kept = torch.zeros(n_query, dtype=torch.long, device=spans.device)
    for rank in range(n_cand):
        cand = spans[:, rank]  # [Q, 2]
        suppressed = ((temporal_iou(kept, cand[:, None]) > threshold) & kept_valid).any(dim=1)
        take = valid[:, rank] & ~suppressed & (n_kept < top_k)
        rows, slots = take.nonzero(as_tuple=True)[0], n_kept[take]
        kept[rows, slots] = cand[take]
        kept_valid[rows, slots] = True
        n_kept += take
        if bool((n_kept >= top_k).all()):
            break
    return kept, kept_valid


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


def evaluate(
    pred: Tensor,
    gt: Tensor,
    duration: Tensor,
    valid: Tensor | None = None,
    *,
    nms_threshold: float = NMS_THRESHOLD,
    iou_mode: str = "standard",
) -> dict[str, float]:
    """Score ranked predictions ``pred [Q, K, 2]`` (seconds, best first) against ``gt [Q, 2]``.

    ``duration [Q]`` is each video's length in seconds and ``valid [Q, K]`` marks real candidates (False =
    padding). Returns ``METRIC_KEYS`` and ``DIAGNOSTIC_KEYS`` as fractions, plus ``n`` (queries) and
    ``n_clipped_pred`` / ``n_clipped_gt`` (queries with a span clipped to the video). ``iou_mode`` changes
    only the IoU against the ground truth; NMS always uses the standard IoU. Computed in float64.
    """
    if iou_mode not in IOU_MODES:
        raise ValueError(f"unknown IoU mode {iou_mode!r}; use one of {IOU_MODES}")
    pred, gt, duration = pred.double(), gt.double(), duration.double()
    if valid is None:
        valid = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
    valid = valid.bool()
    pred = _validated(pred, gt, duration, valid)

    # Clip to the video, [0, duration], and count the queries that needed it.
    clipped_pred = torch.minimum(pred.clamp(min=0), duration[:, None, None])
    clipped_gt = torch.minimum(gt.clamp(min=0), duration[:, None])
    n_clipped_pred = int(((clipped_pred != pred).any(dim=2) & valid).any(dim=1).sum())
    n_clipped_gt = int((clipped_gt != gt).any(dim=1).sum())

    top_k = max(RECALL_AT)
    kept, kept_valid = nms(clipped_pred, valid, nms_threshold, top_k)  # kept[:, 0] = first valid = top-1
    iou = temporal_iou(kept, clipped_gt[:, None], iou_mode)  # [Q, top_k]
    result: dict[str, float] = {}
    for n in RECALL_AT:
        for m in IOU_THRESHOLDS:
            hit = ((iou[:, :n] > m) & kept_valid[:, :n]).any(dim=1)  # strict >, as in the paper
            result[f"R{n}@{m}"] = hit.double().mean().item()
    result["mIoU"] = iou[:, 0].mean().item()

    top1, gt_s, gt_e = kept[:, 0], clipped_gt[:, 0], clipped_gt[:, 1]
    centre = (top1[:, 0] + top1[:, 1]) / 2
    result["centre_in"] = ((centre >= gt_s) & (centre <= gt_e)).double().mean().item()
    result["pred_len"] = ((top1[:, 1] - top1[:, 0]) / duration).mean().item()
    result.update(n=pred.shape[0], n_clipped_pred=n_clipped_pred, n_clipped_gt=n_clipped_gt)
    return result


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


def read_predictions(path: str | Path) -> Predictions:
    """Read and validate a predictions file (format in the module docstring)."""
    rows: list[tuple[str, float, list[float], list[list[float]]]] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
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


def evaluate_file(
    path: str | Path, *, nms_threshold: float = NMS_THRESHOLD, iou_mode: str = "standard"
) -> dict[str, float]:
    """Read a predictions file and score it with ``evaluate``."""
    p = read_predictions(path)
    return evaluate(p.pred, p.gt, p.duration, p.valid, nms_threshold=nms_threshold, iou_mode=iou_mode)
