"""scripts/bench_latency.py (Table 2) on the tiny synthetic benchmark: what it measures and records, never how fast.

Wall-clock values depend on the machine, so nothing here asserts on them. The checks are that the three systems are
measured, that the printed and recorded ratios are the ratios of the measured latencies, that each system's timed
path gives the same top-1 as the suite's own inference (``sil.with_speech_features`` / ``textquery.replace_words``
+ ``recipe.rank_split``), so what is timed is the real inference, and that ``bench table 2`` shows the values.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench import cli, stages, tables
from bench.data import corpus, grounding, loader
from bench.data.librispeech import load_audio
from methods import asr, sil
from methods.parts import recipe, textquery

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_latency.py"
_spec = importlib.util.spec_from_file_location("bench_latency", SCRIPT)
bench_latency = importlib.util.module_from_spec(_spec)
sys.modules["bench_latency"] = bench_latency  # dataclasses resolve the module's annotations through sys.modules
_spec.loader.exec_module(bench_latency)

N_QUERIES = 3


@pytest.fixture(scope="module")
def measured(tiny):
    """One measurement of 3 test queries (1 warm-up), recorded in the module's run directory; and what it printed."""
    threads = torch.get_num_threads()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = bench_latency.main(["--profile", "tiny", "--queries", str(N_QUERIES), "--warmup", "1"])
    torch.set_num_threads(threads)
    return result, out.getvalue()


def _test_subset(split: grounding.GroundingSplit, qids: list[str]) -> grounding.GroundingSplit:
    """The test split restricted to ``qids``, in that order (every field, padded as it was)."""
    idx = torch.tensor([split.qids.index(q) for q in qids])
    tensors = {k: v.index_select(0, idx) for k, v in split.queries.tensors.items()}
    return grounding.GroundingSplit(split.name, loader.PaddedSplit(tensors, qids, split.queries.meta), split.videos)


def test_three_systems_measured_with_positive_latencies(tiny, measured):
    result, printed = measured
    _, data = tiny
    test = grounding.load(data, tiny[0] / "cache", "cpu", 64, progress=False).test
    assert result.queries == test.qids[:N_QUERIES]
    assert set(result.seconds) == {"sil", "asr-base", "asr-rtbpn"}
    for system, values in result.seconds.items():
        assert len(values) == N_QUERIES and all(v > 0 for v in values), system
        assert set(result.top1[system]) == set(result.queries)
    # nothing was cached in this run directory: every network is a fresh one, and the output says so
    assert all(w.startswith("fresh") for w in result.models.weights.values())
    assert "weights, encoder: fresh" in printed and "weights, grounding: fresh" in printed


def test_ratios_are_the_ratios_of_the_returned_latencies(measured):
    result, printed = measured
    mean = {s: statistics.fmean(v) for s, v in result.seconds.items()}
    assert result.ratios["asr-base"] == pytest.approx(mean["asr-base"] / mean["sil"], rel=1e-12)
    assert result.ratios["asr-rtbpn"] == pytest.approx(mean["asr-rtbpn"] / mean["sil"], rel=1e-12)
    assert f"ASR-Base / SIL = {mean['asr-base'] / mean['sil']:.2f}x" in printed
    assert f"ASR-RTBPN / SIL = {mean['asr-rtbpn'] / mean['sil']:.2f}x" in printed
    # Table 2's speed-up is relative to ASR-Base
    assert result.speedup("asr-base") == 1.0
    assert result.speedup("sil") == pytest.approx(result.ratios["asr-base"], rel=1e-12)
    assert result.speedup("asr-rtbpn") == pytest.approx(mean["asr-base"] / mean["asr-rtbpn"], rel=1e-12)
    p10, p90 = result.percentiles("sil")
    assert min(result.seconds["sil"]) <= p10 <= result.median("sil") <= p90 <= max(result.seconds["sil"])


def test_sil_timed_top1_is_the_evaluators_top1_on_the_cached_features(tiny, measured, tmp_path):
    """The timed SIL path = the features ``sil.run`` caches (``with_speech_features``) + ``recipe.rank_split``."""
    home, data = tiny
    result, _ = measured
    m = result.models
    c = sil.sil_config("tiny").asp
    stage_dir = tmp_path / "asp-under-test"
    stage_dir.mkdir()
    torch.save({"encoder": m.encoder.state_dict()}, stage_dir / "encoder.pt")
    st = stages.Stage(name="asp", key="latency-test", path=stage_dir)
    ctx = SimpleNamespace(data=data, cache_dir=home / "cache", device=torch.device("cpu"))
    g = grounding.load(data, home / "cache", "cpu", 64, progress=False)
    featured = sil.with_speech_features(ctx, g, st, c, batch_size=1)
    split = _test_subset(featured.test, result.queries)
    spans, _ = recipe.rank_split(m.sil_net, split, 1, 64)
    for i, qid in enumerate(result.queries):
        assert spans[i, 0].tolist() == pytest.approx(list(result.top1["sil"][qid]), abs=1e-6), qid


def test_cascades_transcribe_as_recognise_and_rank_as_the_evaluator(tiny, measured):
    """The timed ASR = ``asr.recognise``; the words = ``textquery.replace_words``; the top-1 = ``rank_split``."""
    home, data = tiny
    result, _ = measured
    m = result.models
    wavs = corpus.query_wavs(data, grounding.SPLIT_FILES["test"])
    waves = [load_audio(wavs[q], resample=True) for q in result.queries]
    expected = dict(zip(result.queries, asr.recognise(m.asr_model, m.processor, waves, 1), strict=True))
    assert result.transcripts["asr-base"] == expected == result.transcripts["asr-rtbpn"]
    test = grounding.load(data, home / "cache", "cpu", 64, progress=False).test
    words, _ = textquery.replace_words(_test_subset(test, result.queries), expected, m.word_row)
    for system, net in (("asr-base", m.base_net), ("asr-rtbpn", m.rtbpn_net)):
        spans, _ = recipe.rank_split(net, words, 1, 64)
        for i, qid in enumerate(result.queries):
            assert spans[i, 0].tolist() == pytest.approx(list(result.top1[system][qid]), abs=1e-6), (system, qid)


def test_bench_table_2_shows_the_recorded_latencies_and_speedups(tiny, measured, capsys):
    result, _ = measured
    assert set(result.run_ids) == {"sil", "asr-base", "asr-rtbpn"} and all(result.run_ids.values())
    capsys.readouterr()
    assert cli.main(["table", "2", "--dataset", "synth", "--profile", "tiny"]) == 0
    lines = [line[2:-2].split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    header = lines[0]
    col = {name: header.index(tables.METRIC_LABELS[name]) for name in ("mIoU", "latency_s", "speedup")}
    label_to_method = {row.label: row.method for row in tables.load_table(2).rows}
    ours: dict[str, list[str]] = {}
    current = None
    for cells in lines[1:]:
        if cells[1] == "paper":
            current = label_to_method.get(cells[0])
        elif cells[1].startswith("ours") and current is not None:
            ours[current] = cells
            current = None
    assert set(ours) == {"sil", "asr-base", "asr-rtbpn"}
    for system, cells in ours.items():
        assert cells[1] == "ours (n=1)"
        assert cells[col["latency_s"]] == f"{result.mean(system):.3f}"  # n = 1: the value alone
        assert cells[col["speedup"]] == f"{result.speedup(system):.2f}"
        assert cells[col["mIoU"]] == "missing"  # a latency run holds no grounding metric
