"""ESC-50 environmental sounds, the noise of the robustness experiments (Table 7, App. B.2).

Layout of the public release (github.com/karolpiczak/ESC-50)::

    <root>/audio/<fold>-<src_file>-<take>-<target>.wav     2,000 five-second clips, 44.1 kHz mono
    <root>/meta/esc50.csv                                  filename,fold,target,category,esc10,src_file,take

The CSV is the index: every row must name an existing wav, a fold in 1..5, a class target in 0..49 and a
category. WAV files that no row lists are ignored (they are not part of ESC-50).

Unlike speech, noise is resampled on load (:func:`load_noise`): ESC-50 ships at 44.1 kHz and is mixed into
16 kHz speech, so converting it to the speech rate is the intended use, not a hidden fix of a bad corpus.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.data.augment import FileNoiseBank
from bench.data.errors import DataError, SkipPolicy
from bench.data.librispeech import SAMPLE_RATE, load_audio

COLUMNS: tuple[str, ...] = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
META = Path("meta") / "esc50.csv"
AUDIO = Path("audio")


@dataclass(frozen=True)
class NoiseClip:
    """One ESC-50 clip: its wav, class name (``category``), cross-validation fold 1..5 and class index 0..49."""

    path: Path
    category: str
    fold: int
    target: int = -1
    esc10: bool = False


def read_esc50(root: str | Path, policy: SkipPolicy | None = None) -> list[NoiseClip]:
    """The clips listed in ``meta/esc50.csv``, in CSV order, each checked to exist.

    A bad row (missing wav ``missing-file``, non-integer or out-of-range fold/target or empty category
    ``bad-row``) raises, or under ``policy`` is skipped and counted.
    """
    policy = policy or SkipPolicy()
    root = Path(root)
    meta = root / META
    if not meta.is_file():
        raise DataError(meta, "no such file", "unpack the ESC-50 release (github.com/karolpiczak/ESC-50) here")
    with meta.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("filename", "fold", "target", "category") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                meta,
                f"header lacks the column(s) {', '.join(missing)} (has: {', '.join(reader.fieldnames or [])})",
                f"restore the file; ESC-50's header is {','.join(COLUMNS)}",
            )
        out: list[NoiseClip] = []
        for row in reader:
            where = f"{meta} line {reader.line_num}"
            try:
                fold, target = int(row["fold"]), int(row["target"])
            except (TypeError, ValueError):
                policy.handle(DataError(where, "fold or target is not an integer", "restore the row"), "bad-row")
                continue
            category = (row["category"] or "").strip()
            if not 1 <= fold <= 5 or not 0 <= target <= 49 or not category:
                policy.handle(
                    DataError(
                        where, f"fold {fold} / target {target} / category {category!r} out of range", "restore the row"
                    ),
                    "bad-row",
                )
                continue
            wav = root / AUDIO / (row["filename"] or "")
            if not row["filename"] or not wav.is_file():
                policy.handle(
                    DataError(wav, f"listed in {META} but absent", "unpack the ESC-50 audio/ folder again"),
                    "missing-file",
                )
                continue
            esc10 = str(row.get("esc10", "")).strip().lower() == "true"
            out.append(NoiseClip(wav, category, fold, target, esc10))
    if not out and policy.skipped.total() == 0:
        raise DataError(meta, "lists no clips", "restore the file")
    return out


def load_noise(clip: NoiseClip | str | Path, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """A clip as float32 mono ``[samples]`` at ``sample_rate`` (resampled from ESC-50's 44.1 kHz)."""
    path = clip.path if isinstance(clip, NoiseClip) else Path(clip)
    return load_audio(path, sample_rate=sample_rate, resample=True)


def bank(clips: list[NoiseClip]) -> FileNoiseBank:
    """The clips (:func:`read_esc50`'s, in its order) as a noise bank that reads each clip when it is drawn."""
    return FileNoiseBank([c.path for c in clips], [c.category for c in clips], load_noise)
