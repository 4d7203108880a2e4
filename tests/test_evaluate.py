"""Tests of bench/evaluate.py: hand-derived cases, properties against a pure-Python reference, file I/O."""

from __future__ import annotations

import json
import math
import os
import random
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.data.activitynet import read_captions
from bench.data.errors import SkipPolicy
from bench.evaluate import (
    DEFINITION,
    DIAGNOSTIC_KEYS,
    DR_KEYS,
    IOU_THRESHOLDS,
    METRIC_KEYS,
    NMS_THRESHOLD,
    RECALL_AT,
    TIE_KEYS,
    TIME_GRID,
    definition,
    evaluate,
    evaluate_file,
    iou_exceeds,
    nms,
    read_predictions,
    score_queries,
    temporal_iou,
    to_grid,
    write_predictions,
)

DATA = Path(__file__).parent / "data"
SHARED = Path(os.environ.get("WSVG_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def f64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def batch(queries: list[tuple[float, list[float], list[list[float]]]], pad: float = math.nan):
    """(duration, gt, ranked spans) per query -> pred [Q, K, 2] (padded with ``pad``), gt, duration, valid."""
    n_cand = max(len(spans) for _, _, spans in queries)
    pred = torch.full((len(queries), n_cand, 2), pad, dtype=torch.float64)
    valid = torch.zeros(len(queries), n_cand, dtype=torch.bool)
    for q, (_, _, spans) in enumerate(queries):
        pred[q, : len(spans)] = f64(spans)
        valid[q, : len(spans)] = True
    return pred, f64([g for _, g, _ in queries]), f64([d for d, _, _ in queries]), valid


def run(queries, **kwargs) -> dict[str, float]:
    pred, gt, duration, valid = batch(queries)
    return evaluate(pred, gt, duration, valid, **kwargs)


def assert_metrics(result: dict[str, float], expected: dict[str, float]) -> None:
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key


# ---------------------------------------------------------------- pure-Python references (scalar loops)
#
# The exact reference works in rationals: every time is put on the evaluator's 1 ns grid (Python's round(), half to
# even like torch.round) and every threshold is the Fraction of its decimal, so "IoU > m" is decided without any
# float. The float reference is evaluator v1 (float64 comparisons), which ties="float" must reproduce.


def ref_iou(a: list[float], b: list[float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def on_grid(t: float) -> Fraction:
    return Fraction(round(t * TIME_GRID), TIME_GRID)


def ref_iou_exact(a, b) -> Fraction:
    inter = max(Fraction(0), min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else Fraction(0)


def ref_nms(spans: list[list[float]], threshold: float, top_k: int = 5, exact: bool = False) -> list[list[float]]:
    def exact_iou(a, b) -> Fraction:
        return ref_iou_exact(*[[t if isinstance(t, Fraction) else on_grid(t) for t in span] for span in (a, b)])

    iou, limit = (exact_iou, Fraction(str(threshold))) if exact else (ref_iou, threshold)
    kept: list[list[float]] = []
    for span in spans:
        if len(kept) == top_k:
            break
        if all(iou(span, k) <= limit for k in kept):
            kept.append(span)
    return kept


def ref_evaluate(queries, nms_threshold: float = NMS_THRESHOLD, exact: bool = True) -> dict[str, float]:
    """Evaluator v2 by scalar loops: exact (rationals on the grid) or, with ``exact=False``, v1's float64."""
    hits = {key: 0.0 for key in METRIC_KEYS if key != "mIoU"}
    tied = dict.fromkeys(IOU_THRESHOLDS, 0)
    sum_iou = sum_centre = sum_len = 0.0
    n_clipped_pred = n_clipped_gt = 0
    for duration, gt, spans in queries:

        def clip(span, d=duration):
            return [min(max(span[0], 0.0), d), min(max(span[1], 0.0), d)]

        g, preds = clip(gt), [clip(s) for s in spans]
        n_clipped_gt += g != list(gt)
        n_clipped_pred += any(p != list(s) for p, s in zip(preds, spans, strict=True))
        if exact:
            d, g, preds = on_grid(duration), [on_grid(t) for t in g], [[on_grid(t) for t in p] for p in preds]
        else:
            d = duration
        kept = ref_nms(preds, nms_threshold, exact=exact)
        exact_ious = [ref_iou_exact(k, g) for k in kept] if exact else None
        ious = [float(x) for x in exact_ious] if exact_ious is not None else [ref_iou(k, g) for k in kept]
        top1 = preds[0]
        tie_iou = (
            ref_iou_exact(top1, g) if exact else ref_iou_exact([on_grid(t) for t in top1], [on_grid(t) for t in g])
        )
        discount = float((1 - abs(top1[0] - g[0]) / d) * (1 - abs(top1[1] - g[1]) / d))
        for m in IOU_THRESHOLDS:
            limit = Fraction(str(m))
            over = [x > limit for x in exact_ious] if exact_ious is not None else [x > m for x in ious]
            for n in RECALL_AT:
                hits[f"R{n}@{m}"] += any(over[:n])
            hits[f"dR1@{m}"] += over[0] * discount
            tied[m] += tie_iou == limit
        sum_iou += ious[0]
        sum_centre += g[0] <= (top1[0] + top1[1]) / 2 <= g[1]
        sum_len += float((top1[1] - top1[0]) / d)
    n = len(queries)
    result = {key: count / n for key, count in hits.items()}
    result.update(mIoU=sum_iou / n, centre_in=sum_centre / n, pred_len=sum_len / n)
    result.update(n=n, n_clipped_pred=n_clipped_pred, n_clipped_gt=n_clipped_gt)
    result.update({f"n_tied@{m}": count for m, count in tied.items()})
    return result


# Coordinates on a 0.5 s grid, from before the video to past its end: exact IoU ties with the thresholds
# (0.5, 0.1 ...) and spans that need clipping both come up often.
coord = st.integers(-4, 30).map(lambda i: i / 2)
span_st = st.tuples(coord, coord).map(sorted)
query_st = st.tuples(st.integers(1, 24).map(lambda i: i / 2), span_st, st.lists(span_st, min_size=1, max_size=8))


@st.composite
def batch_st(draw) -> list:
    """Queries whose times are integer multiples of one decimal unit per batch (0.5 s as above, or 0.1, 0.07, 0.13,
    0.01 s): IoU ties stay frequent, and with the units that are no binary fractions float64 rounds the times (as
    84.8 s is rounded), so the exact and the float comparisons can disagree."""
    unit = Decimal(draw(st.sampled_from(["0.5", "0.1", "0.07", "0.13", "0.01"])))
    at = st.integers(-4, 30).map(lambda i: float(i * unit))
    spans = st.tuples(at, at).map(sorted)
    queries = st.tuples(
        st.integers(1, 24).map(lambda i: float(i * unit)), spans, st.lists(spans, min_size=1, max_size=8)
    )
    return draw(st.lists(queries, min_size=1, max_size=6))


# ---------------------------------------------------------------- constants and the golden vector


def test_metric_keys_order() -> None:
    expected = ("R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "R5@0.1", "R5@0.3", "R5@0.5", "R5@0.7", "mIoU")
    assert expected + ("dR1@0.1", "dR1@0.3", "dR1@0.5", "dR1@0.7") == METRIC_KEYS
    assert METRIC_KEYS[-4:] == DR_KEYS and TIE_KEYS == ("n_tied@0.1", "n_tied@0.3", "n_tied@0.5", "n_tied@0.7")
    assert DIAGNOSTIC_KEYS == ("centre_in", "pred_len")
    assert NMS_THRESHOLD == 0.45


GOLDEN = [[0.0, 10.0], [1.0, 11.0], [20.0, 30.0], [5.0, 15.0]]


@pytest.mark.parametrize("threshold", [0.5, 0.45])
def test_golden_vector(threshold: float) -> None:
    # baselines.md §9. [1,11] vs kept [0,10]: inter 9, union 11 -> 0.818 > both thresholds: suppressed.
    # [20,30] is disjoint from [0,10]: kept. [5,15] vs [0,10]: inter 5, union 15 -> 1/3 <= 0.45 and <= 0.5,
    # and 0 with [20,30]: kept. So the kept set is the same at 0.5 (2D-TAN ActivityNet) and 0.45 (SIL).
    kept, kept_valid = nms(f64([GOLDEN]), threshold=threshold)
    assert kept[0, :3].tolist() == [[0.0, 10.0], [20.0, 30.0], [5.0, 15.0]]
    assert kept_valid.tolist() == [[True, True, True, False, False]]
    # IoU with GT [2,12]: [0,10] inter 8 union 12 = 2/3; [20,30] 0; [5,15] inter 7 union 13 = 7/13.
    iou = temporal_iou(kept[0, :3], f64([2.0, 12.0]))
    assert iou.tolist() == pytest.approx([2 / 3, 0.0, 7 / 13], abs=1e-15)
    result = run([(60.0, [2.0, 12.0], GOLDEN)], nms_threshold=threshold)
    expected = {f"R{n}@{m}": float(m < 2 / 3) for n in RECALL_AT for m in IOU_THRESHOLDS}
    assert_metrics(result, expected | {"mIoU": 2 / 3, "centre_in": 1.0, "pred_len": 10 / 60})


# ---------------------------------------------------------------- more hand-computed cases


def test_multi_query_batch_by_hand() -> None:
    queries = [
        # Q0: exact hit. IoU 1. centre 5 in [0,10]. length 10/30.
        (30.0, [0.0, 10.0], [[0.0, 10.0]]),
        # Q1: gt [20,40] clipped to [20,30]; pred [-5,5] clipped to [0,5] (IoU 0, centre 2.5 out,
        #     length 5/30). [18,30] is disjoint from [0,5], so NMS keeps it: inter 10, union 12 -> 5/6.
        (30.0, [20.0, 40.0], [[-5.0, 5.0], [18.0, 30.0]]),
        # Q2: top-1 [4,8] vs [5,10]: inter 3, union 6 -> exactly 0.5 (fails m=0.5, strict >).
        #     [5,9] vs [4,8]: 3/5 = 0.6 > 0.45, suppressed. [6,10] vs [4,8]: 2/6, kept; vs gt 4/5 = 0.8.
        #     centre 6 in. length 4/20.
        (20.0, [5.0, 10.0], [[4.0, 8.0], [5.0, 9.0], [6.0, 10.0]]),
        # Q3: [6,9] vs [2,4]: 0, centre 7.5 out, length 3/10. [0,10] vs [6,9]: 3/10 kept; vs gt 2/10 = 0.2.
        (10.0, [2.0, 4.0], [[6.0, 9.0], [0.0, 10.0]]),
    ]
    expected = {
        "R1@0.1": 2 / 4, "R1@0.3": 2 / 4, "R1@0.5": 1 / 4, "R1@0.7": 1 / 4,  # Q0+Q2, Q0+Q2, Q0, Q0
        "R5@0.1": 4 / 4, "R5@0.3": 3 / 4, "R5@0.5": 3 / 4, "R5@0.7": 3 / 4,  # all, Q0-Q2 (Q3's best is 0.2)
        "mIoU": (1 + 0 + 0.5 + 0) / 4,
        "centre_in": 2 / 4,
        "pred_len": (10 / 30 + 5 / 30 + 4 / 20 + 3 / 10) / 4,  # = 0.25
        "n": 4, "n_clipped_pred": 1, "n_clipped_gt": 1,
    }  # fmt: skip
    assert_metrics(run(queries), expected)


def test_iou_equal_to_threshold_does_not_count() -> None:
    # gt [0,10], pred [0,5]: inter 5, union 10 -> IoU exactly 0.5; "IoU > m" is strict.
    result = run([(10.0, [0.0, 10.0], [[0.0, 5.0]])])
    assert_metrics(result, {"R1@0.3": 1.0, "R1@0.5": 0.0, "R5@0.5": 0.0, "mIoU": 0.5})


# Decimal spans whose IoU is exactly a threshold, but whose float64 IoU comes out one ulp or so above it
# (found by a search over 2-decimal spans): (duration, gt, tied prediction, the same prediction 0.01 s longer).
EXACT_TIES = {
    0.3: (84.8, [0.0, 84.8], [11.34, 36.78], [11.34, 36.79]),  # issue 19: 25.44 / 84.8 = 3/10
    0.5: (70.0, [0.75, 63.21], [28.86, 60.09], [28.86, 60.10]),  # 31.23 / 62.46 = 1/2
    0.7: (120.0, [44.95, 106.35], [46.72, 89.7], [46.72, 89.71]),  # 42.98 / 61.4 = 7/10
}


@pytest.mark.parametrize("m", sorted(EXACT_TIES))
def test_exact_ties_are_misses_and_just_above_is_a_hit(m: float) -> None:
    duration, gt, tied, above = EXACT_TIES[m]
    assert temporal_iou(f64(tied), f64(gt)).item() > m  # the float rounding the exact comparison is there for
    exact, floating = run([(duration, gt, [tied])]), run([(duration, gt, [tied])], ties="float")
    assert exact[f"R1@{m}"] == 0.0 and exact[f"R5@{m}"] == 0.0 and exact[f"dR1@{m}"] == 0.0
    assert floating[f"R1@{m}"] == 1.0 and floating[f"R5@{m}"] == 1.0  # v1 counted the tie as a hit
    assert exact[f"n_tied@{m}"] == floating[f"n_tied@{m}"] == 1  # reported in both modes
    assert exact["mIoU"] == m  # inter / union from the grid: the exact decimal, not 0.30000000000000004
    hit = run([(duration, gt, [above])])
    assert hit[f"R1@{m}"] == 1.0 and hit[f"n_tied@{m}"] == 0
    # the lower thresholds are hits either way, the higher ones misses
    for other in IOU_THRESHOLDS:
        if other != m:
            assert exact[f"R1@{other}"] == floating[f"R1@{other}"] == float(other < m)
    assert bool(iou_exceeds(f64(tied), f64(gt), m)) is False and bool(iou_exceeds(f64(above), f64(gt), m)) is True


def test_nms_threshold_tie_is_exact() -> None:
    # [37.19, 42.59] inside [33.3, 45.3]: IoU 5.4 / 12 = 0.45 exactly, float64 0.45000000000000046. NMS drops a span
    # only when its IoU with a kept one is > 0.45, so exactly it is kept; v1's float NMS suppressed it.
    spans = [[33.3, 45.3], [37.19, 42.59]]
    kept, kept_valid = nms(f64([spans]))
    assert kept_valid[0].tolist() == [True, True, False, False, False]
    kept, kept_valid = nms(f64([spans]), ties="float")
    assert kept_valid[0].tolist() == [True, False, False, False, False]
    # gt = the second span: top-1 IoU 0.45 (R1@0.3 hit, R1@0.5 miss); the second span's IoU 1 reaches R@5 only if
    # NMS keeps it.
    query = [(120.0, [37.19, 42.59], spans)]
    assert_metrics(run(query), {"R1@0.3": 1.0, "R1@0.5": 0.0, "R5@0.7": 1.0, "mIoU": 0.45})
    assert_metrics(run(query, ties="float"), {"R1@0.3": 1.0, "R1@0.5": 0.0, "R5@0.7": 0.0})


def test_centre_in_is_exact() -> None:
    # top-1 [0.1, 0.2]: centre 0.15 exactly, the ground truth's end; float64 (0.1 + 0.2) / 2 = 0.15000000000000002.
    result = run([(10.0, [0.0, 0.15], [[0.1, 0.2]])])
    assert result["centre_in"] == 1.0
    assert run([(10.0, [0.0, 0.15], [[0.1, 0.2]])], ties="float")["centre_in"] == 0.0


def test_the_grid_and_its_limits() -> None:
    grid = to_grid(f64([84.8, 0.15 * 84.8, 11 * 84.8 / 64, 84.8 / 3]))  # float64 12.719999999999999, 14.575000000000001
    assert grid.tolist() == [84_800_000_000, 12_720_000_000, 14_575_000_000, 28_266_666_667]
    assert TIME_GRID == 10**9
    with pytest.raises(ValueError, match="beyond"):
        to_grid(f64([2e6]))
    with pytest.raises(ValueError, match="3 decimal places"):
        run([(10.0, [0.0, 5.0], [[0.0, 5.0]])], nms_threshold=0.12345)
    assert run([(10.0, [0.0, 5.0], [[0.0, 5.0]])], nms_threshold=0.12345, ties="float")["R1@0.7"] == 1.0
    with pytest.raises(ValueError, match="unknown ties mode"):
        run([(10.0, [0.0, 5.0], [[0.0, 5.0]])], ties="round")
    assert "exactly" in DEFINITION and "v2" in DEFINITION and definition() == DEFINITION
    assert "FLOAT TIES" in definition("float")


def test_discounted_recall_by_hand() -> None:
    queries = [
        # D 100, gt [20, 60], top-1 [25, 55]: IoU 30/40 = 0.75, a hit at every m. Discount (1 - 5/100)(1 - 5/100).
        (100.0, [20.0, 60.0], [[25.0, 55.0]]),
        # D 50, gt [0, 50], top-1 [0, 20]: IoU 0.4 (hits at 0.1 and 0.3). Discount (1 - 0)(1 - 30/50) = 0.4.
        (50.0, [0.0, 50.0], [[0.0, 20.0]]),
        # D 10, gt [0, 1], top-1 [5, 6]: IoU 0, no hit, so nothing to discount. The second span would hit at R@5,
        # which dR@1 never sees.
        (10.0, [0.0, 1.0], [[5.0, 6.0], [0.0, 1.0]]),
    ]
    expected = {
        "dR1@0.1": (0.9025 + 0.4) / 3, "dR1@0.3": (0.9025 + 0.4) / 3, "dR1@0.5": 0.9025 / 3, "dR1@0.7": 0.9025 / 3,
        "R1@0.3": 2 / 3, "R1@0.5": 1 / 3, "R5@0.7": 2 / 3,
    }  # fmt: skip
    assert_metrics(run(queries), expected)
    per_query = score_queries(*batch(queries, pad=0.0))
    assert per_query.values["dR1@0.3"].tolist() == pytest.approx([0.9025, 0.4, 0.0], abs=1e-15)
    for key in METRIC_KEYS + DIAGNOSTIC_KEYS:  # evaluate() is the mean of the per-query values
        assert run(queries)[key] == pytest.approx(per_query.values[key].mean().item(), abs=1e-15)
    # dR never exceeds R: the discount lies in [0, 1]
    for m in IOU_THRESHOLDS:
        assert run(queries)[f"dR1@{m}"] <= run(queries)[f"R1@{m}"]


VAL_2 = SHARED / "data" / "activitynet-captions" / "val_2.json"


@pytest.mark.skipif(not VAL_2.is_file(), reason=f"the real val_2 annotations are not at {VAL_2} (set WSVG_SHARED)")
def test_real_val_2_fixed_span_ties() -> None:
    """The fixed span [0.15, 0.85] of every video (70 %, as the blind prior predicts it: fractions times the float64
    duration) on the real val_2: every whole-video moment has IoU 0.7 exactly with it. Measured here: 631 of the
    17,031 queries (3.7 %) sit exactly on 0.7; float64 counts 184 of them (1.08 % of all queries) as hits.

    The exact evaluator must agree, query by query and at every threshold, with rational arithmetic on the decimals
    of the file (the span's decimal is 0.15 D and 0.85 D)."""
    moments = read_captions(VAL_2, "val_2", SkipPolicy(skip=True)).moments
    duration = f64([m.duration for m in moments])
    gt = f64([[m.start, m.end] for m in moments])
    pred = (f64([0.15, 0.85])[None, :] * duration[:, None])[:, None, :]  # as methods/blind.fixed_span
    exact, floating = score_queries(pred, gt, duration), score_queries(pred, gt, duration, ties="float")
    truth = []
    for m in moments:
        d = Fraction(str(m.duration))  # the file's decimal (298 durations carry float noise: 150.42000000000002)
        s, e = Fraction(str(m.start)), min(Fraction(str(m.end)), d)
        ps, pe = Fraction(15, 100) * d, Fraction(85, 100) * d
        s, e, ps, pe = (Fraction(round(t * TIME_GRID), TIME_GRID) for t in (s, e, ps, pe))  # the 1 ns grid
        truth.append((max(Fraction(0), min(e, pe) - max(s, ps))) / (max(e, pe) - min(s, ps)))
    for m in IOU_THRESHOLDS:
        limit = Fraction(str(m))
        assert exact.values[f"R1@{m}"].bool().tolist() == [iou > limit for iou in truth], m
        assert exact.tied[m].tolist() == [iou == limit for iou in truth], m
    n_query, tied = len(moments), exact.tied[0.7]
    assert int(tied.sum()) == sum(iou == Fraction(7, 10) for iou in truth) == 645
    assert exact.values["R1@0.7"][tied].sum() == 0  # every exact tie is a miss ...
    float_tie_hits = int(floating.values["R1@0.7"][tied].sum())
    assert float_tie_hits == 197  # ... and float64 counted 197 of them as hits
    assert 0.009 < float_tie_hits / n_query < 0.013  # R@1 IoU=0.7 moves by about a point on rounding alone
    untied = ~tied
    assert torch.equal(exact.values["R1@0.7"][untied], floating.values["R1@0.7"][untied])
    assert exact.means()["n_tied@0.7"] == floating.means()["n_tied@0.7"] == 645


def test_zero_length_spans() -> None:
    # Documented choice: union <= 0 gives IoU 0, so identical points have IoU 0; a point has IoU 0 with
    # anything.
    assert temporal_iou(f64([5.0, 5.0]), f64([5.0, 5.0])).item() == 0.0
    assert temporal_iou(f64([5.0, 5.0]), f64([0.0, 10.0])).item() == 0.0
    # Two identical points therefore do not suppress each other in NMS.
    kept, kept_valid = nms(f64([[[5.0, 5.0], [5.0, 5.0], [0.0, 10.0]]]))
    assert kept_valid[0].tolist() == [True, True, True, False, False]
    # gt [0,10]: top-1 point at 5 -> IoU 0, centre 5 inside, length 0; [0,10] is kept third with IoU 1.
    result = run([(20.0, [0.0, 10.0], [[5.0, 5.0], [5.0, 5.0], [0.0, 10.0]])])
    assert_metrics(result, {"R1@0.1": 0.0, "R5@0.7": 1.0, "mIoU": 0.0, "centre_in": 1.0, "pred_len": 0.0})
    # A zero-length ground truth can never be hit in the standard IoU.
    assert run([(20.0, [3.0, 3.0], [[3.0, 3.0], [2.0, 4.0]])])["R5@0.1"] == 0.0


def test_spans_past_the_duration_are_clipped_and_counted() -> None:
    queries = [
        # pred [-5,10] -> [0,10], [15,30] -> [15,20]; gt [15,25] -> [15,20]. Top-1 IoU 0; second IoU 1.
        (20.0, [15.0, 25.0], [[-5.0, 10.0], [15.0, 30.0]]),
        # [25,30] lies wholly past the end: it becomes the point [20,20]; IoU 0, length 0; [0,5] not clipped.
        (20.0, [0.0, 5.0], [[25.0, 30.0], [0.0, 5.0]]),
        (20.0, [0.0, 5.0], [[0.0, 5.0]]),  # nothing clipped
    ]
    result = run(queries)
    assert_metrics(result, {"n_clipped_pred": 2, "n_clipped_gt": 1, "R1@0.1": 1 / 3, "R5@0.7": 1.0})
    assert result["pred_len"] == pytest.approx((10 / 20 + 0 + 5 / 20) / 3)


def test_ties_in_score_keep_the_file_order(tmp_path: Path) -> None:
    # Documented: the evaluator never re-sorts; between equal scores the earlier line entry ranks higher.
    # gt [10,20]: [10,15] has IoU 0.5 (fails m=0.5), [10,20] has IoU 1.
    first, second = [10.0, 15.0, 2.0], [10.0, 20.0, 2.0]
    for spans, r1 in (([first, second], 0.0), ([second, first], 1.0)):
        path = tmp_path / "tie.jsonl"
        path.write_text(json.dumps({"qid": "t#0", "duration": 50.0, "gt": [10.0, 20.0], "pred": spans}) + "\n")
        assert read_predictions(path).pred[0].tolist() == [s[:2] for s in spans]
        assert evaluate_file(path)["R1@0.5"] == r1


def test_fewer_than_five_candidates() -> None:
    kept, kept_valid = nms(f64([[[0.0, 4.0], [6.0, 10.0]]]))
    assert kept_valid.tolist() == [[True, True, False, False, False]]
    assert kept[0, 2:].tolist() == [[0.0, 0.0]] * 3  # padding is zeros
    # gt [6,10]: the second (and last) candidate is a hit; a single-candidate query works too.
    result = run([(10.0, [6.0, 10.0], [[0.0, 4.0], [6.0, 10.0]]), (10.0, [0.0, 1.0], [[0.0, 1.0]])])
    assert_metrics(result, {"R1@0.7": 0.5, "R5@0.7": 1.0, "mIoU": 0.5})


def test_padding_can_sit_anywhere_and_hold_anything() -> None:
    # Padding (valid False) is skipped wherever it sits, even NaN/inf or start > end.
    pred = f64([[[math.nan, math.inf], [0.0, 5.0], [9.0, 1.0], [0.0, 10.0]]])
    valid = torch.tensor([[False, True, False, True]])
    # Top-1 is the first VALID span, [0,5]: IoU 0.5 with gt [0,10]. [0,10] vs [0,5] is 5/10 = 0.5:
    # suppressed at NMS 0.45 (0.5 > 0.45), kept at NMS 0.5 (not > 0.5), where its IoU 1 hits m = 0.5.
    kept, kept_valid = nms(torch.where(valid[..., None], pred, 0.0), valid)
    assert kept[0, 0].tolist() == [0.0, 5.0] and kept_valid[0].tolist() == [True, False, False, False, False]
    gt, duration = f64([[0.0, 10.0]]), f64([10.0])
    assert_metrics(evaluate(pred, gt, duration, valid), {"mIoU": 0.5, "R1@0.3": 1.0, "R5@0.5": 0.0})
    assert_metrics(evaluate(pred, gt, duration, valid, nms_threshold=0.5), {"R1@0.5": 0.0, "R5@0.5": 1.0})


def test_inflated_original_mode_by_hand() -> None:
    gt, pred = f64([0.0, 1.0]), f64([0.5, 1.5])
    # standard: inter 0.5, union 1.5 -> 1/3. inflated: (0.5 + 1) / (1.5 + 1) = 0.6.
    assert temporal_iou(pred, gt).item() == pytest.approx(1 / 3)
    assert temporal_iou(pred, gt, mode="inflated-original").item() == pytest.approx(0.6)
    # Disjoint spans 0.5 s apart: raw overlap -0.5, hull 4 -> (-0.5 + 1) / (4 + 1) = 0.1 (standard 0);
    # 8 s apart the raw value is negative and is clamped to 0, as in the original code.
    assert temporal_iou(f64([0.0, 2.0]), f64([2.5, 4.0]), mode="inflated-original").item() == pytest.approx(0.1)
    assert temporal_iou(f64([0.0, 2.0]), f64([10.0, 12.0]), mode="inflated-original").item() == 0.0
    queries = [(10.0, [0.0, 1.0], [[0.5, 1.5]])]
    assert_metrics(run(queries), {"R1@0.3": 1.0, "R1@0.5": 0.0, "mIoU": 1 / 3})
    assert_metrics(run(queries, iou_mode="inflated-original"), {"R1@0.5": 1.0, "R1@0.7": 0.0, "mIoU": 0.6})
    with pytest.raises(ValueError, match="unknown IoU mode"):
        run(queries, iou_mode="inflated")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda p, g, d, v: p.__setitem__((1, 0), f64([5.0, 4.0])), "start > end"),
        (lambda p, g, d, v: p.__setitem__((1, 0, 1), math.nan), "non-finite"),
        (lambda p, g, d, v: g.__setitem__((1, 1), math.inf), "non-finite"),
        (lambda p, g, d, v: g.__setitem__(1, f64([3.0, 2.0])), "start > end"),
        (lambda p, g, d, v: d.__setitem__(1, 0.0), "duration"),
        (lambda p, g, d, v: d.__setitem__(1, -3.0), "duration"),
        (lambda p, g, d, v: v.__setitem__(1, False), "no valid prediction"),
    ],
)
def test_bad_input_raises_with_the_query_index(change, fragment: str) -> None:
    pred, gt, duration, valid = batch([(10.0, [0.0, 5.0], [[0.0, 5.0]])] * 3, pad=0.0)
    change(pred, gt, duration, valid)
    with pytest.raises(ValueError, match="query index 1") as err:
        evaluate(pred, gt, duration, valid)
    assert fragment in str(err.value)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="gt must have shape"):
        evaluate(torch.zeros(2, 3, 2), torch.zeros(3, 2), torch.ones(2))
    with pytest.raises(ValueError, match=r"pred must be \[Q, K, 2\]"):
        evaluate(torch.zeros(2, 3), torch.zeros(2, 2), torch.ones(2))


def test_large_k_matches_the_reference() -> None:
    # The 2D-TAN map has 1104 candidates; continuous random spans, 40 queries.
    rng = random.Random(0)
    queries = []
    for _ in range(40):
        duration = rng.uniform(5.0, 200.0)
        spans = [sorted((rng.uniform(-5, duration + 5), rng.uniform(-5, duration + 5))) for _ in range(1104)]
        queries.append((duration, sorted((rng.uniform(0, duration), rng.uniform(0, duration))), spans))
    assert_metrics(run(queries), ref_evaluate(queries))


# ---------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(a=span_st, b=span_st, mode=st.sampled_from(["standard", "inflated-original"]))
def test_iou_symmetric_and_bounded(a, b, mode: str) -> None:
    ab, ba = temporal_iou(f64(a), f64(b), mode).item(), temporal_iou(f64(b), f64(a), mode).item()
    assert ab == ba
    assert 0.0 <= ab <= 1.0
    if mode == "standard":
        assert ab == ref_iou(a, b)
    if a[1] > a[0]:
        assert temporal_iou(f64(a), f64(a), mode).item() == 1.0


@settings(max_examples=200, deadline=None)
@given(spans=st.lists(span_st, min_size=1, max_size=12), threshold=st.sampled_from([0.0, 0.3, 0.45, 0.5, 0.9]))
def test_nms_kept_spans_do_not_overlap_beyond_threshold(spans, threshold: float) -> None:
    kept, kept_valid = nms(f64([spans]), threshold=threshold)
    kept_spans = kept[0][kept_valid[0]].tolist()
    assert kept_spans == ref_nms(spans, threshold, exact=True)
    for i, a in enumerate(kept_spans):
        for b in kept_spans[i + 1 :]:
            assert ref_iou_exact([on_grid(t) for t in a], [on_grid(t) for t in b]) <= Fraction(str(threshold))
    kept, kept_valid = nms(f64([spans]), threshold=threshold, ties="float")
    assert kept[0][kept_valid[0]].tolist() == ref_nms(spans, threshold)  # v1's float NMS, kept for comparison


@settings(max_examples=200, deadline=None)
@given(queries=batch_st(), threshold=st.sampled_from([0.3, 0.45, 0.5]))
def test_batched_evaluate_equals_the_reference(queries, threshold: float) -> None:
    result = run(queries, nms_threshold=threshold)
    assert_metrics(result, ref_evaluate(queries, threshold))
    assert_metrics(run(queries, nms_threshold=threshold, ties="float"), ref_evaluate(queries, threshold, exact=False))
    for m in IOU_THRESHOLDS:
        assert result[f"R5@{m}"] >= result[f"R1@{m}"]
    for n in RECALL_AT:
        values = [result[f"R{n}@{m}"] for m in IOU_THRESHOLDS]
        assert values == sorted(values, reverse=True)
    assert all(0.0 <= result[key] <= 1.0 for key in METRIC_KEYS + DIAGNOSTIC_KEYS)


@settings(max_examples=100, deadline=None)
@given(queries=batch_st(), data=st.data())
def test_permuting_queries_does_not_change_the_metrics(queries, data) -> None:
    order = data.draw(st.permutations(range(len(queries))))
    result, permuted = run(queries), run([queries[i] for i in order])
    for key in METRIC_KEYS + DIAGNOSTIC_KEYS + TIE_KEYS + ("n", "n_clipped_pred", "n_clipped_gt"):
        assert permuted[key] == pytest.approx(result[key], abs=1e-12)


# ---------------------------------------------------------------- predictions files


def test_golden_file() -> None:
    # tests/data/predictions_golden.jsonl (NMS 0.45; its blank line and extra key are there on purpose):
    # golden#0 (duration 60, gt [2,12]): the §9 vector. Top-1 [0,10] IoU 2/3; kept [0,10],[20,30],[5,15],
    #   best kept IoU 2/3. centre 5 in. length 10/60.
    # late#1 (duration 100, gt [40,60], no scores): [90,110] is clipped to [90,100]. NMS keeps all four
    #   ([10,30] vs [0,20] = 10/30 <= 0.45). Top-1 [0,20] IoU 0, centre 10 out, length 20/100.
    #   Best kept: [45,65] inter 15, union 25 = 0.6.
    # tie#2 (duration 50, gt [10,20], tied scores 2.0): file order makes [10,15] top-1: IoU 5/10 = 0.5
    #   (fails m=0.5). [10,20] vs [10,15] = 0.5 > 0.45: suppressed. [0,50] kept, IoU 10/50 = 0.2.
    #   centre 12.5 in. length 5/50.
    # R1@0.1 = R1@0.3 = 2/3 (golden, tie); R1@0.5 = 1/3 (golden); R1@0.7 = 0.
    # R5@0.1 = R5@0.3 = 1; R5@0.5 = 2/3 (golden 0.667, late 0.6; tie's best is 0.5); R5@0.7 = 0.
    # mIoU = (2/3 + 0 + 1/2) / 3 = 7/18; centre_in = 2/3; pred_len = (1/6 + 1/5 + 1/10) / 3 = 7/45.
    expected = {
        "R1@0.1": 2 / 3, "R1@0.3": 2 / 3, "R1@0.5": 1 / 3, "R1@0.7": 0.0,
        "R5@0.1": 1.0, "R5@0.3": 1.0, "R5@0.5": 2 / 3, "R5@0.7": 0.0,
        "mIoU": 7 / 18, "centre_in": 2 / 3, "pred_len": 7 / 45,
        "n": 3, "n_clipped_pred": 1, "n_clipped_gt": 0,
    }  # fmt: skip
    assert_metrics(evaluate_file(DATA / "predictions_golden.jsonl"), expected)
    predictions = read_predictions(DATA / "predictions_golden.jsonl")
    assert predictions.qids == ["golden#0", "late#1", "tie#2"]
    assert predictions.valid.sum(dim=1).tolist() == [4, 4, 3]
    assert torch.isnan(predictions.scores[1]).all()  # late#1 has no scores


def test_write_read_round_trip(tmp_path: Path) -> None:
    pred, gt, duration, valid = batch(
        [(60.5, [1.25, 7.0], [[0.0, 3.5], [2.0, 9.0], [1.0, 1.0]]), (12.0, [0.0, 12.0], [[0.1, 0.3]])],
        pad=0.0,
    )
    scores = f64([[0.9, 0.9, 0.1], [math.nan, math.nan, math.nan]])
    path = tmp_path / "round.jsonl"
    write_predictions(path, ["a#0", "b#1"], duration, gt, pred, scores, valid)
    back = read_predictions(path)
    assert back.qids == ["a#0", "b#1"]
    for name, tensor in (("duration", duration), ("gt", gt), ("pred", pred), ("valid", valid)):
        assert torch.equal(getattr(back, name), tensor), name
    assert torch.equal(back.scores.nan_to_num(-1.0), torch.where(valid, scores, math.nan).nan_to_num(-1.0))
    assert evaluate_file(path) == evaluate(pred, gt, duration, valid)
    write_predictions(path, ["a#0", "b#1"], duration, gt, pred, valid=valid)  # no scores at all
    assert torch.isnan(read_predictions(path).scores).all()


GOOD = '{"qid": "ok#0", "duration": 10, "gt": [1, 2], "pred": [[1, 2, 0.5]]}'
BAD_LINES = {
    "bad JSON": '{"qid": "x#1", "duration": 10,',
    "not an object": "[1, 2]",
    "missing qid": '{"duration": 10, "gt": [1, 2], "pred": [[1, 2]]}',
    "missing key": '{"qid": "x#1", "duration": 10, "pred": [[1, 2]]}',
    "duplicate qid": GOOD,
    "gt wrong shape": '{"qid": "x#1", "duration": 10, "gt": [1, 2, 3], "pred": [[1, 2]]}',
    "span wrong shape": '{"qid": "x#1", "duration": 10, "gt": [1, 2], "pred": [[1]]}',
    "pred not a list": '{"qid": "x#1", "duration": 10, "gt": [1, 2], "pred": "1 2"}',
    "non-numeric duration": '{"qid": "x#1", "duration": "ten", "gt": [1, 2], "pred": [[1, 2]]}',
    "non-numeric span": '{"qid": "x#1", "duration": 10, "gt": [1, 2], "pred": [["a", 2]]}',
    "boolean span": '{"qid": "x#1", "duration": 10, "gt": [1, 2], "pred": [[true, 2]]}',
    "NaN": '{"qid": "x#1", "duration": 10, "gt": [1, 2], "pred": [[NaN, 2]]}',
    "duration <= 0": '{"qid": "x#1", "duration": 0, "gt": [1, 2], "pred": [[1, 2]]}',
    "scores increase": '{"qid": "x#1", "duration": 10, "gt": [1, 2], "pred": [[1, 2, 0.5], [0, 3, 0.9]]}',
    "mixed scores": '{"qid": "x#1", "duration": 10, "gt": [1, 2], "pred": [[1, 2, 0.5], [0, 3]]}',
    "empty pred": '{"qid": "x#1", "duration": 10, "gt": [1, 2], "pred": []}',
    "pred start > end": '{"qid": "x#1", "duration": 10, "gt": [1, 2], "pred": [[0, 1], [3, 2]]}',
    "gt start > end": '{"qid": "x#1", "duration": 10, "gt": [2, 1], "pred": [[1, 2]]}',
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_file_errors_name_the_file_and_line(case: str, tmp_path: Path) -> None:
    path = tmp_path / "my_preds.jsonl"
    path.write_text(f"{GOOD}\n\n{BAD_LINES[case]}\n")  # the bad entry sits on line 3 (line 2 is blank)
    with pytest.raises(ValueError) as err:
        read_predictions(path)
    message = str(err.value)
    assert "my_preds.jsonl" in message and "line 3" in message and "Fix:" in message
    if case not in ("bad JSON", "not an object", "missing qid"):  # the qid is known: it is named
        assert ("'ok#0'" if case == "duplicate qid" else "'x#1'") in message


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(ValueError, match="empty.jsonl"):
        read_predictions(path)


def test_cli_evaluate_reports_exact_ties_and_labels_float_ties(tmp_path: Path, capsys) -> None:
    from bench import cli

    path = tmp_path / "ties.jsonl"
    lines = [
        {"qid": "issue19#0", "duration": 84.8, "gt": [0.0, 84.8], "pred": [[11.34, 36.78]]},  # IoU 3/10 exactly
        {"qid": "half#1", "duration": 70.0, "gt": [0.75, 63.21], "pred": [[28.86, 60.09]]},  # IoU 1/2 exactly
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert cli.main(["evaluate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ties exact" in out and "FLOAT TIES" not in out
    assert "IoU=0.1: 0, IoU=0.3: 1, IoU=0.5: 1, IoU=0.7: 0" in out
    assert re.search(r"R@1 IoU=0.3 +50.00", out) and re.search(r"R@1 IoU=0.5 +0.00", out)
    assert cli.main(["evaluate", str(path), "--float-ties"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: FLOAT TIES" in out and re.search(r"R@1 IoU=0.3 +100.00", out)
    assert cli.main(["evaluate", str(path), "--json", "--float-ties"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ties"] == "float" and "FLOAT TIES" in data["evaluator"] and data["n_tied@0.3"] == 1
    assert data["R1@0.5"] == 0.5  # float64 counts the 1/2 tie as a hit (exactly: 0)


@pytest.mark.parametrize("case", ["missing", "directory", "not UTF-8"])
def test_cli_evaluate_unreadable_file_is_one_line_naming_it(tmp_path: Path, capsys, case: str) -> None:
    from bench import cli

    path = {"missing": tmp_path / "nope.jsonl", "directory": tmp_path, "not UTF-8": tmp_path / "latin1.jsonl"}[case]
    if case == "not UTF-8":
        path.write_bytes('{"qid": "caf\xe9#0"}\n'.encode("latin-1"))
    assert cli.main(["evaluate", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1, captured.err
    assert lines[0].startswith(f"bench evaluate: error: {path}: ") and "Fix: " in lines[0]
    assert "Errno" not in lines[0]
