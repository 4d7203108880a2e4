"""LibriSpeech (ASP pre-training) utterances, and the one audio loader every reader of speech or noise uses.

Layout, as distributed on openslr.org after unpacking::

    <root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt      lines "<speaker>-<chapter>-<utt> TRANSCRIPT"

Every transcript line must have its FLAC and every FLAC its transcript line: a mismatch means a partial download
or unpacking, and training on the rest would silently change the corpus. Other files beside them (SIL writes a
``.npy`` mel next to each FLAC) are ignored.

:func:`load_audio` reads 16 kHz mono float32 with soundfile. A file at another rate is an error, not silently
resampled: the speech pipeline (SIL's ``[::4]`` decimation, the log-mel frames) assumes 16 kHz, and resampling on
every read would hide a wrongly prepared corpus. Only noise (ESC-50) is resampled, on request (``resample=True``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from bench.data.errors import DataError, SkipPolicy

SAMPLE_RATE = 16_000
_ID_RE = re.compile(r"^(\d+)-(\d+)-(\d+)$")


@dataclass(frozen=True)
class Utterance:
    """One LibriSpeech utterance: id ``<speaker>-<chapter>-<utt>``, its FLAC, its transcript (upper case as shipped)."""

    id: str
    path: Path
    text: str
    speaker: str
    chapter: str = ""
    subset: str = ""


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, resample: bool = False) -> torch.Tensor:
    """Read an audio file as a float32 mono ``[samples]`` tensor at ``sample_rate``.

    Several channels are averaged. A file at another rate is a :class:`DataError` unless ``resample`` is set
    (meant for noise only; torchaudio's band-limited sinc resampler). Unreadable, empty or non-finite audio is a
    :class:`DataError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such audio file", "restore the file from the corpus")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise DataError(path, f"unreadable audio ({e})", "restore the file; it is corrupt or not audio") from None
    if data.shape[0] == 0:
        raise DataError(path, "audio has no samples", "restore the file")
    if rate != sample_rate and not resample:
        raise DataError(
            path,
            f"sample rate {rate} Hz, expected {sample_rate} Hz",
            f"resample the corpus to {sample_rate // 1000} kHz once (e.g. sox in.wav -r {sample_rate} out.wav)",
        )
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1, dtype=np.float32)))
    if not torch.isfinite(wave).all():
        raise DataError(path, "audio holds NaN or infinite samples", "restore the file")
    if rate != sample_rate:
        import torchaudio.functional as taf  # deferred: torchaudio is slow to import and only noise needs it

        wave = taf.resample(wave, rate, sample_rate)
    return wave


def _subset_dirs(root: Path, subsets: list[str] | tuple[str, ...] | str) -> list[Path]:
    if isinstance(subsets, str):
        subsets = [subsets]
    if not root.is_dir():
        raise DataError(root, "no such directory", "point to the unpacked LibriSpeech directory (holding train-*)")
    out = []
    for name in subsets:
        d = root / name
        if not d.is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise DataError(
                d,
                f"subset {name!r} is absent (present: {', '.join(present) or 'none'})",
                f"download and unpack {name}.tar.gz from openslr.org/12 into {root}",
            )
        out.append(d)
    return out


def read_librispeech(
    root: str | Path, subsets: list[str] | tuple[str, ...] | str, policy: SkipPolicy | None = None
) -> list[Utterance]:
    """Every utterance of ``subsets`` under ``root``, sorted by id, each checked to have FLAC and transcript.

    Problems per utterance (a transcript line without FLAC, ``missing-flac``; a FLAC without a line,
    ``missing-transcript``; an empty transcript, ``empty-transcript``; a malformed line, ``bad-transcript-line``;
    a chapter without its ``.trans.txt``, ``missing-transcript``; a character outside ASCII, which LibriSpeech's
    upper-case transcripts never hold and the ASR's targets would turn into a space, ``non-ascii-transcript``)
    raise, or are skipped and counted under ``policy``. The audio itself is not opened here (see :func:`load_audio`).
    """
    policy = policy or SkipPolicy()
    root = Path(root)
    out: list[Utterance] = []
    for subset_dir in _subset_dirs(root, subsets):
        for chapter_dir in sorted(p for p in subset_dir.glob("*/*") if p.is_dir()):
            out.extend(_read_chapter(chapter_dir, subset_dir.name, policy))
    return sorted(out, key=lambda u: tuple(int(x) for x in u.id.split("-")))


def _read_chapter(chapter_dir: Path, subset: str, policy: SkipPolicy) -> list[Utterance]:
    speaker, chapter = chapter_dir.parent.name, chapter_dir.name
    flacs = {p.stem: p for p in chapter_dir.glob("*.flac")}
    trans = chapter_dir / f"{speaker}-{chapter}.trans.txt"
    texts: dict[str, str] = {}
    if not trans.is_file():
        if flacs:
            policy.handle(
                DataError(
                    trans,
                    f"no transcript file for the {len(flacs)} FLAC files of this chapter",
                    "unpack the chapter again from the LibriSpeech archive",
                ),
                "missing-transcript",
            )
        return []
    for lineno, raw in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
        where = f"{trans} line {lineno}"
        line = raw.strip()
        if not line:
            continue
        uid, _, text = line.partition(" ")
        m = _ID_RE.match(uid)
        if m is None or m[1] != speaker or m[2] != chapter:
            policy.handle(
                DataError(
                    where,
                    f"{uid!r} is not an id <speaker>-<chapter>-<utt> of {speaker}-{chapter}",
                    "restore the transcript file; lines are 'ID TRANSCRIPT'",
                ),
                "bad-transcript-line",
            )
            continue
        if uid in texts:
            policy.handle(
                DataError(where, f"{uid} is listed twice", "remove the duplicate line"), "bad-transcript-line"
            )
            continue
        if not text.strip():
            policy.handle(DataError(where, f"{uid} has an empty transcript", "restore the line"), "empty-transcript")
            texts[uid] = ""
            continue
        if odd := sorted({c for c in text if not c.isascii()}):
            named = ", ".join(f"{c!r} U+{ord(c):04X}" for c in odd)
            policy.handle(
                DataError(
                    where,
                    f"{uid}'s transcript holds non-ASCII characters ({named}), which the ASR's character targets "
                    "turn into spaces, splitting the word",
                    "write them in ASCII as LibriSpeech does (e.g. \u2019 as ', \u00c9 as E)",
                ),
                "non-ascii-transcript",
            )
            texts[uid] = ""
            continue
        texts[uid] = text.strip()
    out = []
    for uid, text in texts.items():
        if uid not in flacs:
            policy.handle(
                DataError(
                    chapter_dir / f"{uid}.flac",
                    f"{uid} is in {trans.name} but its FLAC is missing",
                    "unpack the chapter again from the LibriSpeech archive",
                ),
                "missing-flac",
            )
            continue
        if text:
            out.append(Utterance(uid, flacs[uid], text, speaker, chapter, subset))
    for uid in sorted(flacs.keys() - texts.keys()):
        policy.handle(
            DataError(
                flacs[uid],
                f"FLAC {uid} has no line in {trans.name}",
                "restore the transcript file, or delete the stray FLAC",
            ),
            "missing-transcript",
        )
    return out
