"""``bench calibrate``: the ladder's targets by hand, and its breakdown by moment length on real tracked runs.

The breakdown's end-to-end case uses the whole-video row, whose hits follow from the annotations alone: the whole
video's IoU with a moment is the moment's share of the video, so it hits at IoU=0.5 exactly when that share is
above 0.5 (every bin up to 0.35 at 0, the bin above 0.6 at 100 %, the bin between them at its share of moments
longer than half the video).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import calibrate, cli, tracking


def rung(method: str, r1: float, kind: str = "reference") -> calibrate.Rung:
    return calibrate.Rung(method, kind, {"R1@0.5": r1}, {"R1@0.5": None}, 1)


def test_targets_give_the_margins_against_the_prior():
    rungs = [rung("prior", 0.30, "blind"), rung("vslnet-text", 0.52), rung("2dtan-text", 0.41), ("vslnet", "reference")]
    got = {what.split()[0]: (met, numbers) for what, met, numbers in calibrate.targets(rungs)}
    assert got["vslnet-text"] == (True, "52.00 vs prior 30.00: +22.00")  # 52 - 30 = 22 >= 20, and < 90
    assert got["2dtan-text"] == (False, "41.00 vs prior 30.00: +11.00")
    assert got["vslnet"] == (None, "needs runs of both")
    over = calibrate.targets([rung("prior", 0.30, "blind"), rung("vslnet-text", 0.95)])
    assert over[0][1] is False  # +65 clears the margin but not the cap of 90: a world too easy to tell methods apart


def test_length_bins_are_left_open_and_right_closed():
    lengths = [0.0, 0.05, 0.1, 0.1001, 0.2, 0.35, 0.5, 0.6, 0.61, 1.0]
    assert calibrate.length_bins(np.array(lengths)).tolist() == [0, 0, 0, 1, 1, 2, 3, 3, 4, 4]


def test_bin_recall_by_hand_and_an_unknown_query_is_an_error():
    lengths = {"a": 0.05, "b": 0.08, "c": 0.5, "d": 0.9}
    hits = {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.25}  # d: a mean over draws
    assert calibrate.bin_recall(lengths, hits) == [0.5, None, None, 1.0, 0.25]
    with pytest.raises(ValueError, match="no ground-truth length"):
        calibrate.bin_recall(lengths, {**hits, "e": 1.0})


def test_by_length_on_tracked_runs_follows_the_whole_videos_rule(tiny, capsys):
    _, data = tiny
    argv = ["run", "--method", "whole-video,prior", "--profile", "tiny", "--seeds", "0", "--device", "cpu"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    ann = json.loads(data.annotation_path("val_2").read_text())
    shares = np.array([min(e, v["duration"]) / v["duration"] - max(s, 0.0) / v["duration"]
                       for v in ann.values() for s, e in v["timestamps"]])  # fmt: skip
    bins = calibrate.length_bins(shares)
    counts, rungs = calibrate.by_length("synth", "tiny")
    assert counts == [int((bins == b).sum()) for b in range(5)] and sum(counts) == len(shares)
    whole = next(r for r in rungs if r.method == "whole-video")
    expected = [float((shares[bins == b] > 0.5).mean()) if (bins == b).any() else None for b in range(5)]
    assert whole.n == 1 and whole.mean == pytest.approx(expected)
    assert {r.method for r in rungs} == {"whole-video", "prior"}  # rungs without runs are left out
    assert cli.main(["calibrate", "--profile", "tiny", "--by-length"]) == 0
    out = capsys.readouterr().out
    assert "| queries | | | " + " | ".join(f"{c:,}" for c in counts) + " |" in out
    assert "| blind | whole-video | 1 |" in out and "by the ground-truth moment's length" in out
    assert len(tracking.finished_runs({"profile": "tiny"})) == 2


def test_the_swap_table_pairs_each_rungs_runs_with_their_swapped_scores(tiny, capsys):
    """After the test above (its store holds whole-video and prior): VSLNet on the gold text, two seeds through
    `bench run`, scores test_swapped too, and `bench calibrate --swap` sets its logged numbers side by side."""
    argv = ["run", "--method", "vslnet-text", "--profile", "tiny", "--seeds", "0,1", "--device", "cpu"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    runs = tracking.finished_runs({"profile": "tiny"})
    mine = runs[runs["params.method"] == "vslnet-text"]
    own, other = (100 * mine[f"metrics.{p}/R1_IoU0.5"].astype(float) for p in ("test", "test_swapped"))
    rungs, without = calibrate.swap_rungs("synth", "tiny")
    (rung,) = rungs
    assert rung.method == "vslnet-text" and rung.comparison.pairs == [(0, 0), (1, 1)]
    assert 100 * rung.comparison.difference.mean == pytest.approx((own - other).mean(), abs=1e-9)
    assert {"whole-video", "prior", "oracle-concept", "vslnet"} <= set(without)  # blind, oracle, no run
    older = runs.copy()  # seed 1's run as if logged before the swap test: the rung keeps the seed that has it
    older.loc[(older["params.method"] == "vslnet-text") & (older["params.seed"] == "1"),
              "metrics.test_swapped/R1_IoU0.5"] = float("nan")  # fmt: skip
    (partial,), _ = calibrate.swap_rungs("synth", "tiny", runs=older)
    assert partial.comparison.pairs == [(0, 0)]
    assert cli.main(["calibrate", "--profile", "tiny", "--swap"]) == 0
    out = capsys.readouterr().out
    cell = f"| reference | vslnet-text | 2 | {own.mean():.2f} ± {own.std(ddof=1):.2f} | {other.mean():.2f} ± "
    assert cell in out and "No swap test in the runs of: random, prior, whole-video" in out
