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


def test_the_query_views_of_one_caption():
    from bench.data import world

    tokens = world.tokenize("Then he cleans the vehicle with a sponge while music plays in the background.")
    wash_car = next(c for c in world.CONCEPTS if (c.verb, c.obj) == ("wash", "car"))
    assert calibrate.view_tokens("sentence", tokens, wash_car) is tokens
    lemmas = calibrate.view_tokens("lemmas", tokens, wash_car)
    assert lemmas[:5] == ["then", "he", "washes", "the", "car"] and lemmas[5:] == tokens[5:]
    # a word filter: the clause's "plays" is a form of the verb play (play guitar) and stays
    assert calibrate.view_tokens("keywords", tokens, wash_car) == ["cleans", "vehicle", "plays"]
    assert calibrate.view_tokens("canonical", tokens, wash_car) == ["wash", "car"]
    assert calibrate.view_tokens("concept", tokens, wash_car) == [f"concept{wash_car.index}"]
    assert calibrate.view_tokens("keywords", ["music", "stops"], wash_car) == ["music", "stops"]  # never empty
    with pytest.raises(ValueError, match="lemma"):
        calibrate.view_tokens("lemma", tokens, wash_car)


def test_a_query_view_replaces_every_splits_words(tiny):
    import torch

    from bench.data import grounding, world

    home, dataset = tiny
    data = grounding.load(dataset, home / "cache", "cpu", 8, progress=False)
    assert calibrate.query_view(data, dataset, "sentence") is data
    canonical = calibrate.query_view(data, dataset, "canonical")
    files = grounding.split_files(dataset)
    for name in data.split_names:
        split = canonical.split(name)
        concepts = dataset.query_concepts(files[name], split.qids)
        rows = [row[:n] for row, n in zip(split.queries["words"].tolist(), split.queries["words_len"].tolist(),
                                          strict=True)]  # fmt: skip
        known = {w: i + 1 for i, w in enumerate(data.vocab)}  # a word the data never had is row 0, the OOV rule
        expected = [[known.get(world.CONCEPTS[c].verb, 0), known.get(world.CONCEPTS[c].obj, 0)] for c in concepts]
        assert rows == expected, name
        assert torch.equal(split.videos, data.split(name).videos)  # only the words change
    concept = calibrate.query_view(data, dataset, "concept")
    n = len(world.CONCEPTS)
    assert len(concept.vocab) == len(data.vocab) + n and concept.word_vectors.shape[0] == data.word_vectors.shape[0] + n
    assert torch.allclose(concept.word_vectors[-n:].norm(dim=-1), torch.ones(n, dtype=concept.word_vectors.dtype))
    assert set(concept.test.queries["words_len"].tolist()) == {1}
    lemmas = calibrate.query_view(data, dataset, "lemmas")  # one word for one word
    assert torch.equal(lemmas.train.queries["words_len"], data.train.queries["words_len"])
    assert data.train.queries["words"].shape == grounding.load(dataset, home / "cache", "cpu", 8).train.queries[
        "words"].shape  # the loaded data are left as they were  # fmt: skip


def test_a_query_view_trains_a_text_method_and_is_refused_for_speech(tmp_path, monkeypatch):
    monkeypatch.setenv("WSVG_HOME", str(tmp_path / "runs"))
    out = tmp_path / "runs.jsonl"
    argv = ["--profile", "tiny", "--methods", "base-text", "--seeds", "0", "--set", "train.epochs=1",
            "--workers", "0", "--out", str(out), "--query", "sentence", "--query", "canonical"]  # fmt: skip
    text = calibrate.main(argv)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["query"] for r in records) == ["canonical", "sentence"]
    assert "| base-text | 1 |" in text and "| base-text (canonical) | 1 |" in text
    with pytest.raises(SystemExit, match="base do not read"):
        calibrate.main(["--profile", "tiny", "--methods", "base", "--query", "keywords", "--workers", "0"])


def test_swap_test_scores_one_more_split_of_the_same_run_and_is_refused_without_a_query(tmp_path, monkeypatch):
    monkeypatch.setenv("WSVG_HOME", str(tmp_path / "runs"))
    out = tmp_path / "runs.jsonl"
    argv = ["--profile", "tiny", "--methods", "base-text", "--seeds", "0", "--set", "train.epochs=1",
            "--workers", "0", "--out", str(out), "--swap-test"]  # fmt: skip
    text = calibrate.main(argv)
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(record["swapped"]) >= {"R1@0.5", "mIoU"} and 0 < record["n_swapped"] <= record["n_test"]
    swapped = f"{100 * record['swapped']['R1@0.5']:.2f} ± 0.00 | {record['n_swapped']} of {record['n_test']} |"
    assert "| R1@0.5 swapped | swapped queries |" in text and swapped in text
    for method in ("whole-video", "oracle-concept"):
        with pytest.raises(SystemExit, match=f"{method} read none"):
            calibrate.main(["--profile", "tiny", "--methods", method, "--swap-test", "--workers", "0"])
