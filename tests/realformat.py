"""Write tiny files in the exact formats of the real data, for the reader and ``bench data check`` tests.

Each writer copies the real layout byte for byte where it matters: ActivityNet Captions JSON as one compact
object (sentences after the first start with a space, some timestamps are JSON integers, some durations carry
float noise such as ``119.03999999999999``); VGCL lists compact (four fields) or indented by 4 (``new_*``, with
the wav name); C3D as the single ``sub_activitynet_v1-3.c3d.hdf5`` (float64 ``<v_id>/c3d_features``) or per-video
``v_<id>.h5`` (float32 ``feature``); LibriSpeech FLAC + ``.trans.txt``; GloVe text; ESC-50 ``audio/`` at 44.1 kHz
+ ``meta/esc50.csv``; a transformers ``save_pretrained`` wav2vec2 CTC directory.

:func:`build_root` lays them out as ``bench.data.check`` expects and returns what it wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import soundfile as sf

# Tiny ActivityNet Captions, one dict per split. Ids with "_" and "-" as real YouTube ids have; the second
# train video's duration has float noise and its last span ends at the rounded duration, as most of the
# real spans that end "past" the duration do (clipped by float noise only, so no warning).
CAPTIONS: dict[str, dict[str, dict]] = {
    "train": {
        "v_QOlSCBRmfWY": {
            "duration": 82.73,
            "timestamps": [[0.83, 19.86], [17.37, 60.81], [56.26, 79.42]],
            "sentences": [
                "A young woman is seen standing in a room and leads into her dancing.",
                " The girl dances around the room while the camera captures her movements.",
                " She continues dancing around the room and ends by laying on the floor.",
            ],
        },
        "v_Sd4C8_FMdjA": {
            "duration": 119.03999999999999,
            "timestamps": [[0, 30.5], [83.92, 119.04]],
            "sentences": ["A man talks to the camera.", " He jumps into the lake."],
        },
    },
    "val_1": {
        "v_uqiMw7tQ1Cc": {
            "duration": 55.15,
            "timestamps": [[0.28, 55.15], [13.79, 54.32]],
            "sentences": [
                "A weight lifting tutorial is given.",
                "  The coach helps the guy in red with the proper body placement and lifting technique.",
            ],
        },
        "v_-sd2XAFkeC0": {
            "duration": 230.66,
            "timestamps": [[0, 40.2]],
            "sentences": ["People are rowing a boat."],
        },
    },
    "val_2": {
        "v_yINX46xPRf0": {
            "duration": 159.99,
            "timestamps": [[0, 31.2], [31.2, 159.99]],
            "sentences": ["The people are in the pool wearing goggles.", " They swim to the end of the pool."],
        },
        "v_5n8wY8hwy3Y": {
            "duration": 12.5,
            "timestamps": [[1, 12]],
            "sentences": ["A dog catches a frisbee."],
        },
    },
}
"""Moments per split: train 5 (one clipped by float noise), val_1 3, val_2 3."""

SAMPLE_RATE = 16_000


def write_captions(path: Path, data: dict) -> Path:
    """ActivityNet Captions JSON: one compact object, as the originals (``json.dumps`` default separators)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def wav_name(video: str, split: str, k: int) -> str:
    """The naming rule, written out here independently of the code under test."""
    return f"{video[2:]}_{split}_{k}.wav"


def vgcl_entries(data: dict, split: str, new: bool) -> list[list]:
    """VGCL's flattening: one ``[video, duration, [s, e], sentence(, wav)]`` per sentence, in caption order."""
    out = []
    for video, entry in data.items():
        for k, (span, sentence) in enumerate(zip(entry["timestamps"], entry["sentences"], strict=True), 1):
            item = [video, entry["duration"], span, sentence]
            if new:
                item.append(wav_name(video, split, k))
            out.append(item)
    return out


def write_vgcl(path: Path, entries: list[list], new: bool) -> Path:
    """The four-field lists are compact; the ``new_*`` five-field lists are indented by 4 spaces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=4) if new else json.dumps(entries))
    return path


def features_for(videos: dict[str, float], dim: int = 500, seed: int = 0) -> dict[str, np.ndarray]:
    """Random ``[T, dim]`` features, T about one per 4 s of video (at least 3), deterministic."""
    rng = np.random.default_rng(seed)
    return {v: rng.standard_normal((max(3, int(d / 4)), dim)) for v, d in sorted(videos.items())}


def write_c3d_single(path: Path, feats: dict[str, np.ndarray]) -> Path:
    """``sub_activitynet_v1-3.c3d.hdf5``: group per video, dataset ``c3d_features``, float64 as released."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for video, arr in feats.items():
            f.create_group(video).create_dataset("c3d_features", data=np.asarray(arr, dtype=np.float64))
    return path


def write_c3d_per_video(folder: Path, feats: dict[str, np.ndarray]) -> Path:
    """SIL/VGCL's layout: ``<folder>/<v_id>.h5`` with dataset ``feature``, float32."""
    folder.mkdir(parents=True, exist_ok=True)
    for video, arr in feats.items():
        with h5py.File(folder / f"{video}.h5", "w") as f:
            f.create_dataset("feature", data=np.asarray(arr, dtype=np.float32))
    return folder


def tone(seconds: float, rate: int = SAMPLE_RATE, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, seconds: float = 0.25, rate: int = SAMPLE_RATE, freq: float = 440.0) -> Path:
    """A 16-bit PCM wav (the ActivityNet Speech wavs are 16 kHz mono)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, rate, freq), rate, subtype="PCM_16", format="WAV")
    return path


# LibriSpeech: speaker -> chapter -> transcripts (upper case, as shipped); utterance numbers are 4 digits.
LIBRI: dict[str, dict[str, dict[str, list[str]]]] = {
    "train-clean-100": {
        "103": {"1240": ["CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED", "THAT HAD ITS SOURCE AWAY BACK IN THE WOODS"]},
        "1034": {"121119": ["THE RIVER RAN DOWN TO THE SEA"]},
    },
    "dev-clean": {"84": {"121123": ["GO DO YOU HEAR"]}},
}


def write_librispeech(root: Path, corpus: dict | None = None, rate: int = SAMPLE_RATE) -> list[str]:
    """``<root>/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` + ``<spk>-<chapter>.trans.txt``; ids back."""
    ids = []
    for subset, speakers in (corpus or LIBRI).items():
        for spk, chapters in speakers.items():
            for chap, texts in chapters.items():
                folder = root / subset / spk / chap
                folder.mkdir(parents=True, exist_ok=True)
                lines = []
                for i, text in enumerate(texts):
                    uid = f"{spk}-{chap}-{i:04d}"
                    sf.write(folder / f"{uid}.flac", tone(0.2, rate, 200 + 50 * i), rate, subtype="PCM_16")
                    lines.append(f"{uid} {text}")
                    ids.append(uid)
                (folder / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return sorted(ids, key=lambda u: tuple(int(x) for x in u.split("-")))


# GloVe text lines as glove.6B.50d prints them (here 4-d): word, then space-separated values, no header.
GLOVE_LINES = [
    "the 0.418 0.24968 -0.41242 0.1217",
    ", 0.013441 0.23682 -0.16899 0.40951",
    ". 0.15164 0.30177 -0.16763 0.17684",
    "man -0.094386 0.43007 -0.17224 -0.45529",
    "dog 0.11008 -0.38781 -0.57615 -0.27714",
]


def write_glove_text(path: Path, lines: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines or GLOVE_LINES) + "\n")
    return path


ESC50_HEADER = "filename,fold,target,category,esc10,src_file,take"
ESC50_ROWS = [
    ("1-100032-A-0.wav", 1, 0, "dog", "True", "100032", "A"),
    ("1-100038-A-14.wav", 1, 14, "chirping_birds", "False", "100038", "A"),
    ("2-102414-G-17.wav", 2, 17, "pouring_water", "False", "102414", "G"),
]


def write_esc50(root: Path, rows: list[tuple] | None = None, seconds: float = 0.1, rate: int = 44_100) -> Path:
    """``<root>/audio/*.wav`` at 44.1 kHz + ``<root>/meta/esc50.csv`` with ESC-50's header."""
    rows = rows or ESC50_ROWS
    (root / "meta").mkdir(parents=True, exist_ok=True)
    for row in rows:
        write_wav(root / "audio" / row[0], seconds, rate, 300.0)
    lines = [ESC50_HEADER] + [",".join(str(x) for x in row) for row in rows]
    (root / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
    return root


W2V_VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5, "B": 6, "C": 7, "D": 8, "E": 9}


def write_wav2vec2(folder: Path, legacy: bool = False, seed: int = 0, frame_rate: int = 800) -> Path:
    """A tiny random Wav2Vec2ForCTC (hidden 32, 2 layers, small conv layers) saved with its processor.

    ``legacy=False`` is what transformers 5 writes (``processor_config.json``); ``legacy=True`` writes the
    feature extractor and tokenizer apart (``preprocessor_config.json``, as the hub checkpoints have).
    ``frame_rate``: 800 frames a second (2 conv layers of stride 5 and 4), or 50 (3 layers of stride 5, 8, 8: the
    real models' 320 samples a frame, which a method running attention over the frames needs to fit in memory).
    """
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    if frame_rate not in (800, 50):
        raise ValueError(f"frame_rate {frame_rate}: choose 800 or 50")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(W2V_VOCAB))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(folder / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|"
    )
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    )
    config = Wav2Vec2Config(
        vocab_size=len(W2V_VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16) if frame_rate == 800 else (16, 16, 16),
        conv_stride=(5, 4) if frame_rate == 800 else (5, 8, 8),
        conv_kernel=(10, 8) if frame_rate == 800 else (10, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
        feat_extract_norm="group",
    )
    torch.manual_seed(seed)
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    if legacy:
        extractor.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    else:
        Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@dataclass
class Root:
    """What :func:`build_root` wrote: the root, the features layout, and per split the wav names in order."""

    path: Path
    layout: str
    wavs: dict[str, list[str]] = field(default_factory=dict)
    videos: dict[str, float] = field(default_factory=dict)


def build_root(
    root: Path,
    layout: str = "single",
    annotations: str = "captions",
    optional: bool = True,
    wav2vec2_from: Path | None = None,
) -> Root:
    """A complete, valid data root in ``bench.data.check``'s layout.

    ``layout`` is the C3D layout (``single`` or ``per-video``); ``annotations`` ``captions`` writes
    ``annotations/<split>.json``, ``vgcl`` the ``new_*`` lists; ``optional`` adds librispeech/, glove.txt, esc50/
    and (copied from ``wav2vec2_from`` when given, since building one takes seconds) wav2vec2/.
    """
    import shutil

    out = Root(root, layout)
    vgcl_names = {"train": "new_train_data.json", "val_1": "new_val_data.json", "val_2": "new_test_data.json"}
    for split, data in CAPTIONS.items():
        if annotations == "captions":
            write_captions(root / "annotations" / f"{split}.json", data)
        else:
            write_vgcl(root / "annotations" / vgcl_names[split], vgcl_entries(data, split, new=True), new=True)
        out.wavs[split] = []
        for video, entry in data.items():
            out.videos[video] = entry["duration"]
            for k in range(1, len(entry["sentences"]) + 1):
                name = wav_name(video, split, k)
                write_wav(root / "wavs" / name, 0.1 + 0.01 * k)
                out.wavs[split].append(name)
    feats = features_for(out.videos)
    if layout == "single":
        write_c3d_single(root / "features" / "sub_activitynet_v1-3.c3d.hdf5", feats)
    else:
        write_c3d_per_video(root / "features", feats)
    if optional:
        write_librispeech(root / "librispeech")
        write_glove_text(root / "glove.txt")
        write_esc50(root / "esc50")
        if wav2vec2_from is not None:
            shutil.copytree(wav2vec2_from, root / "wav2vec2")
    return out


SPEECH_SPLITS = ("train", "val_1", "val_2")
REVERSED = ([30.0, 20.0], " Someone walks by.")
"""The bad entry that :func:`root_from_synth` inserts as the second sentence of the first train video: a reversed
span, as four of the real train.json's spans are (dropped and counted; the later sentences keep their k)."""


def root_from_synth(synth: Path, root: Path, layout: str = "single", wav2vec2_from: Path | None = None,
                    annotations: str = "captions") -> Root:  # fmt: skip
    """A complete ActivityNet Speech data root in the real formats, holding the tiny synthetic benchmark's content.

    Synthetic content, so that every method has speech, features and words to learn from; real formats and quirks,
    so that the dataset is read as a real root is: Captions JSON without synth's extra fields, sentences after the
    first starting with a space, one reversed span in train (its sentence has no wav, the later wavs keep their
    number k), one val_1 span ending 1.5 s past its video; C3D in the ``single`` (float64) or ``per-video``
    (float32) layout; wavs named by the rule; the corpus's chapters spread over LibriSpeech's three training subsets
    of 960 h (and two into ``dev-clean``, which pre-training must not read); synth's GloVe file; ESC-50; and the
    tiny CTC checkpoint when ``wav2vec2_from`` is given. ``annotations="vgcl"`` writes VGCL's ``new_*`` lists of the
    same moments instead of the Captions files. ``Root.wavs`` lists the wavs of each split in order.
    """
    import shutil

    out = Root(root, layout)
    (root / "wavs").mkdir(parents=True)
    for split in SPEECH_SPLITS:
        data = json.loads((synth / "annotations" / f"{split}.json").read_text())
        captions: dict[str, dict] = {}
        out.wavs[split] = []
        for i, (video, entry) in enumerate(data.items()):
            stamps = [list(s) for s in entry["timestamps"]]
            sentences = [s if k == 0 else " " + s for k, s in enumerate(entry["sentences"])]
            source_k = list(range(1, len(sentences) + 1))  # the synthetic wav of each sentence, None: no wav
            if split == "train" and i == 0:
                stamps.insert(1, REVERSED[0])
                sentences.insert(1, REVERSED[1])
                source_k.insert(1, None)
            if split == "val_1" and i == 0:
                stamps[-1][1] = round(entry["duration"] + 1.5, 2)
            captions[video] = {"duration": entry["duration"], "timestamps": stamps, "sentences": sentences}
            out.videos[video] = entry["duration"]
            for k, src in enumerate(source_k, start=1):
                if src is not None:
                    name = wav_name(video, split, k)
                    shutil.copy(synth / "speech" / "wavs" / wav_name(video, split, src), root / "wavs" / name)
                    out.wavs[split].append(name)
        if annotations == "captions":
            write_captions(root / "annotations" / f"{split}.json", captions)
        else:
            listing = {"train": "new_train_data.json", "val_1": "new_val_data.json", "val_2": "new_test_data.json"}
            write_vgcl(root / "annotations" / listing[split], vgcl_entries(captions, split, new=True), new=True)
    with h5py.File(next((synth / "features").glob("*.hdf5")), "r") as h5:
        feats = {v: h5[v]["c3d_features"][()] for v in out.videos}
    if layout == "single":
        write_c3d_single(root / "features" / "sub_activitynet_v1-3.c3d.hdf5", feats)
    else:
        write_c3d_per_video(root / "features", feats)
    chapters = sorted(p for p in (synth / "corpus").glob("*/*/*") if p.is_dir())
    subsets = ("train-clean-100", "train-clean-360", "train-other-500")
    for j, chapter in enumerate(chapters):
        subset = "dev-clean" if j in (3, 7) else subsets[j % 3]
        shutil.copytree(chapter, root / "librispeech" / subset / chapter.parent.name / chapter.name)
    shutil.copy(synth / "glove.txt", root / "glove.txt")
    write_esc50(root / "esc50")
    if wav2vec2_from is not None:
        shutil.copytree(wav2vec2_from, root / "wav2vec2")
    return out
