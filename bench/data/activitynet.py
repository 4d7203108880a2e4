"""ActivityNet Captions / ActivityNet Speech annotations: the original JSON and VGCL's flattened lists.

Two formats carry the same moments (``shared/research/sil-original.md`` §2.1):

* ActivityNet Captions (``train.json``, ``val_1.json``, ``val_2.json``; ActivityNet-CD uses it too): one JSON object
  ``{"v_<youtube id>": {"duration": s, "timestamps": [[start, end], ...], "sentences": [...]}}``.
* VGCL's lists (``val_data.json`` = val_1, ``test_data.json`` = val_2): a JSON list of
  ``[video, duration, [start, end], sentence]``, one element per sentence, in caption order; the ``new_*`` lists add
  a fifth field, the speech file ``<youtube id>_<split>_<k>.wav`` (:func:`wav_name`).

Both readers return :class:`Annotations`: the :class:`Moment` list plus the counts that a run must report (spans
clipped, entries skipped). One return type for both formats keeps every caller to one code path.

Span rule (documented once, applied by both readers): start and end are clipped into ``[0, duration]``.
A span that is then empty (``end <= start``; this includes zero-length spans), a reversed span (``start > end``
in the file), a non-finite value, a non-positive duration, a timestamps/sentences count mismatch or an empty
sentence is a :class:`DataError`; under ``SkipPolicy(skip=True)`` the entry is dropped and counted. The real
train.json holds exactly four such spans; dropping them leaves 37,417 pairs, the paper's train count.

A key repeated in a Captions file is a :class:`DataError` (kind ``duplicate-key``), since ``json`` itself keeps
the last copy without a word: a video listed twice (skipping reads its last copy and counts the sentences of the
earlier ones as skipped), or a field listed twice in one entry (skipping drops the entry).

Clipping is counted twice: ``clipped`` counts every span the rule changed, ``clipped_beyond_tolerance`` those
moved by more than :data:`CLIP_TOLERANCE` seconds. The difference is floating-point noise in the files
(durations such as ``119.03999999999999`` against an end of ``119.04``), not an annotation error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data.errors import DataError, SkipPolicy

SPLITS: tuple[str, ...] = ("train", "val_1", "val_2")
"""ActivityNet Captions split names, as used in the file names and in the speech file names."""

CAPTIONS_FILES: dict[str, str] = {"train": "train.json", "val_1": "val_1.json", "val_2": "val_2.json"}
VGCL_FILES: dict[str, str] = {"val_1": "val_data.json", "val_2": "test_data.json"}
"""VGCL's four-field lists: ``val`` is ActivityNet val_1, ``test`` is val_2 (checked against the captions)."""
VGCL_NEW_FILES: dict[str, str] = {
    "train": "new_train_data.json",
    "val_1": "new_val_data.json",
    "val_2": "new_test_data.json",
}
"""VGCL's five-field lists, which name the speech file of every sentence."""

CLIP_TOLERANCE = 1e-6
"""Seconds; a clip smaller than this is floating-point noise in the files and is counted apart."""

_WAV_RE = re.compile(r"^(?P<yt>[A-Za-z0-9_-]+)_(?P<split>train|val_1|val_2)_(?P<k>[1-9][0-9]*)\.wav$")
_SKIP_FIX = "correct or delete the entry, or read with SkipPolicy(skip=True) to drop it and count it"


@dataclass(frozen=True)
class Moment:
    """One (video, sentence) pair with its span in seconds, already clipped into ``[0, duration]``.

    ``k`` is the 1-based index of the sentence within its video, the number in the speech file name; ``qid`` is
    ``"<video>#<k-1>"`` (``"v_abc#0"`` for the first sentence), the query id of the predictions file.
    ``sentence`` is stripped of surrounding white space (the files often start sentences with a space).
    """

    video: str
    duration: float
    start: float
    end: float
    sentence: str
    k: int
    split: str
    audio: str | None = None
    clipped: bool = False

    @property
    def qid(self) -> str:
        return f"{self.video}#{self.k - 1}"


@dataclass
class Annotations:
    """The moments of one file and what reading them did: how many spans were clipped, how many entries skipped.

    Behaves as a sequence of :class:`Moment` (``len``, iteration, indexing).
    """

    path: Path
    split: str
    moments: list[Moment] = field(default_factory=list)
    entries: int = 0
    clipped: int = 0
    clipped_beyond_tolerance: int = 0
    max_clip: float = 0.0
    skipped: int = 0
    left_out: int = 0  # valid moments a dataset leaves out (activitynet-speech --skip-missing: the wav is absent)

    def __len__(self) -> int:
        return len(self.moments)

    def __iter__(self) -> Iterator[Moment]:
        return iter(self.moments)

    def __getitem__(self, i: int) -> Moment:
        return self.moments[i]

    @property
    def videos(self) -> dict[str, float]:
        """Video id → duration, in first-appearance order, over the kept moments."""
        out: dict[str, float] = {}
        for m in self.moments:
            out.setdefault(m.video, m.duration)
        return out

    def summary(self) -> str:
        return (
            f"{self.path.name} ({self.split}): {len(self.videos)} videos, {len(self.moments)} moments of "
            f"{self.entries} entries; {self.clipped} spans clipped ({self.clipped_beyond_tolerance} by more than "
            f"{CLIP_TOLERANCE:g} s, at most {self.max_clip:.3g} s); {self.skipped} skipped"
            + (f"; {self.left_out} left out" if self.left_out else "")
        )


@dataclass(frozen=True)
class WavName:
    """A parsed speech file name ``<youtube id>_<split>_<k>.wav``."""

    youtube_id: str
    split: str
    k: int

    @property
    def video(self) -> str:
        return f"v_{self.youtube_id}"


def wav_name(video: str, split: str, k: int) -> str:
    """The ActivityNet Speech file of sentence ``k`` (1-based) of ``video`` (``"v_<youtube id>"``) in ``split``.

    The names drop the ``v_`` prefix that the annotation files use: ``wav_name("v_uqiMw7tQ1Cc", "val_1", 1)`` is
    ``"uqiMw7tQ1Cc_val_1_1.wav"``. The prefixed form is required so that an id is never stripped twice.
    """
    if not video.startswith("v_") or len(video) < 3:
        raise ValueError(f"video id {video!r} must have the annotation form 'v_<youtube id>'")
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if k < 1:
        raise ValueError(f"sentence index k={k} must be 1-based")
    return f"{video[2:]}_{split}_{k}.wav"


def parse_wav_name(name: str, where: str | None = None) -> WavName:
    """Split a speech file name into (youtube id, split, k); a name off the pattern is a :class:`DataError`.

    YouTube ids may contain ``_``, so the split is matched as one of :data:`SPLITS` just before the index.
    """
    m = _WAV_RE.match(name)
    if m is None:
        raise DataError(
            where or name,
            f"speech file name {name!r} does not follow '<youtube id>_<train|val_1|val_2>_<k>.wav'",
            "use the names of the ActivityNet Speech release (k is the 1-based sentence index in its video)",
        )
    return WavName(m["yt"], m["split"], int(m["k"]))


class _Repeated(dict):
    """A JSON object that keeps what ``json`` drops without a word: the earlier copies of a repeated key.

    ``repeated`` maps each key that appears more than once to the values of its earlier copies, in file order;
    the object itself holds the last copy, as a plain ``json.load`` would.
    """

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        last = {key: i for i, (key, _) in enumerate(pairs)}
        self.repeated: dict[str, list[Any]] = {}
        for i, (key, value) in enumerate(pairs):
            if i != last[key]:
                self.repeated.setdefault(key, []).append(value)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json``'s object hook: a plain dict, or a :class:`_Repeated` when a key repeats (rare, so no slower)."""
    obj = dict(pairs)
    return obj if len(obj) == len(pairs) else _Repeated(pairs)


def _repeated(obj: Any) -> dict[str, list[Any]]:
    """The earlier copies of the keys repeated in a JSON object read by :func:`_load_json` (empty: none)."""
    return obj.repeated if isinstance(obj, _Repeated) else {}


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(path, "no such file", "point to the annotation file (see shared/data/README.md)")
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f, object_pairs_hook=_object)
    except json.JSONDecodeError as e:
        raise DataError(f"{path} line {e.lineno}", f"not valid JSON ({e.msg})", "restore the file") from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text ({e.reason})", "restore the file") from None


def _sentence_count(entry: Any) -> int:
    """How many sentences an entry of a Captions file holds (1 when it is too broken to tell)."""
    sentences = entry.get("sentences") if isinstance(entry, dict) else None
    return max(len(sentences), 1) if isinstance(sentences, list) else 1


def _number(x: Any) -> float | None:
    """``x`` as a float when it is a JSON number (not a bool), else None."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")


class _Reader:
    """Shared span and sentence validation; accumulates the moments and counts into one :class:`Annotations`."""

    def __init__(self, path: Path, split: str, policy: SkipPolicy | None) -> None:
        self.out = Annotations(path=path, split=split)
        self.policy = policy or SkipPolicy()

    def fail(self, where: str, problem: str, kind: str, fix: str = _SKIP_FIX, entries: int = 1) -> None:
        """Raise, or (skipping) count ``entries`` dropped entries under ``kind``."""
        self.policy.handle(DataError(where, problem, fix), kind)
        self.out.skipped += entries

    def duration(self, where: str, raw: Any, entries: int) -> float | None:
        """The duration, or None after failing (dropping the ``entries`` that depend on it)."""
        d = _number(raw)
        if d is None or not math.isfinite(d) or d <= 0:
            self.fail(where, f"duration {raw!r} is not a positive finite number", "bad-duration", entries=entries)
            return None
        return d

    def add(self, where: str, video: str, duration: float, span: Any, sentence: Any, k: int, audio: str | None) -> None:
        """Validate one entry and append its moment; the span rule of the module docstring lives here."""
        if not (isinstance(span, list | tuple) and len(span) == 2):
            self.fail(where, f"span {span!r} is not a pair [start, end]", "bad-span")
            return
        s, e = _number(span[0]), _number(span[1])
        if s is None or e is None or not (math.isfinite(s) and math.isfinite(e)):
            self.fail(where, f"span {list(span)!r} holds a non-number, NaN or infinity", "bad-span")
            return
        if s > e:
            self.fail(where, f"span [{s:g}, {e:g}] is reversed (start > end)", "reversed-span")
            return
        cs, ce = min(max(s, 0.0), duration), min(max(e, 0.0), duration)
        if ce <= cs:
            self.fail(where, f"span [{s:g}, {e:g}] is empty after clipping into [0, {duration:g}]", "empty-span")
            return
        if not isinstance(sentence, str) or not sentence.strip():
            self.fail(where, f"sentence {sentence!r} is empty", "empty-sentence")
            return
        moved = max(abs(cs - s), abs(ce - e))
        if moved > 0:
            self.out.clipped += 1
            self.out.max_clip = max(self.out.max_clip, moved)
            if moved > CLIP_TOLERANCE:
                self.out.clipped_beyond_tolerance += 1
        self.out.moments.append(
            Moment(video, duration, cs, ce, sentence.strip(), k, self.out.split, audio, clipped=moved > 0)
        )


def read_captions(path: str | Path, split: str, policy: SkipPolicy | None = None) -> Annotations:
    """Read an ActivityNet Captions JSON file (also the ActivityNet-CD files) into moments.

    ``split`` names the split the file belongs to (one of :data:`SPLITS`; ActivityNet-CD files take the split
    whose videos they hold, e.g. ``"train"`` for ``anet_val.json``); it is stored on every moment and is what
    :func:`wav_name` needs. Moments are in file order: videos as listed, sentences as listed, ``k`` counting from 1
    within a video (skipped sentences keep their number, so ``k`` always matches the speech file).
    ``entries`` counts sentences (a video entry too broken to count its sentences counts as one).
    """
    _check_split(split)
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict):
        raise DataError(
            path,
            f"top level is a JSON {type(data).__name__}, not an object of videos",
            "for VGCL's flattened lists use read_vgcl_list",
        )
    r = _Reader(path, split, policy)
    for video, entry in data.items():
        where = f'{path} ["{video}"]'
        if dropped := _repeated(data).get(video):
            n = sum(_sentence_count(copy) for copy in dropped)
            r.out.entries += n
            r.fail(
                where,
                f"video {video} is listed {len(dropped) + 1} times; JSON keeps only the last copy and drops the "
                f"{n} sentences of the {'earlier one' if len(dropped) == 1 else 'earlier ones'} without a word",
                "duplicate-key",
                "merge the copies into one entry or delete the extra ones (skipping reads the last copy and counts "
                "the earlier ones' sentences as skipped)",
                entries=n,
            )
        if not isinstance(entry, dict) or not {"duration", "timestamps", "sentences"} <= entry.keys():
            r.out.entries += 1
            r.fail(where, "entry lacks one of 'duration', 'timestamps', 'sentences'", "bad-entry")
            continue
        if _repeated(entry):
            n = _sentence_count(entry)
            r.out.entries += n
            keys = ", ".join(repr(k) for k in _repeated(entry))
            r.fail(
                where,
                f"entry lists {keys} more than once (JSON keeps the last copy silently)",
                "duplicate-key",
                entries=n,
            )
            continue
        stamps, sentences = entry["timestamps"], entry["sentences"]
        if not isinstance(stamps, list) or not isinstance(sentences, list) or len(stamps) != len(sentences):
            n_t = len(stamps) if isinstance(stamps, list) else "?"
            n_s = len(sentences) if isinstance(sentences, list) else "?"
            n = max(len(stamps) if isinstance(stamps, list) else 1, 1)
            r.out.entries += n
            r.fail(where, f"{n_t} timestamps but {n_s} sentences", "count-mismatch", entries=n)
            continue
        r.out.entries += len(stamps)
        duration = r.duration(f"{where}.duration", entry["duration"], entries=len(stamps))
        if duration is None:
            continue
        for i, (span, sentence) in enumerate(zip(stamps, sentences, strict=True)):
            r.add(f"{where}.timestamps[{i}]", video, duration, span, sentence, i + 1, None)
    return r.out


def read_vgcl_list(path: str | Path, split: str, policy: SkipPolicy | None = None) -> Annotations:
    """Read one of VGCL's flattened lists (``val_data.json`` or ``new_val_data.json`` style) into moments.

    ``k`` is the position of the entry among its video's entries in file order (1-based). In the five-field
    ``new_*`` lists the speech file name must equal ``wav_name(video, split, k)``: a name for another video, split
    or sentence index is a :class:`DataError` (kind ``bad-wav-name``), since it would pair a moment with the
    wrong speech. All entries of one file must have the same number of fields (that of the first).
    """
    _check_split(split)
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, list):
        raise DataError(
            path,
            f"top level is a JSON {type(data).__name__}, not a list of entries",
            "for ActivityNet Captions JSON use read_captions",
        )
    r = _Reader(path, split, policy)
    width = len(data[0]) if data and isinstance(data[0], list) else None
    position: dict[str, int] = {}
    for i, item in enumerate(data):
        where = f"{path} [{i}]"
        r.out.entries += 1
        if not isinstance(item, list) or len(item) not in (4, 5) or len(item) != width:
            r.fail(where, f"entry is not a list of {width or '4 or 5'} fields", "bad-entry")
            continue
        video = item[0]
        if not isinstance(video, str) or not video:
            r.fail(where, f"video id {video!r} is not a non-empty string", "bad-entry")
            continue
        position[video] = k = position.get(video, 0) + 1
        duration = r.duration(where, item[1], entries=1)
        if duration is None:
            continue
        audio = None
        if width == 5:
            audio = item[4]
            try:
                expected = wav_name(video, split, k)
            except ValueError as e:
                r.fail(where, str(e), "bad-entry")
                continue
            if audio != expected:
                r.fail(
                    where,
                    f"speech file {audio!r} should be {expected!r} (sentence {k} of {video} in {split})",
                    "bad-wav-name",
                    "regenerate the list from the annotations; k is the 1-based sentence index in its video",
                )
                continue
        r.add(where, video, duration, item[2], item[3], k, audio)
    return r.out


def read_annotations(path: str | Path, split: str, policy: SkipPolicy | None = None) -> Annotations:
    """Read either format, chosen by the JSON's top level: an object is Captions, a list is a VGCL list."""
    path = Path(path)
    head = b""
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(4096).lstrip()
    if head.startswith(b"["):
        return read_vgcl_list(path, split, policy)
    return read_captions(path, split, policy)
