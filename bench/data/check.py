"""``bench data check ROOT``: list exactly what is missing or corrupt in an ActivityNet Speech data root.

Expected layout (the synthetic benchmark writes the same one, so the check serves both)::

    ROOT/
      annotations/            one file per split, the first found of:
        train.json | new_train_data.json                                 (train)
        val_1.json | new_val_data.json | val_data.json                   (val_1, model selection)
        val_2.json | new_test_data.json | test_data.json                 (val_2, the test split)
                              ActivityNet Captions JSON or VGCL lists (bench.data.activitynet)
      features/               C3D: sub_activitynet_v1-3.c3d.hdf5 (or one other *.hdf5), or v_<id>.h5 per video
      wavs/                   <youtube id>_<split>_<k>.wav, 16 kHz (also accepted: speech/wavs/, wavs_16k/)
      librispeech/            optional, LibriSpeech layout, every subset directory in it (also accepted: corpus/)
      glove.txt               optional, GloVe text format
      esc50/                  optional, audio/*.wav + meta/esc50.csv
      wav2vec2/               optional, a local Wav2Vec2ForCTC checkpoint

Every problem names a path, a kind and the fix. Two severities:

* ``error``: the data cannot be used as is (a missing file, unreadable or truncated audio, silent speech or
  speech under :data:`MIN_SPEECH_S`, a wrong sample rate, NaN/inf or missing features, a wav named by the
  annotations but absent, a video listed twice in an annotation file, a bad GloVe line or a word listed twice with
  two vectors, a LibriSpeech transcript without audio, empty or holding non-ASCII characters, a broken checkpoint).
  ``CheckReport.ok`` is False.
* ``warning``: what the readers handle by a documented rule, and count or say: spans clipped into
  ``[0, duration]`` (one per file, with the count); entries dropped under ``SkipPolicy(skip=True)`` (an empty,
  reversed or non-finite span, an empty sentence, a wrong wav name: the shipped ActivityNet train.json has four
  such spans, and dropping them gives the paper's 37,417 train pairs, so a loader reads annotations with skipping
  on and logs the count); audio with several channels (the readers average them, which keeps one voice's speech;
  channels that cancel out are found by ``deep_audio`` as silence); a word listed twice in GloVe with the same
  vector. ``strict=True`` makes warnings errors.

Audio is probed from its header and its last sample (one seek, which finds a FLAC or wav cut short); ``deep_audio``
(``bench data check --deep``) decodes every file as well, which also finds NaN samples, short reads and silent
speech (peak under :data:`SILENCE_PEAK`; noise clips may be quiet). Wavs that no annotation names, and features
of videos no annotation names, are not checked.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from bench.data import activitynet, c3d, esc50, glove, librispeech, wav2vec2
from bench.data.errors import DataError, SkipPolicy

ANNOTATION_CANDIDATES: dict[str, tuple[str, ...]] = {
    "train": ("train.json", "new_train_data.json"),
    "val_1": ("val_1.json", "new_val_data.json", "val_data.json"),
    "val_2": ("val_2.json", "new_test_data.json", "test_data.json"),
}
WAV_DIRS: tuple[str, ...] = ("wavs", "speech/wavs", "wavs_16k")
MIN_SPEECH_S = 0.1
"""Seconds; spoken sentences (ActivityNet Speech, LibriSpeech) last longer, so a shorter file is a cut or failed
recording. Noise clips (ESC-50) have no minimum."""
SILENCE_PEAK = 1e-3
"""Peak amplitude (full scale 1, so -60 dBFS) below which decoded speech is silent: no query for the model."""
ERROR_KINDS = frozenset({"duplicate-key"})
"""Annotation findings that are errors although a skipping reader reads on: the file's intent is ambiguous."""
LIBRISPEECH_DIRS: tuple[str, ...] = ("librispeech", "corpus")


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (``path``, with key or line when there is one), what ``kind``, what and the fix."""

    path: str
    kind: str
    problem: str
    fix: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}. Fix: {self.fix}"


@dataclass
class CheckReport:
    """What :func:`check_root` found: ``problems`` (errors and warnings) and ``checked`` (what was read)."""

    root: Path
    problems: list[Problem] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings describe data the readers handle by a documented rule)."""
        return not self.errors

    def kinds(self) -> Counter:
        return Counter(p.kind for p in self.problems)

    def summary(self, limit: int = 20) -> str:
        """Human-readable report: verdict, what was checked, then problems grouped by severity and kind."""
        verdict = "OK" if self.ok else "NOT OK"
        lines = [f"data root {self.root}: {verdict} ({len(self.errors)} errors, {len(self.warnings)} warnings)"]
        lines += ["checked:"] + [f"  {c}" for c in self.checked]
        for severity, group in (("errors", self.errors), ("warnings", self.warnings)):
            if not group:
                continue
            lines.append(f"{severity}:")
            by_kind: dict[str, list[Problem]] = {}
            for p in group:
                by_kind.setdefault(p.kind, []).append(p)
            for kind, items in by_kind.items():
                lines.append(f"  {kind} ({len(items)}):")
                lines += [f"    {p}" for p in items[:limit]]
                if len(items) > limit:
                    lines.append(f"    ... and {len(items) - limit} more")
        return "\n".join(lines)


def _last_sample_reads(f: sf.SoundFile) -> bool:
    """Whether the last sample the header promises can be read: one seek, so cheap even for a long FLAC."""
    try:
        f.seek(f.frames - 1)
        return len(f.read(1)) == 1
    except (sf.LibsndfileError, RuntimeError):
        return False


_CUT_DATA = re.compile(r"^data\s*:\s*(\d+) \(should be (\d+)\)", re.MULTILINE)
"""libsndfile's header log for a wav whose data chunk is longer than the file: ``data : 32000 (should be 15978)``.
Only a hint (the log is not an API): where the line reads otherwise, nothing is reported from it."""


def _truncated(path: Path, what: str) -> DataError:
    return DataError(
        path,
        f"{what}: the file is cut short",
        "restore the file from its source (an interrupted copy or download cuts files short)",
    )


@dataclass
class _Collect(SkipPolicy):
    """A skip policy that keeps every error with its kind, so the check can list each one."""

    found: list[tuple[str, DataError]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.skip = True

    def handle(self, err: DataError, kind: str) -> None:
        super().handle(err, kind)
        self.found.append((kind, err))


class _Checker:
    def __init__(self, root: Path, strict: bool, deep_audio: bool, feature_dim: int | None) -> None:
        self.report = CheckReport(root)
        self.root, self.strict, self.deep_audio, self.feature_dim = root, strict, deep_audio, feature_dim

    def add(self, kind: str, err: DataError, severity: str = "error") -> None:
        if self.strict:
            severity = "error"
        self.report.problems.append(Problem(err.where, kind, err.problem, err.fix, severity))

    def missing(self, path: Path, what: str, fix: str) -> None:
        self.add("missing-file", DataError(path, f"missing ({what})", fix))

    def audio(self, path: Path, rate: int | None, speech: bool = True) -> None:
        """Check one audio file: readable to its last sample, at ``rate`` (None: any), mono; speech long and audible.

        Without ``deep_audio`` only the header and the last sample are read (a seek: a FLAC or wav cut short
        fails it); with it the whole file is decoded, which also finds NaN samples, short reads and silence.
        Noise (``speech=False``) may be short or silent: it only ever adds to speech.
        """
        try:
            with sf.SoundFile(path) as f:
                frames, samplerate, channels = f.frames, f.samplerate, f.channels
                whole = frames == 0 or _last_sample_reads(f)
                cut = _CUT_DATA.search(f.extra_info)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
            self.add("corrupt-audio", DataError(path, f"unreadable audio ({e})", "restore or re-create the file"))
            return
        if frames == 0:
            self.add("corrupt-audio", DataError(path, "audio has no samples", "restore or re-create the file"))
            return
        if not whole:
            promise = f"the header promises {frames} samples ({frames / samplerate:.3g} s) but the last cannot be read"
            self.add("truncated-audio", _truncated(path, promise))
            return
        if cut and int(cut[2]) < int(cut[1]):  # a wav cut short reads as a shorter wav but for this header line
            self.add(
                "truncated-audio", _truncated(path, f"its data chunk declares {cut[1]} bytes, the file holds {cut[2]}")
            )
            return
        if rate is not None and samplerate != rate:
            self.add(
                "wrong-sample-rate",
                DataError(
                    path,
                    f"sample rate {samplerate} Hz, expected {rate} Hz",
                    f"resample to {rate // 1000} kHz (e.g. sox in.wav -r {rate} out.wav)",
                ),
            )
            return
        if speech and frames < MIN_SPEECH_S * samplerate:
            self.add(
                "too-short-audio",
                DataError(
                    path,
                    f"{frames / samplerate:.3g} s of audio, shorter than the {MIN_SPEECH_S:g} s that any spoken "
                    "sentence lasts (a cut or failed recording)",
                    "restore the file, or record the sentence again",
                ),
            )
            return
        if channels > 1:
            self.add(
                "multichannel-audio",
                DataError(
                    path,
                    f"{channels} channels; the readers average them into one (speech and noise are mono)",
                    "nothing needed; to silence this, convert it to mono once (sox in.wav -c 1 out.wav)",
                ),
                "warning",
            )
        if not self.deep_audio:
            return
        try:
            wave = librispeech.load_audio(path, sample_rate=samplerate)
        except DataError as e:
            self.add("corrupt-audio", e)
            return
        if len(wave) != frames:
            self.add("truncated-audio", _truncated(path, f"the header promises {frames} samples, {len(wave)} decode"))
            return
        peak = float(wave.abs().max())
        if speech and peak < SILENCE_PEAK:
            self.add(
                "silent-audio",
                DataError(
                    path,
                    f"audio is silent (peak {peak:.2g}, below {SILENCE_PEAK:g}, i.e. -60 dBFS, after averaging "
                    "the channels)",
                    "restore the file, or record the sentence again",
                ),
            )

    # --- components -------------------------------------------------------------------------------------------

    def annotations(self) -> dict[str, activitynet.Annotations]:
        out: dict[str, activitynet.Annotations] = {}
        folder = self.root / "annotations"
        for split, names in ANNOTATION_CANDIDATES.items():
            path = next((folder / n for n in names if (folder / n).is_file()), None)
            if path is None:
                self.missing(
                    folder / names[0],
                    f"the {split} annotations",
                    f"put {names[0]} (ActivityNet Captions JSON) or {names[1]} (VGCL list) in {folder}",
                )
                continue
            policy = _Collect()
            try:
                ann = activitynet.read_annotations(path, split, policy)
            except DataError as e:
                self.add("corrupt-annotation", e)
                continue
            for kind, err in policy.found:
                self.add(kind, err, "error" if kind in ERROR_KINDS else "warning")
            if ann.clipped_beyond_tolerance:
                self.add(
                    "span-clipped",
                    DataError(
                        path,
                        f"{ann.clipped_beyond_tolerance} spans lie outside [0, duration] by more than "
                        f"{activitynet.CLIP_TOLERANCE:g} s (at most {ann.max_clip:.3g} s); they are clipped into "
                        f"[0, duration] ({ann.clipped} spans clipped in all, the rest by float noise)",
                        "nothing needed; to silence this, correct the spans in the file",
                    ),
                    "warning",
                )
            self.report.checked.append(f"annotations: {ann.summary()}")
            out[split] = ann
        return out

    def features(self, anns: dict[str, activitynet.Annotations]) -> None:
        folder = self.root / "features"
        if not folder.is_dir():
            self.missing(folder, "the C3D features", f"put {c3d.SINGLE_FILE} or per-video v_<id>.h5 files in {folder}")
            return
        try:
            store = c3d.open_features(folder, dim=self.feature_dim)
        except DataError as e:
            self.add("corrupt-features", e)
            return
        videos = sorted({v for ann in anns.values() for v in ann.videos})
        with store:
            absent = 0
            for video in videos:
                if video not in store:
                    absent += 1
                    self.add(
                        "missing-video",
                        DataError(
                            store.where(video),
                            f"video {video} of the annotations is absent from the features",
                            "extract or download its C3D features, or drop the video from the annotations",
                        ),
                    )
                    continue
                try:
                    store.get(video)
                except DataError as e:
                    self.add("bad-feature", e)
            self.report.checked.append(
                f"features: {store.path} ({store.layout} layout, {len(store)} videos), "
                f"{len(videos) - absent} of the {len(videos)} annotated videos read"
            )

    def wavs(self, anns: dict[str, activitynet.Annotations]) -> None:
        folder = next((self.root / d for d in WAV_DIRS if (self.root / d).is_dir()), None)
        if folder is None:
            self.missing(
                self.root / WAV_DIRS[0],
                "the ActivityNet Speech wavs",
                f"put the 16 kHz <youtube id>_<split>_<k>.wav files in {self.root / WAV_DIRS[0]}",
            )
            return
        present = set(os.listdir(folder))
        named = 0
        for split, ann in anns.items():
            for m in ann:
                try:
                    name = m.audio or activitynet.wav_name(m.video, split, m.k)
                except ValueError as e:
                    self.add("bad-video-id", DataError(f"{ann.path} [{m.video}]", str(e), "use 'v_<youtube id>' ids"))
                    continue
                named += 1
                if name not in present:
                    self.add(
                        "missing-wav",
                        DataError(
                            folder / name,
                            f"speech of {m.qid} ({split}) is missing",
                            "restore the ActivityNet Speech wav (or record it: 16 kHz mono)",
                        ),
                    )
                    continue
                self.audio(folder / name, librispeech.SAMPLE_RATE)
        self.report.checked.append(f"wavs: {folder}, {named} wavs named by the annotations, {len(present)} files")

    def librispeech(self) -> None:
        folder = next((self.root / d for d in LIBRISPEECH_DIRS if (self.root / d).is_dir()), None)
        if folder is None:
            self.report.checked.append("librispeech: absent (optional)")
            return
        subsets = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if not subsets:
            self.missing(folder, "no subset directory", "unpack LibriSpeech subsets (e.g. train-clean-100) here")
            return
        policy = _Collect()
        utterances = librispeech.read_librispeech(folder, subsets, policy)
        for kind, err in policy.found:
            self.add(kind, err)
        for u in utterances:
            self.audio(u.path, librispeech.SAMPLE_RATE)
        self.report.checked.append(f"librispeech: {folder}, subsets {', '.join(subsets)}, {len(utterances)} utterances")

    def glove(self) -> None:
        path = self.root / "glove.txt"
        if not path.is_file():
            self.report.checked.append("glove: absent (optional)")
            return
        policy = _Collect()
        try:
            wv = glove.read_glove(path, policy=policy)
        except DataError as e:
            self.add("corrupt-glove", e)
            return
        for kind, err in policy.found:
            self.add(kind, err)
        for r in wv.repeats:
            where, first = f"{path} line {r.line}", f"word {r.word!r} is listed again (first on line {r.first_line})"
            if r.same:  # harmless: every reader gets the same vector
                fix = "nothing needed; to silence this, delete the line"
                self.add("duplicate-word", DataError(where, f"{first} with the same vector", fix), "warning")
            else:
                problem = f"{first} with another vector: this reader keeps the first, one that fills a dict the last"
                self.add("duplicate-word", DataError(where, problem, "delete the line whose vector is wrong"))
        self.report.checked.append(f"glove: {path}, {len(wv)} words of dimension {wv.dim}")

    def esc50(self) -> None:
        folder = self.root / "esc50"
        if not folder.is_dir():
            self.report.checked.append("esc50: absent (optional)")
            return
        if not (folder / esc50.META).is_file():
            self.missing(folder / esc50.META, "the ESC-50 index", "unpack the ESC-50 release, meta/ included")
            return
        policy = _Collect()
        try:
            clips = esc50.read_esc50(folder, policy)
        except DataError as e:
            self.add("corrupt-esc50", e)
            return
        for kind, err in policy.found:
            self.add(kind, err)
        for clip in clips:
            self.audio(clip.path, None, speech=False)  # any rate: noise is resampled to the speech rate on load
        self.report.checked.append(f"esc50: {folder}, {len(clips)} clips")

    def wav2vec2(self) -> None:
        folder = self.root / "wav2vec2"
        if not folder.is_dir():
            self.report.checked.append("wav2vec2: absent (optional)")
            return
        for err in wav2vec2.checkpoint_errors(folder):
            self.add("bad-checkpoint", err)
        self.report.checked.append(f"wav2vec2: {folder} (files checked, model not loaded)")


def check_root(
    root: str | Path, *, strict: bool = False, deep_audio: bool = False, feature_dim: int | None = c3d.C3D_DIM
) -> CheckReport:
    """Check every component of the data root (layout in the module docstring) and return the full report."""
    checker = _Checker(Path(root), strict, deep_audio, feature_dim)
    if not checker.root.is_dir():
        checker.missing(checker.root, "the data root", "create it with the layout of bench.data.check")
        return checker.report
    anns = checker.annotations()
    checker.features(anns)
    checker.wavs(anns)
    checker.librispeech()
    checker.glove()
    checker.esc50()
    checker.wav2vec2()
    checker.report.checked.append(
        "audio: every file decoded (--deep)"
        if deep_audio
        else "audio: header and last sample of every file (--deep decodes them all: silence, NaN samples)"
    )
    return checker.report
