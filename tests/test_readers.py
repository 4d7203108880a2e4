"""The real-data readers on tiny files in the exact real formats, on bad input, and on the shipped annotations."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import realformat as rf
import soundfile as sf
import torch

from bench.data import activitynet, c3d, esc50, glove, librispeech, wav2vec2
from bench.data.errors import DataError, SkipPolicy

SHARED = Path(os.environ.get("WSVG_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
DATA = SHARED / "data"
needs_shared = pytest.mark.skipif(not (DATA / "README.md").is_file(), reason=f"shared data not found at {DATA}")


def assert_data_error(exc: pytest.ExceptionInfo, *parts: str) -> None:
    """A DataError whose message names every one of ``parts`` (file, key, line) and says what to do."""
    msg = str(exc.value)
    assert isinstance(exc.value, DataError)
    assert "Fix:" in msg, msg
    for p in parts:
        assert p in msg, f"{p!r} not in {msg!r}"


# ---------------------------------------------------------------------------------------------------------------
# ActivityNet Captions / VGCL lists


def test_captions_values(tmp_path):
    path = rf.write_captions(tmp_path / "train.json", rf.CAPTIONS["train"])
    ann = activitynet.read_captions(path, "train")
    assert len(ann) == 5 and ann.entries == 5 and ann.skipped == 0
    m = ann[0]
    assert (m.video, m.duration, m.start, m.end, m.k, m.split, m.audio) == (
        "v_QOlSCBRmfWY",
        82.73,
        0.83,
        19.86,
        1,
        "train",
        None,
    )
    assert m.sentence == "A young woman is seen standing in a room and leads into her dancing."
    assert ann[1].sentence.startswith("The girl")  # leading space stripped
    assert [x.qid for x in ann] == [
        "v_QOlSCBRmfWY#0",
        "v_QOlSCBRmfWY#1",
        "v_QOlSCBRmfWY#2",
        "v_Sd4C8_FMdjA#0",
        "v_Sd4C8_FMdjA#1",
    ]
    assert ann[3].start == 0.0 and isinstance(ann[3].start, float)  # JSON integer 0
    # 119.04 against a duration of 119.03999999999999: clipped, but by float noise only
    last = ann[4]
    assert last.clipped and last.end == 119.03999999999999
    assert (ann.clipped, ann.clipped_beyond_tolerance) == (1, 0)
    assert ann.videos == {"v_QOlSCBRmfWY": 82.73, "v_Sd4C8_FMdjA": 119.03999999999999}
    assert "5 moments" in ann.summary()


def test_captions_clipping_rule(tmp_path):
    data = {"v_a": {"duration": 50.0, "timestamps": [[-2, 10], [40, 57.5], [5, 6]], "sentences": ["x", "y", "z"]}}
    ann = activitynet.read_captions(rf.write_captions(tmp_path / "a.json", data), "val_1")
    assert [(m.start, m.end, m.clipped) for m in ann] == [(0.0, 10.0, True), (40.0, 50.0, True), (5.0, 6.0, False)]
    assert (ann.clipped, ann.clipped_beyond_tolerance, ann.max_clip) == (2, 2, 7.5)


BAD_CAPTIONS = [
    # (name, mutate(entry of v_QOlSCBRmfWY), kind, key in message, moments lost)
    ("nan", lambda e: e["timestamps"].__setitem__(1, [float("nan"), 3.0]), "bad-span", "timestamps[1]", 1),
    ("reversed", lambda e: e["timestamps"].__setitem__(2, [60.0, 50.0]), "reversed-span", "timestamps[2]", 1),
    ("zero-length", lambda e: e["timestamps"].__setitem__(0, [4.97, 4.97]), "empty-span", "timestamps[0]", 1),
    ("after-end", lambda e: e["timestamps"].__setitem__(0, [90.0, 95.0]), "empty-span", "timestamps[0]", 1),
    ("not-a-pair", lambda e: e["timestamps"].__setitem__(0, [1.0]), "bad-span", "timestamps[0]", 1),
    ("string-span", lambda e: e["timestamps"].__setitem__(0, ["1", 2]), "bad-span", "timestamps[0]", 1),
    ("empty-sentence", lambda e: e["sentences"].__setitem__(1, "  "), "empty-sentence", "timestamps[1]", 1),
    ("zero-duration", lambda e: e.__setitem__("duration", 0), "bad-duration", "duration", 3),
    ("count-mismatch", lambda e: e["sentences"].pop(), "count-mismatch", '["v_QOlSCBRmfWY"]', 3),
    ("missing-key", lambda e: e.pop("timestamps"), "bad-entry", '["v_QOlSCBRmfWY"]', 1),
]


@pytest.mark.parametrize(("name", "mutate", "kind", "key", "lost"), BAD_CAPTIONS, ids=[b[0] for b in BAD_CAPTIONS])
def test_captions_bad_input(tmp_path, name, mutate, kind, key, lost):
    data = copy.deepcopy(rf.CAPTIONS["train"])
    mutate(data["v_QOlSCBRmfWY"])
    path = rf.write_captions(tmp_path / "train.json", data)
    with pytest.raises(DataError) as exc:
        activitynet.read_captions(path, "train")
    assert_data_error(exc, str(path), '"v_QOlSCBRmfWY"', key)
    policy = SkipPolicy(skip=True)
    ann = activitynet.read_captions(path, "train", policy)
    assert policy.skipped == Counter({kind: 1})
    kept_from_video = 3 - lost if kind != "bad-entry" else 0
    assert len(ann) == kept_from_video + 2
    assert ann.skipped == lost
    # k stays the sentence index in the video even when an earlier sentence is dropped
    assert all(m.qid == f"{m.video}#{m.k - 1}" for m in ann)
    if name == "nan":
        assert [m.k for m in ann if m.video == "v_QOlSCBRmfWY"] == [1, 3]


def test_captions_repeated_keys(tmp_path):
    """json keeps the last copy of a repeated key without a word; the reader names it, and skipping counts it."""
    data = rf.CAPTIONS["train"]
    first = json.dumps({"v_Sd4C8_FMdjA": {**data["v_Sd4C8_FMdjA"], "sentences": ["Old.", " Copy."]}})
    path = tmp_path / "train.json"
    path.write_text("{" + first[1:-1] + ", " + json.dumps(data)[1:])  # the video twice, the old copy first
    with pytest.raises(DataError) as exc:
        activitynet.read_captions(path, "train")
    assert_data_error(exc, f'{path} ["v_Sd4C8_FMdjA"]', "listed 2 times", "drops the 2 sentences of the earlier one")
    policy = SkipPolicy(skip=True)
    ann = activitynet.read_captions(path, "train", policy)
    assert policy.skipped == Counter({"duplicate-key": 1}) and ann.skipped == 2 and ann.entries == 7
    assert [m.sentence for m in ann if m.video == "v_Sd4C8_FMdjA"] == [
        "A man talks to the camera.",
        "He jumps into the lake.",
    ]
    path.write_text(json.dumps(data).replace('"duration": 82.73,', '"duration": 82.73, "duration": 8.0,'))
    with pytest.raises(DataError) as exc:
        activitynet.read_captions(path, "train")
    assert_data_error(exc, f'{path} ["v_QOlSCBRmfWY"]', "lists 'duration' more than once")
    ann = activitynet.read_captions(path, "train", SkipPolicy(skip=True))
    assert ann.videos == {"v_Sd4C8_FMdjA": 119.03999999999999} and ann.skipped == 3


def test_captions_file_errors(tmp_path):
    with pytest.raises(DataError) as exc:
        activitynet.read_captions(tmp_path / "absent.json", "train")
    assert_data_error(exc, "absent.json", "no such file")
    bad = tmp_path / "bad.json"
    bad.write_text('{"v_a": {"duration": 1,\n "timestamps": [[0, 1]]\n "sentences": ["x"]}}')
    with pytest.raises(DataError) as exc:
        activitynet.read_captions(bad, "train")
    assert_data_error(exc, "bad.json line 3", "not valid JSON")
    lst = rf.write_vgcl(tmp_path / "list.json", rf.vgcl_entries(rf.CAPTIONS["val_1"], "val_1", False), new=False)
    with pytest.raises(DataError) as exc:
        activitynet.read_captions(lst, "val_1")
    assert_data_error(exc, "list.json", "read_vgcl_list")
    with pytest.raises(ValueError, match="split"):
        activitynet.read_captions(lst, "val")


@pytest.mark.parametrize("new", [False, True])
def test_vgcl_list_values(tmp_path, new):
    entries = rf.vgcl_entries(rf.CAPTIONS["val_1"], "val_1", new)
    path = rf.write_vgcl(tmp_path / ("new_val_data.json" if new else "val_data.json"), entries, new)
    ann = activitynet.read_vgcl_list(path, "val_1")
    ref = activitynet.read_captions(rf.write_captions(tmp_path / "val_1.json", rf.CAPTIONS["val_1"]), "val_1")
    strip = [(m.video, m.duration, m.start, m.end, m.sentence, m.k, m.split) for m in ann]
    assert strip == [(m.video, m.duration, m.start, m.end, m.sentence, m.k, m.split) for m in ref]
    audio = [m.audio for m in ann]
    assert audio == (
        ["uqiMw7tQ1Cc_val_1_1.wav", "uqiMw7tQ1Cc_val_1_2.wav", "-sd2XAFkeC0_val_1_1.wav"] if new else [None] * 3
    )
    assert activitynet.read_annotations(path, "val_1").moments == ann.moments  # dispatch on the top level


@pytest.mark.parametrize(
    ("wav", "fragment"),
    [
        ("uqiMw7tQ1Cc_val_1_1.wav", "should be 'uqiMw7tQ1Cc_val_1_2.wav'"),  # k off by one
        ("uqiMw7tQ1Cc_val_2_2.wav", "should be 'uqiMw7tQ1Cc_val_1_2.wav'"),  # wrong split
        ("xxxxxxxxxxx_val_1_2.wav", "should be 'uqiMw7tQ1Cc_val_1_2.wav'"),  # another video
        ("uqiMw7tQ1Cc_val_1_2", "should be 'uqiMw7tQ1Cc_val_1_2.wav'"),  # no extension
    ],
)
def test_vgcl_wrong_wav_name(tmp_path, wav, fragment):
    entries = rf.vgcl_entries(rf.CAPTIONS["val_1"], "val_1", True)
    entries[1][4] = wav
    path = rf.write_vgcl(tmp_path / "new_val_data.json", entries, True)
    with pytest.raises(DataError) as exc:
        activitynet.read_vgcl_list(path, "val_1")
    assert_data_error(exc, "new_val_data.json [1]", fragment)
    policy = SkipPolicy(skip=True)
    ann = activitynet.read_vgcl_list(path, "val_1", policy)
    assert policy.skipped == Counter({"bad-wav-name": 1})
    assert [m.k for m in ann] == [1, 1] and ann.skipped == 1


def test_vgcl_bad_entries(tmp_path):
    entries = rf.vgcl_entries(rf.CAPTIONS["val_2"], "val_2", False)
    entries[1] = entries[1][:3]  # a three-field entry
    entries[2][2] = [12.0, 1.0]  # reversed
    path = rf.write_vgcl(tmp_path / "test_data.json", entries, False)
    with pytest.raises(DataError) as exc:
        activitynet.read_vgcl_list(path, "val_2")
    assert_data_error(exc, "test_data.json [1]", "4 fields")
    policy = SkipPolicy(skip=True)
    ann = activitynet.read_vgcl_list(path, "val_2", policy)
    assert policy.skipped == Counter({"bad-entry": 1, "reversed-span": 1})
    assert len(ann) == 1 and ann.entries == 3
    with pytest.raises(DataError) as exc:
        activitynet.read_vgcl_list(rf.write_captions(tmp_path / "c.json", rf.CAPTIONS["val_2"]), "val_2")
    assert_data_error(exc, "c.json", "read_captions")


def test_wav_name_rule():
    assert activitynet.wav_name("v_uqiMw7tQ1Cc", "val_2", 1) == "uqiMw7tQ1Cc_val_2_1.wav"
    assert activitynet.wav_name("v_EE1UoJSNyms", "train", 2) == "EE1UoJSNyms_train_2.wav"
    p = activitynet.parse_wav_name("Sd4C8_FMdjA_val_1_12.wav")
    assert (p.youtube_id, p.split, p.k, p.video) == ("Sd4C8_FMdjA", "val_1", 12, "v_Sd4C8_FMdjA")
    p = activitynet.parse_wav_name("-sd_val_1_train_3.wav")  # an id may even hold a split-like part
    assert (p.youtube_id, p.split, p.k) == ("-sd_val_1", "train", 3)
    for video, split, k in [("v_-sd2XAFkeC0", "val_1", 1), ("v_a_b_c", "train", 40)]:
        name = activitynet.wav_name(video, split, k)
        q = activitynet.parse_wav_name(name)
        assert (q.video, q.split, q.k) == (video, split, k)
    for bad in ["abc_val_1.wav", "abc_val_3_1.wav", "abc_test_1.wav", "abc_val_1_0.wav", "abc_train_1.flac"]:
        with pytest.raises(DataError) as exc:
            activitynet.parse_wav_name(bad)
        assert_data_error(exc, bad)
    with pytest.raises(ValueError):
        activitynet.wav_name("uqiMw7tQ1Cc", "val_1", 1)  # the annotation form v_<id> is required
    with pytest.raises(ValueError):
        activitynet.wav_name("v_uqiMw7tQ1Cc", "val_1", 0)


# --- the shipped annotation files ------------------------------------------------------------------------------

CHECKSUMS = {
    "activitynet-cd/anet_test_iid.json": "8b281eee04bc61f9282445d4ec343f647c54024e66e50d657a7d440584004c5b",
    "activitynet-cd/anet_test_ood.json": "a374c9992b1c8940070e00aec0e5d9e12fe3888e03ccc60d2db41c4baec8b5da",
    "activitynet-cd/anet_val.json": "4f772595ac7717f7b269f7b71dac5cbe7308159fbea5f8946e4aadae27fadbef",
    "activitynet-captions/train.json": "704536b2779011c1a729c927ae30e39ea9c90c38557836bbe969499917243d69",
    "activitynet-captions/val_1.json": "466aaccb9ebe45c6db4c98488a4ddbeb5b22faffe62e1bbce81222c14fc29e1c",
    "activitynet-captions/val_2.json": "08fe56568bc92dd02a6150fe1094457a5f2ac72975b8778a922bc9a65aa7f0e9",
    "activitynet-speech/new_test_data.json": "f49f2022d95d0ba265161c9f511fa58ddd4f9db3acefe6992be5eca1bfd7e3dd",
    "activitynet-speech/new_val_data.json": "102cabf4d72bc8b3c4d768044ca36cc9e717b6463cad73afde5eabdadf547c55",
    "activitynet-speech/test_data.json": "f030f559a95752b241d31b13da8b3a5edab6d016ad0c53ab02e1e199eaab3ef8",
    "activitynet-speech/val_data.json": "138ad7ad9822ef9ea03906d9f95f49632bb7c56bfe7e1acb84a43386acf1f15f",
}


@needs_shared
def test_real_checksums():
    """The files are the ones the README describes, and the README lists exactly these checksums."""
    listed = dict(
        (path, digest)
        for digest, path in re.findall(r"^([0-9a-f]{64})  (\S+)$", (DATA / "README.md").read_text(), re.M)
    )
    assert listed == CHECKSUMS
    for rel, digest in CHECKSUMS.items():
        assert hashlib.sha256((DATA / rel).read_bytes()).hexdigest() == digest, rel


# split -> (videos, pairs in the file, moments kept, skipped by kind, spans clipped, clipped beyond tolerance)
REAL_CAPTIONS = {
    "train": (10009, 37421, 37417, {"empty-span": 2, "reversed-span": 2}, 261, 29),
    "val_1": (4917, 17505, 17505, {}, 134, 5),
    "val_2": (4885, 17031, 17031, {}, 111, 1),
}


@needs_shared
@pytest.mark.parametrize("split", list(REAL_CAPTIONS))
def test_real_captions(split):
    videos, pairs, kept, skipped, clipped, beyond = REAL_CAPTIONS[split]
    path = DATA / "activitynet-captions" / f"{split}.json"
    policy = SkipPolicy(skip=True)
    ann = activitynet.read_captions(path, split, policy)
    assert (len(json.loads(path.read_text())), ann.entries) == (videos, pairs)
    assert (len(ann.videos), len(ann), ann.skipped, dict(policy.skipped)) == (videos, kept, pairs - kept, skipped)
    assert (ann.clipped, ann.clipped_beyond_tolerance) == (clipped, beyond)
    assert 0.0099 < ann.max_clip < 0.0101  # the worst overshoot is 0.01 s
    assert all(0 <= m.start < m.end <= m.duration for m in ann)
    if split == "train":
        # 37,421 - 4 = 37,417: the paper's count of ActivityNet Speech train pairs
        with pytest.raises(DataError) as exc:
            activitynet.read_captions(path, split)
        assert_data_error(exc, "train.json", '["v_N7ppHQNikv8"].timestamps[2]', "empty after clipping")
        bad = {m for m in policy.examples}
        assert any('["v_0bosp4-pyTM"].timestamps[3]' in m and "reversed" in m for m in bad)
        assert any('["v_rhOtqArO-3Y"].timestamps[5]' in m for m in bad)
        assert any('["v_4rKTw99bM8g"].timestamps[1]' in m for m in bad)


# file, split, captions file: (entries, videos, clipped, clipped beyond tolerance)
REAL_VGCL = {
    "val_data.json": ("val_1", 17505, 4917, 134, 5),
    "test_data.json": ("val_2", 17031, 4885, 111, 1),
    "new_val_data.json": ("val_1", 17505, 4917, 5, 5),  # durations rounded to 0.01 s: only the real overshoots
    "new_test_data.json": ("val_2", 17031, 4885, 1, 1),
}


@needs_shared
@pytest.mark.parametrize("name", list(REAL_VGCL))
def test_real_vgcl_lists(name):
    split, entries, videos, clipped, beyond = REAL_VGCL[name]
    path = DATA / "activitynet-speech" / name
    ann = activitynet.read_vgcl_list(path, split)  # strict: every wav name follows the rule with the right k
    assert (ann.entries, len(ann), len(ann.videos), ann.skipped) == (entries, entries, videos, 0)
    assert (ann.clipped, ann.clipped_beyond_tolerance) == (clipped, beyond)
    captions = json.loads((DATA / "activitynet-captions" / f"{split}.json").read_text())
    raw = json.loads(path.read_text())
    for m, item in zip(ann, raw, strict=True):
        entry = captions[m.video]
        # k is the sentence index in the video: the k-th caption sentence and span are this entry's
        assert entry["sentences"][m.k - 1] == item[3]
        assert entry["timestamps"][m.k - 1] == item[2]
        assert math.isclose(entry["duration"], m.duration, abs_tol=1e-9)
        if name.startswith("new_"):
            w = activitynet.parse_wav_name(item[4])
            assert (w.video, w.split, w.k) == (m.video, split, m.k)
            assert m.audio == item[4] == activitynet.wav_name(m.video, split, m.k)
    assert {v: len(e["sentences"]) for v, e in captions.items()} == Counter(m.video for m in ann)


# ActivityNet-CD: (videos, pairs, kept, clipped, clipped beyond tolerance); the split name is only a label here
REAL_CD = {
    "anet_val.json": (746, 3521, 3521, 17, 4),
    "anet_test_iid.json": (746, 3443, 3443, 27, 2),
    "anet_test_ood.json": (2450, 13578, 13574, 55, 4),  # holds the same four bad spans as train.json
}


@needs_shared
@pytest.mark.parametrize("name", list(REAL_CD))
def test_real_activitynet_cd(name):
    videos, pairs, kept, clipped, beyond = REAL_CD[name]
    policy = SkipPolicy(skip=True)
    ann = activitynet.read_captions(DATA / "activitynet-cd" / name, "train", policy)
    assert (len(ann.videos), ann.entries, len(ann), ann.skipped) == (videos, pairs, kept, pairs - kept)
    assert (ann.clipped, ann.clipped_beyond_tolerance) == (clipped, beyond)


# ---------------------------------------------------------------------------------------------------------------
# C3D features


@pytest.fixture(params=["single", "per-video"])
def c3d_root(request, tmp_path):
    feats = {"v_QOlSCBRmfWY": np.arange(20.0).reshape(4, 5) / 7, "v_Sd4C8_FMdjA": np.ones((3, 5)) * 0.1}
    if request.param == "single":
        root = rf.write_c3d_single(tmp_path / "features" / c3d.SINGLE_FILE, feats)
    else:
        root = rf.write_c3d_per_video(tmp_path / "features", feats)
    return request.param, tmp_path / "features", root, feats


def test_c3d_both_layouts(c3d_root):
    layout, folder, path, feats = c3d_root
    for where in {folder, path}:
        with c3d.open_features(where, dim=5) as store:
            assert store.layout == layout
            assert store.videos == ["v_QOlSCBRmfWY", "v_Sd4C8_FMdjA"] and len(store) == 2
            assert "v_Sd4C8_FMdjA" in store and "v_x" not in store
            x = store.get("v_QOlSCBRmfWY")
            assert x.dtype == torch.float32 and x.shape == (4, 5)
            assert torch.equal(x, torch.from_numpy(feats["v_QOlSCBRmfWY"].astype(np.float32)))
            assert x[1, 2].item() == pytest.approx(7 / 7)
            with pytest.raises(DataError) as exc:
                store.get("v_absent")
            assert_data_error(exc, "v_absent", str(path))


def _plant(layout: str, path: Path, video: str, arr: np.ndarray) -> None:
    if layout == "single":
        with h5py.File(path, "a") as f:
            del f[video]
            f.create_group(video).create_dataset("c3d_features", data=arr)
    else:
        with h5py.File(path / f"{video}.h5", "w") as f:
            f.create_dataset("feature", data=arr)


@pytest.mark.parametrize(
    ("arr", "fragment"),
    [
        (np.array([[0.0, np.nan, 1, 2, 3], [0, 0, 0, 0, np.inf], [0] * 5]), "2 NaN/inf values in 2 of 3 frames"),
        (np.zeros((3, 4)), "feature width 4, expected 5"),
        (np.zeros((0, 5)), "not [T, D]"),
        (np.zeros(5), "not [T, D]"),
    ],
)
def test_c3d_bad_values(c3d_root, arr, fragment):
    layout, folder, path, _ = c3d_root
    _plant(layout, path, "v_Sd4C8_FMdjA", arr)
    with c3d.open_features(folder, dim=5) as store, pytest.raises(DataError) as exc:
        store.get("v_Sd4C8_FMdjA")
    assert_data_error(exc, "v_Sd4C8_FMdjA", fragment)


def test_c3d_bad_files(tmp_path):
    with pytest.raises(DataError) as exc:
        c3d.open_features(tmp_path / "nothing")
    assert_data_error(exc, "nothing", "no such file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as exc:
        c3d.open_features(tmp_path / "empty")
    assert_data_error(exc, "empty", c3d.SINGLE_FILE)
    broken = tmp_path / "broken" / c3d.SINGLE_FILE
    broken.parent.mkdir()
    broken.write_bytes(b"\x89HDF\r\n garbage" * 10)
    with pytest.raises(DataError) as exc:
        c3d.open_features(broken.parent)
    assert_data_error(exc, str(broken), "not a readable HDF5")
    per = tmp_path / "per"
    rf.write_c3d_per_video(per, {"v_a": np.zeros((2, 500))})
    with h5py.File(per / "v_b.h5", "w") as f:
        f.create_dataset("features", data=np.zeros((2, 500)))  # wrong key
    with c3d.open_features(per) as store, pytest.raises(DataError) as exc:
        store.get("v_b")
    assert_data_error(exc, "v_b.h5", "no 'feature' dataset")
    two = tmp_path / "two"
    rf.write_c3d_single(two / "a.hdf5", {"v_a": np.zeros((2, 500))})
    rf.write_c3d_single(two / "b.hdf5", {"v_a": np.zeros((2, 500))})
    with pytest.raises(DataError) as exc:
        c3d.open_features(two)
    assert_data_error(exc, "ambiguous")
    synth = tmp_path / "synth"  # the synthetic benchmark's file name
    rf.write_c3d_single(synth / "sub_activitynet_synth.c3d.hdf5", {"v_a": np.zeros((2, 500))})
    with c3d.open_features(synth) as store:
        assert store.layout == "single" and store.get("v_a").shape == (2, 500)


def _average_to_fixed_length(visual_input: torch.Tensor, num_sample_clips: int) -> torch.Tensor:
    """2D-TAN's function, transcribed (lib/datasets/__init__.py), as the reference."""
    num_clips = visual_input.shape[0]
    idxs = torch.arange(0, num_sample_clips + 1, 1.0) / num_sample_clips * num_clips
    idxs = torch.min(torch.round(idxs).long(), torch.tensor(num_clips - 1))
    new_visual_input = []
    for i in range(num_sample_clips):
        s_idx, e_idx = idxs[i].item(), idxs[i + 1].item()
        if s_idx < e_idx:
            new_visual_input.append(torch.mean(visual_input[s_idx:e_idx], dim=0))
        else:
            new_visual_input.append(visual_input[s_idx])
    return torch.stack(new_visual_input, dim=0)


@pytest.mark.parametrize(
    ("t", "n", "expected"),
    [
        # idx = [0, round(1.67)=2, round(3.33)=3, min(5, 4)=4]: means of [0,1], [2], [3]; frame 4 never used
        (5, 3, [0.5, 2.0, 3.0]),
        # idx = [0, round(1.5)=2 (half to even), 3, round(4.5)=4 (half to even), min(6, 5)=5]
        (6, 4, [0.5, 2.0, 3.0, 4.0]),
        # idx = [0, 2, 4, 6, min(8, 7)=7]: the last clip averages frame 6 only
        (8, 4, [0.5, 2.5, 4.5, 6.0]),
        # T < n: idx = [0, round(0.5)=0, 1, round(1.5)=2 -> 1, 2 -> 1]: empty ranges take frame idx[i]
        (2, 4, [0.0, 0.0, 1.0, 1.0]),
        (1, 3, [0.0, 0.0, 0.0]),
        (4, 1, [1.0]),  # idx = [0, min(4, 3)=3]: mean of frames 0..2
    ],
)
def test_resample_golden(t, n, expected):
    feat = torch.arange(float(t)).unsqueeze(1) * torch.tensor([1.0, -2.0])
    out = c3d.resample_to_clips(feat, n)
    assert out.shape == (n, 2) and out.dtype == torch.float32
    assert out[:, 0].tolist() == expected
    assert out[:, 1].tolist() == [-2 * x for x in expected]


def test_resample_matches_2dtan():
    gen = torch.Generator().manual_seed(0)
    for t in [1, 3, 63, 64, 100, 255, 256, 257, 700, 1321]:
        feat = torch.randn(t, 9, generator=gen)
        for n in [1, 16, 64, 256]:
            torch.testing.assert_close(c3d.resample_to_clips(feat, n), _average_to_fixed_length(feat, n))
    with pytest.raises(ValueError):
        c3d.resample_to_clips(torch.zeros(0, 3), 4)


# ---------------------------------------------------------------------------------------------------------------
# LibriSpeech and audio


def test_librispeech_values(tmp_path):
    ids = rf.write_librispeech(tmp_path)
    utts = librispeech.read_librispeech(tmp_path, ["train-clean-100", "dev-clean"])
    assert [u.id for u in utts] == ids == ["84-121123-0000", "103-1240-0000", "103-1240-0001", "1034-121119-0000"]
    u = utts[2]
    assert (u.text, u.speaker, u.chapter, u.subset) == (
        "THAT HAD ITS SOURCE AWAY BACK IN THE WOODS",
        "103",
        "1240",
        "train-clean-100",
    )
    assert u.path == tmp_path / "train-clean-100" / "103" / "1240" / "103-1240-0001.flac"
    assert [x.id for x in librispeech.read_librispeech(tmp_path, "dev-clean")] == ["84-121123-0000"]
    wave = librispeech.load_audio(u.path)
    assert wave.dtype == torch.float32 and wave.shape == (3200,)
    np.testing.assert_allclose(wave.numpy(), rf.tone(0.2, 16000, 250), atol=1 / 32768)


def _chapter(root: Path) -> Path:
    return root / "train-clean-100" / "103" / "1240"


@pytest.mark.parametrize(
    ("plant", "kind", "fragment"),
    [
        (lambda c: (c / "103-1240-0001.flac").unlink(), "missing-flac", "103-1240-0001.flac"),
        (
            lambda c: sf.write(c / "103-1240-0002.flac", rf.tone(0.1), 16000, subtype="PCM_16"),
            "missing-transcript",
            "103-1240-0002",
        ),
        (
            lambda c: (c / "103-1240.trans.txt").write_text("103-1240-0000 CHAPTER ONE\n103-1240-0001\n"),
            "empty-transcript",
            "line 2",
        ),
        (
            lambda c: (c / "103-1240.trans.txt").write_text("103-1240-0000 CHAPTER ONE\n9-9-0001 X\n"),
            "bad-transcript-line",
            "line 2",
        ),
        (lambda c: (c / "103-1240.trans.txt").unlink(), "missing-transcript", "103-1240.trans.txt"),
        (
            lambda c: (c / "103-1240.trans.txt").write_text(
                "103-1240-0000 CHAPTER ONE\n103-1240-0001 THE WOOD\u2019S\n"
            ),
            "non-ascii-transcript",
            "'\u2019' U+2019",
        ),
    ],
)
def test_librispeech_bad(tmp_path, plant, kind, fragment):
    rf.write_librispeech(tmp_path)
    plant(_chapter(tmp_path))
    with pytest.raises(DataError) as exc:
        librispeech.read_librispeech(tmp_path, ["train-clean-100"])
    assert_data_error(exc, str(_chapter(tmp_path)), fragment)
    policy = SkipPolicy(skip=True)
    utts = librispeech.read_librispeech(tmp_path, ["train-clean-100"], policy)
    assert sum(policy.skipped.values()) >= 1 and policy.skipped[kind] >= 1
    assert all(u.path.is_file() and u.text for u in utts)


def test_librispeech_missing_subset(tmp_path):
    rf.write_librispeech(tmp_path)
    with pytest.raises(DataError) as exc:
        librispeech.read_librispeech(tmp_path, ["train-other-500"])
    assert_data_error(exc, "train-other-500", "present: dev-clean, train-clean-100")


def test_load_audio_errors(tmp_path):
    with pytest.raises(DataError) as exc:
        librispeech.load_audio(rf.write_wav(tmp_path / "a8k.wav", 0.1, rate=8000))
    assert_data_error(exc, "a8k.wav", "sample rate 8000 Hz, expected 16000 Hz", "resample", "16 kHz")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(DataError) as exc:
        librispeech.load_audio(junk)
    assert_data_error(exc, "junk.wav", "unreadable audio")
    with pytest.raises(DataError) as exc:
        librispeech.load_audio(tmp_path / "none.wav")
    assert_data_error(exc, "none.wav")
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([np.full(160, 0.5), np.full(160, -0.25)], 1), 16000, subtype="FLOAT")
    assert librispeech.load_audio(stereo).tolist() == [0.125] * 160
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.1]), 16000, subtype="FLOAT")
    with pytest.raises(DataError) as exc:
        librispeech.load_audio(nan)
    assert_data_error(exc, "nan.wav", "NaN")


# ---------------------------------------------------------------------------------------------------------------
# GloVe


def test_glove_values(tmp_path):
    path = rf.write_glove_text(tmp_path / "glove.txt")
    wv = glove.read_glove(path)
    assert wv.words == ["the", ",", ".", "man", "dog"] and wv.dim == 4 and len(wv) == 5
    assert wv.index["man"] == 3 and "dog" in wv
    assert wv.vectors.dtype == torch.float32
    assert wv.vectors[3].tolist() == np.array([-0.094386, 0.43007, -0.17224, -0.45529], np.float32).tolist()
    sub = glove.read_glove(path, vocab={"dog", "the", "cat"})
    assert sub.words == ["the", "dog"]  # file order
    assert torch.equal(sub.vectors[1], wv.vectors[4])
    out = wv.lookup(["dog", "the"])
    assert torch.equal(out, wv.vectors[[4, 0]])
    with pytest.raises(DataError) as exc:
        wv.lookup(["the", "cat"])
    assert_data_error(exc, str(path), "'cat'")
    z = wv.lookup(["cat", "man", "cat", "zebra"], unknown="zero")
    assert z[0].abs().sum() == 0 and torch.equal(z[1], wv.vectors[3])
    assert wv.unknown == Counter({"cat": 2, "zebra": 1})


def test_glove_roundtrip_and_spaced_words(tmp_path):
    gen = torch.Generator().manual_seed(1)
    vec = torch.randn(50, 7, generator=gen) * 10 ** torch.randint(-8, 8, (50, 1), generator=gen)
    words = [f"w{i}" for i in range(50)]
    glove.write_glove(tmp_path / "v.txt", words, vec)
    back = glove.read_glove(tmp_path / "v.txt")
    assert back.words == words and torch.equal(back.vectors, vec)  # %.9g round-trips float32 exactly
    for bad_words in (["a b"] + words[1:], ["w0"] * 50):
        with pytest.raises(ValueError):
            glove.write_glove(tmp_path / "x.txt", bad_words, vec)
    # GloVe 840B style: a "word" with spaces is the fields before the last D; a repeated word keeps its first row
    lines = rf.GLOVE_LINES + [". . . 1 2 3 4", "the 9 9 9 9"]
    wv = glove.read_glove(rf.write_glove_text(tmp_path / "g.txt", lines))
    assert wv.words[-1] == ". . ." and wv.vectors[-1].tolist() == [1, 2, 3, 4]
    assert wv.duplicates == 1 and wv.vectors[0, 0].item() == pytest.approx(0.418)
    assert wv.repeats == [glove.Repeat("the", line=7, first_line=1, same=False)]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("cat 0.1 0.2 0.3", "3 values, expected 4"),
        ("cat 0.1 0.2 0.3 0.4 0.5", "5 values, expected 4"),
        ("cat 0.1 abc 0.3 0.4", "'abc'"),
        ("cat 0.1 nan 0.3 0.4", "NaN"),
    ],
)
def test_glove_bad_lines(tmp_path, line, fragment):
    lines = rf.GLOVE_LINES[:2] + [line] + rf.GLOVE_LINES[2:]
    path = rf.write_glove_text(tmp_path / "g.txt", lines)
    with pytest.raises(DataError) as exc:
        glove.read_glove(path)
    assert_data_error(exc, f"{path} line 3", fragment)
    policy = SkipPolicy(skip=True)
    wv = glove.read_glove(path, policy=policy)
    assert policy.skipped == Counter({"bad-glove-line": 1}) and len(wv) == 5


def test_glove_word2vec_header(tmp_path):
    path = rf.write_glove_text(tmp_path / "w2v.txt", ["5 4"] + rf.GLOVE_LINES)
    with pytest.raises(DataError) as exc:
        glove.read_glove(path, policy=SkipPolicy(skip=True))  # not one error per line: the whole file is off
    assert_data_error(exc, f"{path} line 1", "word2vec header", "delete the first line")


def test_glove_empty_and_missing(tmp_path):
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(DataError) as exc:
        glove.read_glove(tmp_path / "e.txt")
    assert_data_error(exc, "e.txt", "empty")
    with pytest.raises(DataError) as exc:
        glove.read_glove(tmp_path / "none.txt")
    assert_data_error(exc, "none.txt")


# ---------------------------------------------------------------------------------------------------------------
# ESC-50


def test_esc50_values(tmp_path):
    rf.write_esc50(tmp_path)
    clips = esc50.read_esc50(tmp_path)
    assert [(c.path.name, c.category, c.fold, c.target, c.esc10) for c in clips] == [
        ("1-100032-A-0.wav", "dog", 1, 0, True),
        ("1-100038-A-14.wav", "chirping_birds", 1, 14, False),
        ("2-102414-G-17.wav", "pouring_water", 2, 17, False),
    ]
    assert sf.info(clips[0].path).samplerate == 44100
    wave = esc50.load_noise(clips[0])
    assert wave.dtype == torch.float32 and wave.shape == (1600,)  # 0.1 s resampled to 16 kHz
    # the 300 Hz tone survives resampling (compare away from the edges)
    np.testing.assert_allclose(wave[200:1400].numpy(), rf.tone(0.1, 16000, 300)[200:1400], atol=2e-3)


def test_esc50_bad(tmp_path):
    with pytest.raises(DataError) as exc:
        esc50.read_esc50(tmp_path)
    assert_data_error(exc, "esc50.csv", "no such file")
    rf.write_esc50(tmp_path)
    (tmp_path / "audio" / "1-100038-A-14.wav").unlink()
    with pytest.raises(DataError) as exc:
        esc50.read_esc50(tmp_path)
    assert_data_error(exc, "1-100038-A-14.wav", "absent")
    policy = SkipPolicy(skip=True)
    assert len(esc50.read_esc50(tmp_path, policy)) == 2 and policy.skipped == Counter({"missing-file": 1})
    rf.write_esc50(tmp_path, rows=[("1-1-A-0.wav", 7, 0, "dog", "True", "1", "A")])
    with pytest.raises(DataError) as exc:
        esc50.read_esc50(tmp_path)
    assert_data_error(exc, "esc50.csv line 2", "fold 7")
    (tmp_path / "meta" / "esc50.csv").write_text("filename,fold\n1-1-A-0.wav,1\n")
    with pytest.raises(DataError) as exc:
        esc50.read_esc50(tmp_path)
    assert_data_error(exc, "esc50.csv", "target, category")


# ---------------------------------------------------------------------------------------------------------------
# wav2vec2


@pytest.fixture(scope="module")
def w2v_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("w2v")
    return rf.write_wav2vec2(base / "new"), rf.write_wav2vec2(base / "legacy", legacy=True)


def test_wav2vec2_loads(w2v_dirs):
    for d in w2v_dirs:
        assert wav2vec2.check_checkpoint(d) == []
        model, processor = wav2vec2.load_wav2vec2(d)
        assert not model.training and model.config.hidden_size == 32 and model.config.num_hidden_layers == 2
        x = processor(rf.tone(0.5), sampling_rate=16000, return_tensors="pt").input_values
        with torch.no_grad():
            logits = model(x).logits
        # conv 1: (8000 - 10) // 5 + 1 = 1599 frames; conv 2: (1599 - 8) // 4 + 1 = 398
        assert logits.shape == (1, 398, len(rf.W2V_VOCAB))
        assert processor.tokenizer.decode([5, 6, 4, 7]) == "AB C"
    # the two saved layouts hold the same weights
    a, b = (wav2vec2.load_wav2vec2(d)[0].state_dict() for d in w2v_dirs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    return Path(shutil.copytree(src, dst))


def test_wav2vec2_problems(w2v_dirs, tmp_path):
    new, legacy = w2v_dirs
    d = _copy(new, tmp_path / "noweights")
    (d / "model.safetensors").unlink()
    assert len(wav2vec2.check_checkpoint(d)) == 1 and "holds no weights" in wav2vec2.check_checkpoint(d)[0]
    with pytest.raises(DataError) as exc:
        wav2vec2.load_wav2vec2(d)
    assert_data_error(exc, str(d), "holds no weights")

    d = _copy(new, tmp_path / "lfs")
    (d / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 377\n")
    assert wav2vec2.check_checkpoint(d) == [
        f"{d / 'model.safetensors'}: is a Git LFS pointer, not the weights. Fix: run 'git lfs pull' in the checkpoint"
    ]

    d = _copy(new, tmp_path / "nohead")
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["Wav2Vec2ForPreTraining"]
    cfg["vocab_size"] = 4
    (d / "config.json").write_text(json.dumps(cfg))
    problems = wav2vec2.check_checkpoint(d)
    assert len(problems) == 2
    assert "no CTC head" in problems[0] and "10 tokens but config.json has vocab_size 4" in problems[1]

    d = _copy(legacy, tmp_path / "rate")
    pre = json.loads((d / "preprocessor_config.json").read_text())
    pre["sampling_rate"] = 8000
    (d / "preprocessor_config.json").write_text(json.dumps(pre))
    (d / "vocab.json").unlink()
    problems = wav2vec2.check_checkpoint(d)
    assert len(problems) == 2 and "8000 Hz" in problems[0] and "vocab.json: missing" in problems[1]
    assert all("Fix:" in p for p in problems)
    assert "no such directory" in wav2vec2.check_checkpoint(tmp_path / "absent")[0]
