"""scripts/calibrate.py: world parsing, the summary's arithmetic, and a tiny sweep scored against a hand recount."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bench.data import synth

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "calibrate.py"
spec = importlib.util.spec_from_file_location("calibrate", SCRIPT)
calibrate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(calibrate)


def test_a_world_is_typed_overrides_of_the_profile():
    c = calibrate.parse_world("noise_std=1,scene_scale=0,videos=4:2:2", "tiny")
    assert (c.noise_std, c.scene_scale, c.videos) == (1.0, 0.0, (4, 2, 2))
    assert c.corpus_utterances == synth.PROFILES["tiny"].corpus_utterances
    assert c.hash() != synth.PROFILES["tiny"].hash()
    assert calibrate.parse_world("-", "tiny") == synth.PROFILES["tiny"]
    with pytest.raises(ValueError, match="noise_sd"):
        calibrate.parse_world("noise_sd=1", "tiny")


def _record(method: str, seed: int, r05: float) -> dict:
    test = {"R1@0.5": r05, "mIoU": r05, "centre_in": 0.5, "pred_len": 0.25}
    return {"world": "w0", "spec": "-", "content_hash": "h", "method": method, "seed": seed, "test": test,
            "selected_epoch": 3, "seconds": 10.0}  # fmt: skip


def test_summary_means_stds_and_the_ordering_check():
    records = [_record("prior", 0, 0.2), _record("prior", 1, 0.2), _record("base", 0, 0.2), _record("base", 1, 0.4)]
    records += [_record("base-text", 0, 0.5)]
    text = calibrate.summarize(records)
    # base: mean 30 %, sample std of (20, 40) = 14.142...
    assert "| base | 2 | 30.00 ± 14.14 | 30.00 ± 14.14 | 50.00 ± 0.00 | 0.25 ± 0.00 | 3,3 | 10 |" in text
    assert "prior < base < base-text < 100 % on R@1 IoU=0.5: holds" in text
    records[-1] = _record("base-text", 0, 0.25)  # base-text (25) below base (30): the ordering fails
    assert "fails" in calibrate.summarize(records)
    assert "100 %" not in calibrate.summarize(records[:2])  # no ordering line without the three methods


def test_a_tiny_sweep_runs_the_real_methods_without_tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("WSVG_HOME", str(tmp_path / "runs"))
    out = tmp_path / "runs.jsonl"
    argv = ["--profile", "tiny", "--world", "-", "--methods", "whole-video,base-text", "--seeds", "0",
            "--set", "train.epochs=1", "--workers", "0", "--out", str(out)]  # fmt: skip
    text = calibrate.main(argv)
    records = {r["method"]: r for r in map(json.loads, out.read_text().splitlines())}
    # whole video: IoU with a moment = its span / duration, so R@1 IoU=0.5 = share of test moments >= half the video
    root = synth.root_for("tiny")
    test = json.loads((root / "annotations" / "val_2.json").read_text())
    shares = [(e - s) / v["duration"] for v in test.values() for s, e in v["timestamps"]]
    expected = sum(x >= 0.5 for x in shares) / len(shares)
    assert records["whole-video"]["test"]["R1@0.5"] == pytest.approx(expected)
    assert f"| whole-video | 1 | {100 * expected:.2f} ± 0.00 |" in text
    trained = records["base-text"]
    assert trained["selected_epoch"] == 1 and len(trained["curves"]["val/R1@0.5"]) == 1
    assert trained["content_hash"] == synth.SynthDataset.from_root(root, "tiny").content_hash
    assert not (tmp_path / "runs" / "mlflow.db").exists()  # nothing tracked


def test_a_set_key_no_method_has_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("WSVG_HOME", str(tmp_path / "runs"))
    with pytest.raises(SystemExit, match="train.epoch"):
        calibrate.main(["--profile", "tiny", "--methods", "prior", "--set", "train.epoch=1", "--workers", "0"])
