"""``check_root`` on a good tiny data root, then with one planted fault of each kind: it finds exactly that."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import realformat as rf
import soundfile as sf

from bench.data import check
from bench.data.c3d import SINGLE_FILE


@pytest.fixture(scope="module")
def w2v(tmp_path_factory) -> Path:
    return rf.write_wav2vec2(tmp_path_factory.mktemp("w2v") / "ckpt")


@pytest.fixture(params=["single", "per-video"])
def root(request, tmp_path, w2v) -> rf.Root:
    return rf.build_root(tmp_path / "root", layout=request.param, wav2vec2_from=w2v)


def found(report: check.CheckReport) -> set[tuple[str, str, str]]:
    return {(p.severity, p.kind, p.path) for p in report.problems}


@pytest.mark.parametrize("annotations", ["captions", "vgcl"])
@pytest.mark.parametrize("layout", ["single", "per-video"])
def test_good_root(tmp_path, w2v, layout, annotations):
    r = rf.build_root(tmp_path / "root", layout=layout, annotations=annotations, wav2vec2_from=w2v)
    report = check.check_root(r.path, deep_audio=True)
    assert report.problems == [], report.summary()
    assert report.ok
    text = report.summary()
    assert text.startswith(f"data root {r.path}: OK (0 errors, 0 warnings)")
    assert "train): 2 videos, 5 moments of 5 entries; 1 spans clipped (0 by more than" in text
    assert f"({layout} layout, 6 videos), 6 of the 6 annotated videos read" in text
    assert "11 wavs named by the annotations" in text
    assert "4 utterances" in text and "5 words of dimension 4" in text and "3 clips" in text


def test_optional_parts_absent(tmp_path):
    r = rf.build_root(tmp_path / "root", optional=False)
    report = check.check_root(r.path)
    assert report.ok and report.problems == []
    for part in ("librispeech", "glove", "esc50", "wav2vec2"):
        assert f"{part}: absent (optional)" in report.summary()


# --- the planted faults: each returns the (severity, kind, path) set check_root must report, and nothing else ----


def _features(r: rf.Root) -> Path:
    return r.path / "features" / SINGLE_FILE if r.layout == "single" else r.path / "features"


def _where(r: rf.Root, video: str) -> str:
    if r.layout == "single":
        return f"{_features(r)} [{video}/c3d_features]"
    return f"{_features(r) / (video + '.h5')} [feature]"


def missing_wav(r: rf.Root) -> set:
    wav = r.path / "wavs" / r.wavs["train"][1]
    wav.unlink()
    return {("error", "missing-wav", str(wav))}


def corrupt_wav(r: rf.Root) -> set:
    wav = r.path / "wavs" / r.wavs["val_1"][0]
    wav.write_bytes(bytes(range(256)) * 4)
    return {("error", "corrupt-audio", str(wav))}


def wav_8k(r: rf.Root) -> set:
    wav = rf.write_wav(r.path / "wavs" / r.wavs["val_1"][2], 0.1, rate=8000)
    return {("error", "wrong-sample-rate", str(wav))}


def nan_feature(r: rf.Root) -> set:
    video = "v_uqiMw7tQ1Cc"
    if r.layout == "single":
        with h5py.File(_features(r), "a") as f:
            f[f"{video}/c3d_features"][2, 7] = np.nan
    else:
        with h5py.File(_features(r) / f"{video}.h5", "a") as f:
            f["feature"][0, 0] = np.inf
    return {("error", "bad-feature", _where(r, video))}


def video_absent(r: rf.Root) -> set:
    video = "v_Sd4C8_FMdjA"
    if r.layout == "single":
        with h5py.File(_features(r), "a") as f:
            del f[video]
    else:
        (_features(r) / f"{video}.h5").unlink()
    return {("error", "missing-video", _where(r, video))}


def span_past_duration(r: rf.Root) -> set:
    path = r.path / "annotations" / "val_1.json"
    data = json.loads(path.read_text())
    data["v_-sd2XAFkeC0"]["timestamps"][0] = [200.0, 235.0]  # duration 230.66
    path.write_text(json.dumps(data))
    return {("warning", "span-clipped", str(path))}


def empty_sentence(r: rf.Root) -> set:
    path = r.path / "annotations" / "train.json"
    data = json.loads(path.read_text())
    data["v_QOlSCBRmfWY"]["sentences"][2] = " "
    path.write_text(json.dumps(data))
    return {("warning", "empty-sentence", f'{path} ["v_QOlSCBRmfWY"].timestamps[2]')}


def empty_transcript(r: rf.Root) -> set:
    trans = r.path / "librispeech" / "dev-clean" / "84" / "121123" / "84-121123.trans.txt"
    trans.write_text("84-121123-0000\n")
    return {("error", "empty-transcript", f"{trans} line 1")}


def bad_glove_line(r: rf.Root) -> set:
    lines = list(rf.GLOVE_LINES)
    lines[3] = "man -0.094386 0.43007 O.17224 -0.45529"  # a letter O for a zero
    path = rf.write_glove_text(r.path / "glove.txt", lines)
    return {("error", "bad-glove-line", f"{path} line 4")}


def missing_annotation(r: rf.Root) -> set:
    path = r.path / "annotations" / "val_2.json"
    path.unlink()  # its videos' features and wavs are then simply not needed
    return {("error", "missing-file", str(path))}


def missing_esc50_clip(r: rf.Root) -> set:
    wav = r.path / "esc50" / "audio" / rf.ESC50_ROWS[2][0]
    wav.unlink()
    return {("error", "missing-file", str(wav))}


def broken_checkpoint(r: rf.Root) -> set:
    (r.path / "wav2vec2" / "model.safetensors").unlink()
    return {("error", "bad-checkpoint", str(r.path / "wav2vec2"))}


def cut_flac(r: rf.Root) -> set:
    flac = r.path / "librispeech" / "train-clean-100" / "103" / "1240" / "103-1240-0000.flac"
    data = flac.read_bytes()
    flac.write_bytes(data[: len(data) // 2])  # an interrupted copy: the header still promises every sample
    return {("error", "truncated-audio", str(flac))}


def cut_wav(r: rf.Root) -> set:
    wav = r.path / "wavs" / r.wavs["train"][0]
    data = wav.read_bytes()
    wav.write_bytes(data[: len(data) // 2])  # reads as a shorter wav: only the header's data size tells
    return {("error", "truncated-audio", str(wav))}


def short_wav(r: rf.Root) -> set:
    wav = rf.write_wav(r.path / "wavs" / r.wavs["train"][3], 0.05)
    return {("error", "too-short-audio", str(wav))}


def stereo_wav(r: rf.Root) -> set:
    wav = r.path / "wavs" / r.wavs["train"][4]
    sf.write(wav, np.stack([rf.tone(0.2), rf.tone(0.2, freq=220.0)], axis=1), 16000, subtype="PCM_16")
    return {("warning", "multichannel-audio", str(wav))}  # averaged into one voice, as documented


def repeated_video(r: rf.Root) -> set:
    path = r.path / "annotations" / "train.json"
    text = path.read_text()  # the video again at the end, after the other faults' edits
    again = json.dumps({"v_Sd4C8_FMdjA": json.loads(text)["v_Sd4C8_FMdjA"]})
    path.write_text(text[:-1] + ", " + again[1:])
    return {("error", "duplicate-key", f'{path} ["v_Sd4C8_FMdjA"]')}


def non_ascii_transcript(r: rf.Root) -> set:
    trans = r.path / "librispeech" / "train-clean-100" / "1034" / "121119" / "1034-121119.trans.txt"
    trans.write_text("1034-121119-0000 THE RIVER\u2019S MOUTH RAN DOWN TO THE SEA\n")  # a curly apostrophe
    return {("error", "non-ascii-transcript", f"{trans} line 1")}


def glove_word_twice(r: rf.Root) -> set:
    path = r.path / "glove.txt"
    path.write_text(path.read_text() + "dog 0.5 0.5 0.5 0.5\n")
    return {("error", "duplicate-word", f"{path} line 6")}


def no_wav_dir(r: rf.Root) -> set:
    shutil.rmtree(r.path / "wavs")
    return {("error", "missing-file", str(r.path / "wavs"))}


FAULTS: list[Callable[[rf.Root], set]] = [
    missing_wav,
    corrupt_wav,
    wav_8k,
    nan_feature,
    video_absent,
    span_past_duration,
    empty_sentence,
    empty_transcript,
    bad_glove_line,
    missing_annotation,
    missing_esc50_clip,
    broken_checkpoint,
    cut_flac,
    cut_wav,
    short_wav,
    stereo_wav,
    repeated_video,
    non_ascii_transcript,
    glove_word_twice,
    no_wav_dir,
]


def silent_wav(r: rf.Root) -> set:
    wav = r.path / "wavs" / r.wavs["val_1"][1]
    sf.write(wav, np.zeros(3200, dtype=np.float32), 16000, subtype="PCM_16")
    return {("error", "silent-audio", str(wav))}


DEEP_FAULTS: list[Callable[[rf.Root], set]] = [silent_wav]
"""Faults only decoding finds (``deep_audio=True``, ``bench data check --deep``)."""


@pytest.mark.parametrize("plant", FAULTS, ids=[f.__name__ for f in FAULTS])
def test_each_fault_found_alone(root, plant):
    expected = plant(root)
    report = check.check_root(root.path)
    assert found(report) == expected, report.summary()
    assert report.ok == all(sev == "warning" for sev, _, _ in expected)
    for p in report.problems:
        assert p.fix and str(p).endswith(p.fix) and "Fix:" in str(p)


@pytest.mark.parametrize("plant", DEEP_FAULTS, ids=[f.__name__ for f in DEEP_FAULTS])
def test_each_deep_fault_found_by_decoding(root, plant):
    expected = plant(root)
    assert check.check_root(root.path).ok  # the header and the last sample look right
    report = check.check_root(root.path, deep_audio=True)
    assert found(report) == expected, report.summary()
    assert not report.ok


def test_all_faults_at_once(root):
    expected: set = set()
    # all but the missing wav directory, which hides the wav faults; no two faults touch the same moment
    for plant in FAULTS[:-1]:
        expected |= plant(root)
    report = check.check_root(root.path)
    assert found(report) == expected, report.summary()
    assert not report.ok
    assert report.kinds() == Counter(kind for _, kind, _ in expected)
    n_warn = sum(sev == "warning" for sev, _, _ in expected)
    assert len(report.warnings) == n_warn == 3 and len(report.errors) == len(expected) - n_warn
    text = report.summary()
    assert text.startswith(f"data root {root.path}: NOT OK ({len(expected) - n_warn} errors, {n_warn} warnings)")
    assert "  missing-wav (1):" in text and "  span-clipped (1):" in text
    assert "1 spans lie outside [0, duration] by more than 1e-06 s (at most 4.34 s)" in text
    assert "audio: header and last sample of every file (--deep decodes them all" in text


def test_cli_names_each_fault_in_one_line(root, capsys):
    """``bench data check ROOT --deep``: exit 1, and per fault its kind's heading and one line: file, problem, fix."""
    from bench import cli

    assert cli.main(["data", "check", str(root.path), "--deep"]) == 0
    assert "audio: every file decoded (--deep)" in capsys.readouterr().out
    expected: set = set()
    for plant in FAULTS[:-1] + DEEP_FAULTS:
        expected |= plant(root)
    assert cli.main(["data", "check", str(root.path)]) == 1
    assert "silent-audio" not in capsys.readouterr().out
    assert cli.main(["data", "check", str(root.path), "--deep"]) == 1
    lines = capsys.readouterr().out.splitlines()
    for severity, kind, path in expected:
        heading = lines.index(f"{severity}s:")
        assert any(line.startswith(f"  {kind} (") for line in lines[heading:]), kind
        (line,) = [line for line in lines if line.startswith(f"    {path}: ")]
        assert " Fix: " in line and not line.endswith("Fix: "), line


def test_strict_and_summary_limit(root):
    span_past_duration(root)
    assert check.check_root(root.path).ok
    strict = check.check_root(root.path, strict=True)
    assert not strict.ok and [p.kind for p in strict.errors] == ["span-clipped"]
    for name in root.wavs["train"]:
        (root.path / "wavs" / name).unlink()
    text = check.check_root(root.path).summary(limit=2)
    assert "  missing-wav (5):" in text and "    ... and 3 more" in text


def test_deep_audio_finds_nan_samples(root):
    wav = root.path / "wavs" / root.wavs["train"][0]
    samples = rf.tone(0.1)
    samples[100] = np.nan
    sf.write(wav, samples, 16000, subtype="FLOAT")  # a valid header over a NaN sample
    assert check.check_root(root.path).ok  # the header probe cannot see it; decoding does
    report = check.check_root(root.path, deep_audio=True)
    assert found(report) == {("error", "corrupt-audio", str(wav))}
    assert "NaN" in report.problems[0].problem


def test_vgcl_root_wrong_wav_name(tmp_path):
    r = rf.build_root(tmp_path / "root", annotations="vgcl", optional=False)
    path = r.path / "annotations" / "new_val_data.json"
    entries = json.loads(path.read_text())
    entries[1][4] = "uqiMw7tQ1Cc_val_1_1.wav"
    path.write_text(json.dumps(entries, indent=4))
    report = check.check_root(r.path)
    assert found(report) == {("warning", "bad-wav-name", f"{path} [1]")}


def test_missing_root(tmp_path):
    report = check.check_root(tmp_path / "nowhere")
    assert not report.ok and found(report) == {("error", "missing-file", str(tmp_path / "nowhere"))}


def test_glove_word_twice_with_the_same_vector_is_a_warning(root):
    path = root.path / "glove.txt"
    path.write_text(path.read_text() + rf.GLOVE_LINES[4] + "\n")  # "dog" again, same vector: every reader agrees
    report = check.check_root(root.path)
    assert found(report) == {("warning", "duplicate-word", f"{path} line 6")} and report.ok
    assert "first on line 5) with the same vector" in report.problems[0].problem


def test_stereo_whose_channels_cancel_is_silent_when_decoded(root):
    wav = root.path / "wavs" / root.wavs["train"][4]
    tone = rf.tone(0.2)
    sf.write(wav, np.stack([tone, -tone], axis=1), 16000, subtype="PCM_16")  # one channel wired in reverse
    assert found(check.check_root(root.path)) == {("warning", "multichannel-audio", str(wav))}
    deep = check.check_root(root.path, deep_audio=True)
    assert found(deep) == {("warning", "multichannel-audio", str(wav)), ("error", "silent-audio", str(wav))}


def test_short_quiet_noise_is_fine(root):
    """Noise only ever adds to speech: an ESC-50 clip may be short or silent."""
    clip = root.path / "esc50" / "audio" / rf.ESC50_ROWS[0][0]
    sf.write(clip, np.zeros(441, dtype=np.float32), 44_100, subtype="PCM_16")  # 0.01 s of silence
    assert check.check_root(root.path, deep_audio=True).problems == []
