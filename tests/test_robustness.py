"""bench robustness (bench/robustness.py): a trained model scored on augmented test speech, without retraining.

End to end on synth/tiny: SIL seed 0 is trained once by ``bench run``; ``bench robustness`` then evaluates its
checkpoint on noisy test speech (two levels), each a tracked run of its own, and the clean run, its caches and its
numbers stay as they were.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import realformat as rf
import soundfile as sf
import torch

from bench import cli, robustness, tables, tracking, train
from bench.atomic import save_atomic
from bench.config import TrainConfig
from bench.context import RunContext
from bench.data import grounding, loader, speech_root
from bench.data.errors import DataError
from methods import registry


def _test_moment(data):
    return next(iter(grounding.read_annotations(data, "val_2")))


def _read(path) -> torch.Tensor:
    return torch.from_numpy(sf.read(path, dtype="float32")[0])


def test_the_view_serves_clean_train_and_val_speech_and_augmented_test_speech(tiny, tmp_path):
    _, data = tiny
    view = robustness.AugmentedSpeech(data, robustness.Augmentation("noise", "high"), tmp_path / "a")
    m = _test_moment(data)
    clean, noisy = grounding.query_wav(data, m), grounding.query_wav(view, m)
    assert noisy.parent == view.folder and noisy.name == clean.name
    x, y = _read(clean), _read(noisy)
    snr = 10 * torch.log10(x.square().sum() / (y - x).square().sum())
    assert x.shape == y.shape and 0 - 0.1 <= float(snr) <= 5 + 0.1  # Table 7's high noise: SNR in [0, 5] dB
    again = robustness.AugmentedSpeech(data, robustness.Augmentation("noise", "high"), tmp_path / "b")
    assert torch.equal(_read(grounding.query_wav(again, m)), y)  # the same file is augmented alike in every run
    train_m = next(iter(grounding.read_annotations(data, "train")))
    assert grounding.query_wav(view, train_m) == grounding.query_wav(data, train_m)
    assert [view.speech_tag(s) == "" for s in ("train", "val", "test", "test_ood")] == [True, True, False, False]
    other = robustness.AugmentedSpeech(data, robustness.Augmentation("noise", "low"), tmp_path / "a")
    assert other.speech_tag("test") != view.speech_tag("test") and grounding.speech_tag(data, "test") == ""


def test_a_data_root_with_esc50_adds_its_clips_as_the_noise_and_says_so(tiny, tmp_path, monkeypatch):
    """Table 7's noise is ESC-50 where the root has it. The real-format root's three clips are a 300 Hz tone at
    44.1 kHz, so what the view adds to a test utterance (augmented minus clean) peaks at 300 Hz, where the generated
    stand-in is broadband; the logged description names ESC-50, and the copies are keyed apart from synth's."""
    _, synth = tiny
    monkeypatch.setenv("WSVG_HOME", str(tmp_path / "runs"))
    monkeypatch.setattr(speech_root, "_OPENED", {})
    real = speech_root.open_root(rf.root_from_synth(synth.root, tmp_path / "anet", "single").path)
    view = robustness.AugmentedSpeech(real, robustness.Augmentation("noise", "high"), tmp_path / "cache")
    assert view.noise.startswith(f"ESC-50 at {real.root / 'esc50'} (3 clips, 3 categories; index sha256 ")
    assert view._noise().categories == ["dog", "chirping_birds", "pouring_water"]
    m = _test_moment(real)
    x, y = _read(grounding.query_wav(real, m)), _read(grounding.query_wav(view, m))
    spectrum = torch.fft.rfft((y - x).double()).abs()
    assert abs(float(spectrum.argmax()) * 16_000 / len(x) - 300) <= max(5, 16_000 / len(x))
    stand_in = robustness.AugmentedSpeech(synth, robustness.Augmentation("noise", "high"), tmp_path / "cache")
    assert stand_in.noise == robustness.NOISE and stand_in.speech_tag("test") != view.speech_tag("test")
    noise = stand_in._noise()
    assert type(noise) is not type(view._noise()) and len(noise) == 14


def test_the_grounding_data_of_a_view_has_its_own_test_queries_and_shares_the_rest_with_the_clean_data(tiny):
    home, data = tiny
    view = robustness.AugmentedSpeech(data, robustness.Augmentation("noise", "high"), home / "cache")
    clean, noisy = grounding.load(data, home / "cache", n_clips=8), grounding.load(view, home / "cache", n_clips=8)
    assert noisy is not clean and grounding.load(data, home / "cache", n_clips=8) is clean
    assert noisy.train is clean.train and noisy.val is clean.val and noisy.test.videos is clean.test.videos
    assert noisy.test.qids == clean.test.qids and not torch.equal(noisy.test.queries["mel"], clean.test.queries["mel"])
    assert torch.equal(noisy.test.queries["span"], clean.test.queries["span"]) and "test_ood" in noisy.extra_tests


def test_stretching_changes_the_length_within_table_7s_ratio(tiny, tmp_path):
    _, data = tiny
    view = robustness.AugmentedSpeech(data, robustness.Augmentation("stretch", "low"), tmp_path)
    m = _test_moment(data)
    n, stretched = len(_read(grounding.query_wav(data, m))), len(_read(grounding.query_wav(view, m)))
    assert n / 1.25 - 1 <= stretched <= n / 0.8 + 1 and stretched != n


def test_a_checkpoint_whose_training_did_not_finish_is_not_evaluated(tmp_path):
    model = torch.nn.Linear(2, 1)
    path = tmp_path / "checkpoint.pt"
    save_atomic({"format": train.FORMAT, "epoch": 1, "best": {"model": model.state_dict(), "epoch": 1, "val": {}}},
                path)  # fmt: skip
    task = train.Task(model, None, None, 0, None, lambda path: {})
    ctx = types.SimpleNamespace(evaluate_from=path, workdir=tmp_path, device=torch.device("cpu"))
    with pytest.raises(DataError, match="epoch 1 of 2"):
        train.evaluate_checkpoint(task, TrainConfig(batch_size=1, lr=1e-3, warmup_updates=0, epochs=2), ctx)


def test_only_trained_spoken_grounding_methods_are_evaluated():
    with pytest.raises(ValueError, match="does not ground a spoken query"):
        robustness.check_method("prior")
    with pytest.raises(ValueError, match="unknown augmentation"):
        robustness.Augmentation("reverb", "low")


@pytest.fixture(scope="module")
def trained(tiny):
    """SIL seed 0 trained by ``bench run`` on synth/tiny: (home, data, its run as a row of the store)."""
    home, data = tiny
    assert cli.main(["run", "--method", "sil", "--profile", "tiny", "--seeds", "0", "--threads", "1"]) == 0
    (row,) = tracking.finished_runs({"method": "sil", "profile": "tiny"}).to_dict("records")
    return home, data, row


def _robustness(level: str) -> int:
    return cli.main(["robustness", "--method", "sil", "--profile", "tiny", "--seeds", "0", "--kinds", "noise",
                     "--levels", level, "--threads", "1"])  # fmt: skip


def test_robustness_runs_evaluate_the_trained_checkpoint_on_augmented_speech_and_leave_the_clean_run_alone(trained):
    home, data, source = trained
    checkpoint = robustness.work_dir("sil", "synth", "tiny", 0, source["params.config_hash"]) / train.CHECKPOINT
    before = checkpoint.stat().st_mtime_ns
    (clean_sem,) = (home / "cache" / "features").glob("sem-test-????????????????.pt")  # the clean split's entry
    clean_sem_mtime = clean_sem.stat().st_mtime_ns
    (asp,) = (home / "cache" / "stages" / "asp").iterdir()
    asp_mtime = (asp / "stage.json").stat().st_mtime_ns

    assert _robustness("low") == 0
    (low,) = tracking.finished_runs({"method": "sil", "measure": "robustness"}).to_dict("records")
    assert low["params.source_run"] == source["run_id"]
    assert (low["params.augment.kind"], low["params.augment.level"]) == ("noise", "low")
    assert low["params.config_hash"] == source["params.config_hash"] and "test" in low["params.augment.splits"]
    assert 0.0 <= low["metrics.test/R1_IoU0.5"] <= 1.0 and "metrics.test_ood/R1_IoU0.5" in low
    assert tracking.metric_history(low["run_id"], "train/loss") == {}  # nothing was trained
    assert tracking.metric_history(source["run_id"], "train/loss") != {}
    # the augmented speech entered: the test features of this run are a cache entry of their own, and differ
    view = robustness.AugmentedSpeech(data, robustness.Augmentation("noise", "low"), home / "cache")
    (noisy_sem,) = (home / "cache" / "features").glob(f"sem-test-{view.speech_tag('test')}-*.pt")
    clean_t, noisy_t = loader.PaddedSplit.load(clean_sem)["sem"], loader.PaddedSplit.load(noisy_sem)["sem"]
    assert clean_t.shape != noisy_t.shape or not torch.equal(clean_t, noisy_t)

    assert _robustness("high") == 0  # a second level: the same checkpoint and encoder, nothing rebuilt
    levels = tracking.finished_runs({"method": "sil", "measure": "robustness"})["params.augment.level"]
    assert sorted(levels) == ["high", "low"]
    assert checkpoint.stat().st_mtime_ns == before and clean_sem.stat().st_mtime_ns == clean_sem_mtime
    assert (asp / "stage.json").stat().st_mtime_ns == asp_mtime
    assert len(list((home / "cache" / "stages" / "asp").iterdir())) == 1

    # the clean numbers: the tables read the training run, and running it again (it resumes, all epochs done)
    # gives the same test metrics in this process, whose in-memory data now holds augmented splits too
    repro = tables.collect(tracking.finished_runs({"dataset": "synth", "profile": "tiny"}), "sil")
    assert repro.run_ids == [source["run_id"]]
    assert cli.main(["run", "--method", "sil", "--profile", "tiny", "--seeds", "0", "--threads", "1"]) == 0
    again = tracking.finished_runs({"method": "sil", "profile": "tiny"})
    again = again[again["params.measure"].isna()].sort_values("start_time").iloc[-1]
    for key in ("test/R1_IoU0.5", "test/mIoU", "test_ood/R1_IoU0.5"):
        assert again[f"metrics.{key}"] == pytest.approx(source[f"metrics.{key}"], abs=1e-12)


def test_a_method_without_a_trained_run_is_one_error_naming_the_bench_run_to_make(trained, capsys):
    code = cli.main(["robustness", "--method", "base+lsem", "--profile", "tiny", "--seeds", "0", "--kinds", "noise",
                     "--levels", "low"])  # fmt: skip
    assert code == 2
    assert "bench run --method base+lsem --dataset synth --profile tiny --seeds 0" in capsys.readouterr().err


def test_a_cascades_transcripts_of_augmented_speech_are_a_stage_of_their_own(tiny, tmp_path, monkeypatch):
    """The ASR itself is stubbed: each transcript is the folder its wav was read from."""
    from methods import asr

    _, data = tiny

    def decode(model, processor, source, split, batch_size, device) -> dict[str, str]:
        qids, paths = asr._split_speech(source, split)
        return {q: p.parent.name for q, p in zip(qids, paths, strict=True)}

    monkeypatch.setattr(asr, "load_asr", lambda ctx, c: (None, None, {}))
    monkeypatch.setattr(asr, "decode_split", decode)
    c = asr.asr_config("tiny")

    def transcripts(dataset) -> dict[str, dict[str, str]]:
        ctx = RunContext(registry.get("asr-rtbpn"), None, "synth", "tiny", 0, torch.device("cpu"),
                         tracking.RunLogger(None, None), tmp_path, tmp_path / "cache", preloaded=dataset)  # fmt: skip
        return asr.transcripts(ctx, c)

    clean = transcripts(data)
    view = robustness.AugmentedSpeech(data, robustness.Augmentation("noise", "low"), tmp_path / "cache")
    noisy = transcripts(view)
    assert set(clean["test"].values()) == {Path(data.wav_dir).name}
    assert set(noisy["test"].values()) == set(noisy["test_ood"].values()) == {view.folder.name}
    assert noisy["train"] == clean["train"] and noisy["val"] == clean["val"]
    assert transcripts(data) == clean  # the clean stage is found as it was, not overwritten
    assert [len(list((tmp_path / "cache" / "stages" / s).iterdir())) for s in ("asr-text", "asr-text-other-speech")
            ] == [1, 1]  # fmt: skip
