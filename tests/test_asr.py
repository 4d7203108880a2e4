"""The cascaded baselines' ASR: WER/CER by hand, greedy CTC, a local checkpoint, the cached stages, ``bench wer``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench import cli, tracking
from bench import wer as W
from bench.context import RunContext
from methods import asr, registry

# -- metrics and normalisation, by hand ------------------------------------------------------------------------


def test_normalisation_lower_cases_strips_punctuation_and_collapses_whitespace():
    assert W.normalise("  Don't STOP—now,   a T-shirt / hat!  ") == "dont stop now a t shirt hat"
    assert W.normalise("...") == ""


def test_wer_and_cer_on_a_hand_computed_case():
    refs = {"a": "The cat sat on the mat.", "b": "Hello, World!", "c": "?!"}
    hyps = {"a": "the cat sit on mat", "b": "HELLO world", "c": "anything"}
    totals, rows = W.score(refs, hyps)
    # a: 6 reference words, 'sat'->'sit' + 'the' deleted = 2 edits; b: 2 words, exact. c is empty once normalised.
    assert totals["WER"] == pytest.approx(2 / 8)
    # a: "the cat sat on the mat" has 22 characters; 'a'->'i' and "the " deleted = 5 edits; b: 11 characters, exact
    assert totals["CER"] == pytest.approx(5 / 33)
    assert totals["n"] == 2 and totals["n_empty_ref"] == 1 and totals["ref_words"] == 8 and totals["exact"] == 0.5
    by_id = {r["id"]: r for r in rows}
    assert by_id["a"]["wer"] == pytest.approx(2 / 6) and by_id["a"]["cer"] == pytest.approx(5 / 22)
    assert by_id["b"]["wer"] == 0 and by_id["b"]["hypothesis"] == "hello world"
    assert [r["id"] for r in W.worst(rows, 1)] == ["a"]
    perfect, _ = W.score({"x": "a man rides a horse on the beach"}, {"x": "A man rides a horse, on the beach."})
    assert perfect["WER"] == 0 and perfect["CER"] == 0 and perfect["BLEU"] == pytest.approx(1.0)
    assert perfect["chrF"] == pytest.approx(1.0)
    with pytest.raises(KeyError, match="no hypothesis"):
        W.score({"a": "x"}, {})


def test_error_files_hold_every_utterance(tmp_path):
    _, rows = W.score({"a": "one two", "b": "three"}, {"a": "one", "b": "three"})
    csv_path, jsonl_path = W.write_errors(rows, tmp_path)
    lines = [json.loads(line) for line in jsonl_path.read_text().splitlines()]
    assert [(x["id"], x["wer"]) for x in lines] == [("a", 0.5), ("b", 0.0)]
    assert csv_path.read_text().splitlines()[0] == "id,reference,hypothesis,wer,cer"


# -- greedy CTC decoding -----------------------------------------------------------------------------------------


def _one_hot_logits(path: list[int], vocab: int) -> torch.Tensor:
    logits = torch.full((len(path), vocab), -5.0)
    logits[torch.arange(len(path)), torch.tensor(path)] = 5.0
    return logits


def test_greedy_ctc_merges_repeats_then_drops_blanks(tmp_path):
    tok = asr.new_processor(tmp_path).tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in ["h", "i", "|", "l", "o"]}
    assert tok.pad_token_id == 0  # the blank
    # frames: h h _ i | | l _ l o o _  -> "hi llo": the blank between the two l keeps both
    path = [ids["h"], ids["h"], 0, ids["i"], ids["|"], ids["|"], ids["l"], 0, ids["l"], ids["o"], ids["o"], 0]
    logits = _one_hot_logits(path, len(asr.VOCAB))[None]
    (best,) = asr.ctc_greedy(logits)
    assert best == [ids["h"], ids["i"], ids["|"], ids["l"], ids["l"], ids["o"]]
    assert asr.ids_to_text(best, tok) == "hi llo"
    (short,) = asr.ctc_greedy(logits, torch.tensor([4]))  # only the first 4 frames: h h _ i
    assert asr.ids_to_text(short, tok) == "hi"
    # the same as transformers' own CTC decoding of the best path
    assert tok.decode(logits.argmax(-1)[0].tolist()) == "hi llo"


def test_input_normalisation_is_the_feature_extractors(tmp_path):
    proc = asr.new_processor(tmp_path)
    wave = torch.from_numpy(np.random.default_rng(0).normal(0.3, 2.0, 4000).astype(np.float32))
    expected = proc.feature_extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_values[0]
    torch.testing.assert_close(asr.normalise_wave(wave), expected, rtol=1e-5, atol=1e-5)
    values, mask = asr.pad_batch([wave, wave[:1000]])
    assert mask.sum(-1).tolist() == [4000, 1000] and values[1, 1000:].abs().sum() == 0


def test_speed_perturbation_resamples_by_the_drawn_factor_and_follows_the_torch_seed():
    wave = torch.randn(16000)
    assert asr.speed_perturb(wave, ()) is wave
    # torchaudio keeps ceil(n * new / orig) samples: 1.1 times faster = 10/11 of the samples
    assert len(asr.speed_perturb(wave, (1.1,))) == 14546 and len(asr.speed_perturb(wave, (0.9,))) == 17778
    torch.manual_seed(3)
    first = [len(asr.speed_perturb(wave, (0.9, 1.0, 1.1))) for _ in range(8)]
    torch.manual_seed(3)
    assert [len(asr.speed_perturb(wave, (0.9, 1.0, 1.1))) for _ in range(8)] == first and len(set(first)) > 1


# -- a local checkpoint (the real path) --------------------------------------------------------------------------


def test_a_saved_checkpoint_loads_through_the_real_path_and_decodes_batched_as_one_by_one(tmp_path):
    torch.manual_seed(0)
    c = asr.asr_config("tiny")
    model, proc = asr.new_model(c), asr.new_processor(tmp_path / "proc")
    with torch.no_grad():  # a louder head: random weights then emit many different characters
        model.lm_head.weight.mul_(20)
    directory = tmp_path / "ckpt"
    model.save_pretrained(directory)
    proc.save_pretrained(directory)
    ctx = SimpleNamespace(device=torch.device("cpu"))
    loaded, processor, record = asr.load_asr(ctx, asr.asr_config("tiny", checkpoint=str(directory)))
    assert record == {"checkpoint": str(directory)} and not loaded.training
    rng = np.random.default_rng(1)
    waves = [torch.from_numpy(rng.normal(0, 1, n).astype(np.float32)) for n in (16000, 7000, 11000, 4000)]
    batched = asr.recognise(loaded, processor, waves, batch_size=4)
    single = [asr.recognise(loaded, processor, [w], batch_size=1)[0] for w in waves]
    assert batched == single
    assert sum(len(t) for t in single) > 20 and all(re.fullmatch(r"[a-z' ]*", t) for t in single)
    # the loaded weights are the saved ones: the in-memory model decodes the same
    assert asr.recognise(model.eval(), proc, waves, batch_size=2) == single
    assert asr.checkpoint_fingerprint(directory) == asr.checkpoint_fingerprint(directory)


# -- the stages on the tiny synthetic benchmark ------------------------------------------------------------------


def _ctx(home: Path, data, log, c) -> RunContext:
    spec = registry.get(asr.METHOD)
    ctx = RunContext(spec, c, "synth", "tiny", 0, torch.device("cpu"), log, home / "w", home / "cache")
    ctx.preloaded = data
    return ctx


def test_the_asr_stage_is_built_once_and_transcribes_every_query(tiny, monkeypatch):
    home, data = tiny
    c = asr.asr_config("tiny")
    torch.manual_seed(5)
    expected_draw = torch.rand(3)
    torch.manual_seed(5)
    with tracking.start_run("test/asr", {"method": asr.METHOD}) as log:
        first = asr.transcripts(_ctx(home, data, log, c), c)
        assert asr.transcripts(_ctx(home, data, log, c), c) == first  # twice in one run: read, not re-logged
    assert torch.equal(torch.rand(3), expected_draw)  # the build's reseeding did not touch the caller's stream
    st = asr.asr_stage(home / "cache", c, data.content_hash)
    record = st.record()
    assert record["summary"]["train_utterances"] + record["summary"]["heldout_utterances"] == 80
    assert (st.path / "model" / "config.json").exists() and record["seed"] == 0
    for split in ("train", "val", "test"):
        assert set(first[split]) == set(asr.references(data, split)), split
        assert all(re.fullmatch(r"[a-z' ]*", t) for t in first[split].values())
    stamp = st.record_path.stat().st_mtime_ns

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached stage was rebuilt")

    monkeypatch.setattr(asr, "_build_asr", no_rebuild)
    with tracking.start_run("test/asr-again", {"method": asr.METHOD}) as log:
        assert asr.transcripts(_ctx(home, data, log, c), c) == first
        assert asr.load_asr(_ctx(home, data, log, c), c)[2]["key"] == st.key  # the model itself, from the cache
    assert st.record_path.stat().st_mtime_ns == stamp
    runs = tracking.finished_runs({"method": asr.METHOD})
    again = runs[runs["tags.mlflow.runName"] == "test/asr-again"].iloc[0]
    assert again["params.stage.asr"] == st.key  # the key of the stage it read
    first_run = runs[runs["params.stage.asr.built_here"] == "True"]
    assert len(first_run) == 1 and first_run.iloc[0]["tags.mlflow.runName"] != "test/asr-again"  # built once


def test_bench_wer_prints_the_wer_it_logs_for_table_8(tiny, capsys):
    home, data = tiny
    assert cli.main(["wer", "--profile", "tiny", "--worst", "2"]) == 0
    out = capsys.readouterr().out
    printed = float(re.search(r"WER (\d+\.\d+) %", out).group(1))
    c = asr.asr_config("tiny")
    with tracking.start_run("test/recompute", {"method": "x"}) as log:
        hyps = asr.transcripts(_ctx(home, data, log, c), c)["test"]
    totals, rows = W.score(asr.references(data, "test"), hyps)
    assert printed == pytest.approx(100 * totals["WER"], abs=0.005)
    assert "worst 2 utterances" in out and out.count("    ref: ") == 2
    runs = tracking.finished_runs({"method": asr.METHOD, "profile": "tiny", "table": "8"})
    assert len(runs) == 1 and runs["metrics.test/WER"].iloc[0] == pytest.approx(totals["WER"])
    jsonl = sorted((home / "wer").glob("synth-tiny-asr-*/utterance_errors.jsonl"))
    assert len(jsonl) == 1 and len(jsonl[0].read_text().splitlines()) == len(rows)


def test_the_registered_method_returns_the_test_wer_as_fractions(tiny):
    home, data = tiny
    spec = registry.get(asr.METHOD)
    assert spec.implemented and spec.rows == ("table8:asr-wav2vec2",) and spec.stages == ("asr",)
    c = spec.config("tiny")
    with tracking.start_run("test/method", {"method": asr.METHOD}) as log:
        result = spec.run(_ctx(home, data, log, c))
        hyps = asr.transcripts(_ctx(home, data, log, c), c)["test"]
    totals, rows = W.score(asr.references(data, "test"), hyps)
    # WER and CER are fractions that insertions can push past 1 (the tiny model babbles: CER 1.2 was seen)
    assert result.test == totals and result.test["WER"] >= 0 and result.test["CER"] >= 0
    summary = asr.asr_stage(home / "cache", c, data.content_hash).record()["summary"]
    assert result.selected_epoch == summary["selected_epoch"] and result.val_best == summary["val"]
    assert len(result.predictions.read_text().splitlines()) == len(rows) == len(hyps)


# -- Table 1's fine-tune cells of the cascades: the ASR fine-tuned on the grounding train split -----------------------

CASCADES = ("asr-wslln", "asr-scn", "asr-rtbpn")


@pytest.mark.parametrize("name", CASCADES)
def test_each_cascade_fine_tune_cell_is_its_rows_configuration_with_the_asr_fine_tuned(name):
    from bench import config

    frozen, tuned = registry.get(name), registry.get(f"{name}-ft")
    for profile in ("tiny", "small", "paper"):
        assert tuned.config(profile) == config.apply_overrides(frozen.config(profile), {"asr.finetune": "true"})
        assert frozen.config(profile).asr.finetune is False
    assert tuned.implemented and (tuned.stages, tuned.query, tuned.supervision) == (frozen.stages, "asr-text", "weak")
    assert tuned.rows == (f"table1:{name}",)  # the cell of the frozen cascade's row, no row of its own
    assert not registry.is_known("asr-base-ft")  # Table 2's ASR-Base has no fine-tune cell


def test_fine_tuning_leaves_the_trained_asr_stage_where_it_was():
    c = asr.asr_config("tiny")
    tuned = asr.asr_config("tiny", finetune=True, finetune_val_queries=5)
    assert asr.asr_stage("/c", tuned, "h").key == asr.asr_stage("/c", c, "h").key  # one base model for both


def test_the_fine_tuned_asr_starts_from_the_trained_one_and_keeps_its_feature_encoder(tiny, monkeypatch):
    from bench.data.wav2vec2 import load_wav2vec2

    home, data = tiny
    c = asr.asr_config("tiny")
    tuned = asr.asr_config("tiny", finetune=True)
    with tracking.start_run("test/asr-ft", {"method": asr.METHOD}) as log:
        ctx = _ctx(home, data, log, tuned)
        model, _, record = asr.load_asr(ctx, tuned)
        texts = asr.transcripts(ctx, tuned)
        base_tag, tuned_tag = asr.model_tag(ctx, c), asr.model_tag(ctx, tuned)
    with tracking.start_run("test/asr-frozen", {"method": asr.METHOD}) as log:  # a run logs one asr-text stage
        frozen_texts = asr.transcripts(_ctx(home, data, log, c), c)
    assert record["name"] == "asr-ft" and record["inputs"] == {"dataset": data.content_hash, "asr": base_tag}
    assert tuned_tag == f"asrft-{record['key']}" and base_tag.startswith("asr-") and tuned_tag != base_tag
    summary = record["summary"]
    assert summary["train_utterances"] == len(asr.references(data, "train"))  # the train split, every query
    assert summary["val_utterances"] == min(tuned.finetune_val_queries, len(asr.references(data, "val")))
    assert set(summary["val_before"]) == {"neg_cer", "cer", "wer"} and summary["selected_epoch"] >= 1
    base, _ = load_wav2vec2(asr.asr_stage(home / "cache", c, data.content_hash).path / "model", "cpu")
    trained, start = dict(model.named_parameters()), dict(base.named_parameters())
    assert trained.keys() == start.keys()
    feature = [k for k in trained if k.startswith("wav2vec2.feature_extractor.")]
    assert feature and all(torch.equal(trained[k], start[k]) for k in feature)  # frozen, as wav2vec 2.0 fine-tunes
    assert any(not torch.equal(trained[k], start[k]) for k in trained if "encoder.layers" in k)  # the rest moved
    for split in ("train", "val", "test"):  # its own transcripts, of every query, beside the frozen ASR's
        assert set(texts[split]) == set(frozen_texts[split]) == set(asr.references(data, split)), split

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached fine-tuned stage was rebuilt")

    monkeypatch.setattr(asr, "_build_finetuned", no_rebuild)
    with tracking.start_run("test/asr-ft-again", {"method": asr.METHOD}) as log:
        assert asr.load_asr(_ctx(home, data, log, tuned), tuned)[2]["key"] == record["key"]


def test_a_cascade_fine_tune_cell_runs_end_to_end_on_the_fine_tuned_transcripts(tiny, tmp_path):
    from methodrun import run_method

    home, data = tiny
    result, run_id = run_method("asr-rtbpn-ft", data, tmp_path / "w", home / "cache")
    assert 0 <= result.test["R1@0.5"] <= 100
    assert len(result.predictions.read_text().splitlines()) == len(asr.references(data, "test"))
    params = tracking.finished_runs({"method": "asr-rtbpn-ft"}).iloc[0]
    assert params["params.stage.asr-text.asr"].startswith("asrft-")  # the transcripts of the fine-tuned ASR
    assert "params.asr_oov_rate" in params.index
