"""bench report's figures (bench/figures.py) on a store written by hand: every number a figure plots is known here.

The store holds, on synth/tiny: SIL training runs (seeds 0 and 1) with per-epoch curves and predictions, Base's seed 0
with predictions, robustness runs of SIL and of SIL frequency-only, the semantic-task variants of Figure 5 and SIL
runs of the mask-ratio and T sweeps (one run that also changes another field, which no sweep may count).
"""

from __future__ import annotations

import copy
import json
import math

import pandas as pd
import pytest
from PIL import Image

from bench import cli, config, figures, tables, tracking
from bench.report import FIGURES_FILE
from methods import registry

DEFAULT = config.to_dict(registry.get("sil").config("tiny"))
QIDS = ["v_a#0", "v_a#1", "v_b#0", "v_c#0", "v_c#1"]


def _predictions(path, shift: float) -> None:
    """Five queries of 100 s videos: ground truth [10k, 10k + 30], top-1 shifted by ``shift`` s."""
    lines = []
    for k, qid in enumerate(QIDS):
        gt = [10.0 * k, 10.0 * k + 30]
        lines.append(json.dumps({"qid": qid, "duration": 100.0, "gt": gt,
                                 "pred": [[gt[0] + shift, gt[1] + shift], [0.0, 100.0]]}))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def _log(tmp_path, method: str, seed: int, test: dict[str, float], *, config_: dict | None = None,
         params: dict | None = None, curve: list[tuple[float, float]] = (),
         shift: float | None = None) -> str:  # fmt: skip
    chash, overrides = ("default", "-") if config_ is None else ("a-sweep", "a sweep's --set")
    base = {"method": method, "dataset": "synth", "profile": "tiny", "seed": seed, "config_hash": chash,
            "overrides": overrides, **(params or {})}  # fmt: skip
    with tracking.start_run(f"test/{method}/{seed}", base) as log:
        log.log_dict({"method": method, "config": config_ or DEFAULT}, "config/resolved.json")
        for epoch, (loss, r1) in enumerate(curve, start=1):
            log.log_metrics({"loss": loss}, step=epoch, prefix="train/")
            log.log_metrics({"R1@0.5": r1}, step=epoch, prefix="val/")
        log.log_metrics(test, prefix="test/")
        if shift is not None:
            path = tmp_path / f"{method}-{seed}-test_predictions.jsonl"
            _predictions(path, shift)
            renamed = tmp_path / f"{log.run_id}" / "test_predictions.jsonl"
            renamed.parent.mkdir()
            path.rename(renamed)
            log.log_artifact(renamed, "predictions")
        return log.run_id


def _sweep_config(**changes) -> dict:
    c = copy.deepcopy(DEFAULT)
    for key, value in changes.items():
        node = c
        *head, last = key.split(".")
        for part in head:
            node = node[part]
        node[last] = value
    return c


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The hand-written store, and ``bench report --profile tiny`` run on it once: (out dir, runs, ids)."""
    tmp = tmp_path_factory.mktemp("figures")
    mp = pytest.MonkeyPatch()
    mp.setenv("WSVG_HOME", str(tmp / "runs"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    ids = {}
    ids["sil0"] = _log(tmp, "sil", 0, {"R1@0.5": 0.30}, curve=[(5.0, 0.10), (4.0, 0.20)], shift=0.0)
    ids["sil1"] = _log(tmp, "sil", 1, {"R1@0.5": 0.40}, curve=[(6.0, 0.20), (3.0, 0.30)], shift=5.0)
    _log(tmp, "base", 0, {"R1@0.5": 0.10}, shift=20.0)
    ids["freq0"] = _log(tmp, "sil-freq-only", 0, {"R1@0.5": 0.25})
    for seed, clean in ((0, "sil0"), (1, "sil1")):
        for level, r1 in (("low", 0.28 - 0.02 * seed), ("high", 0.10 + 0.1 * seed)):
            rob = {"measure": "robustness", "source_run": ids[clean], "augment.kind": "noise", "augment.level": level,
                   "augment.noise": "a stand-in bank"}  # fmt: skip
            _log(tmp, "sil", seed, {"R1@0.5": r1}, params=rob)
    rob = {"measure": "robustness", "source_run": ids["freq0"], "augment.kind": "noise", "augment.level": "low"}
    _log(tmp, "sil-freq-only", 0, {"R1@0.5": 0.20}, params=rob)
    for method, r1 in (("base+ldis", 0.12), ("base+lseq", 0.16)):
        for seed in (0, 1):
            _log(tmp, method, seed, {m: r1 + 0.02 * seed for m in figures.SEMANTIC_METRICS}, curve=[(7.0, 0.1)])
    _log(tmp, "sil", 0, {"R1@0.5": 0.50}, config_=_sweep_config(**{"asp.mask_ratio": 0.15}))
    _log(tmp, "sil", 0, {"R1@0.5": 0.60}, config_=_sweep_config(**{"asp.mask_ratio": 0.7, "T": 3}))  # two fields
    _log(tmp, "sil", 0, {"R1@0.5": 0.45}, config_=_sweep_config(T=3))
    out = tmp / "report"
    assert cli.main(["report", "--out", str(out), "--profile", "tiny"]) == 0
    runs = tracking.finished_runs({"dataset": "synth", "profile": "tiny"})
    yield out, runs, ids
    mp.undo()


def _caption_of(png) -> str:
    return Image.open(png).text["Description"]


@pytest.mark.parametrize(
    "name", ["fig4_robustness", "fig5a_semantic", "fig5b_grounding_loss", "fig9a_mask_ratio", "fig9b_T",
             "curves_table01", "timeline"],  # fmt: skip
)
def test_each_figure_is_a_png_and_a_pdf_whose_caption_names_dataset_profile_seeds_and_commit(report, name):
    out, _, _ = report
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    text = _caption_of(png)
    assert "Dataset synth, profile tiny, test split val_2; seeds 0" in text
    assert tracking.git_state()["commit"][:7] in text
    assert text in (out / FIGURES_FILE).read_text()
    if name.startswith(("fig4", "fig5", "fig9")):
        assert "gives no plotted values" in text


def test_figure_4_has_a_point_per_method_kind_and_level_logged_and_its_clean_point_from_the_source_runs(report):
    out, _, ids = report
    data = pd.read_csv(out / "fig4_robustness.csv")
    augmented = data[data["kind"] != "clean"]
    assert sorted(zip(augmented["method"], augmented["level"], strict=True)) == [
        ("sil", "high"), ("sil", "low"), ("sil-freq-only", "low")]  # fmt: skip
    low = data[(data["method"] == "sil") & (data["level"] == "low")].iloc[0]
    assert (low["mean"], low["n"]) == (pytest.approx(27.0), 2)
    assert low["std"] == pytest.approx(math.sqrt(2) * 1.0)  # 28 and 26: sample std sqrt(2)
    one = data[(data["method"] == "sil-freq-only") & (data["level"] == "low")].iloc[0]
    assert one["n"] == 1 and math.isnan(one["std"])  # one seed has no spread: empty in the CSV, never 0.0
    clean = data[(data["method"] == "sil") & (data["kind"] == "clean")].iloc[0]
    assert clean["mean"] == pytest.approx(35.0) and set(clean["run_ids"].split(",")) == {ids["sil0"], ids["sil1"]}
    assert data[data["method"] == "sil"]["label"].iloc[0] == "SIL"  # the paper's series name
    assert "Noise: a stand-in bank." in _caption_of(out / "fig4_robustness.png")


def test_robustness_runs_stay_out_of_the_tables(report):
    _, runs, _ = report
    sil = tables.collect(runs, "sil")  # the newest training run per seed of SIL's own configuration, not a sweep's
    assert sil.n == 2 and sil.mean["R1@0.5"] == pytest.approx((0.30 + 0.40) / 2)


def test_figure_5a_bars_are_the_variants_mean_over_seeds_per_metric(report):
    out, _, _ = report
    data = pd.read_csv(out / "fig5a_semantic.csv")
    assert len(data) == 2 * len(figures.SEMANTIC_METRICS)
    ldis = data[(data["method"] == "base+ldis") & (data["metric"] == "R1@0.5")].iloc[0]
    assert (ldis["mean"], ldis["n"]) == (pytest.approx(13.0), 2)


def test_figure_9_counts_a_run_only_when_it_differs_from_the_default_in_the_swept_key_alone(report):
    out, _, _ = report
    mask = pd.read_csv(out / "fig9a_mask_ratio.csv")
    # the default ratio: SIL's newest training runs (seed 0's newest is the T=3 run: not default, so sil0 and sil1)
    assert mask["value"].tolist() == [0.15, DEFAULT["asp"]["mask_ratio"]]
    assert mask["mean"].tolist() == pytest.approx([50.0, 35.0])
    t = pd.read_csv(out / "fig9b_T.csv")
    assert t["value"].tolist() == [3, DEFAULT["T"]] and t["mean"].tolist() == pytest.approx([45.0, 35.0])


def test_training_curves_average_the_seeds_per_epoch(report):
    out, _, _ = report
    data = pd.read_csv(out / "curves_table01.csv")
    loss = data[(data["method"] == "sil") & (data["key"] == "train/loss")]
    assert loss["epoch"].tolist() == [1, 2] and loss["mean"].tolist() == pytest.approx([5.5, 3.5])
    r1 = data[(data["method"] == "sil") & (data["key"] == "val/R1_IoU0.5")]
    assert r1["mean"].tolist() == pytest.approx([15.0, 25.0]) and set(r1["n"]) == {2}
    assert set(data["method"]) == {"sil"}  # the table's other rows have no history here
    curves_5b = pd.read_csv(out / "fig5b_grounding_loss.csv")
    assert set(curves_5b["method"]) == {"base+ldis", "base+lseq"}


def test_timeline_shows_the_videos_moments_the_ground_truth_and_each_methods_top_1(report):
    out, _, _ = report
    data = pd.read_csv(out / "timeline.csv")
    picked = list(dict.fromkeys(data["qid"]))
    assert len(picked) == figures.TIMELINE_QUERIES
    for qid in picked:
        mine = data[data["qid"] == qid].set_index("row")
        k = QIDS.index(qid)
        assert (mine.loc["ground truth", "start"], mine.loc["ground truth", "end"]) == (10.0 * k, 10.0 * k + 30)
        assert mine.loc["base", "start"] == 10.0 * k + 20  # base's seed-0 run shifts by 20 s
        assert mine.loc["sil", "start"] == 10.0 * k  # seed 0 (the seed both have), unshifted
        same_video = [q for q in QIDS if q.split("#")[0] == qid.split("#")[0]]
        assert (data[data["qid"] == qid]["row"] == "video's moments").sum() == len(same_video)
