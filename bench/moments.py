"""Moment-length statistics (span / duration) of the two benchmarks' annotation files, and their histogram.

A blind span does well exactly when moments are long and alike; this module shows how alike the synthetic
benchmark's moment lengths are to the real ActivityNet Captions splits. It reads annotation files only, through the
same reader and skip rule as the blind methods (``read_captions`` with ``SkipPolicy(skip=True)``), so the counts here
are the moments those methods score. It never builds a dataset: synth is shown only when the profile's build is
already cached (``bench data synth --profile P`` makes it), and the real splits only when their files are there.

The figure is drawn with matplotlib's Agg backend (no display needed); the bin counts behind it are written beside it
as CSV, so every bar can be checked against the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.data.activitynet import SPLITS, read_captions
from bench.data.errors import DataError, SkipPolicy

BINS = 20
"""Equal-width bins over [0, 1]; a moment covering the whole video (length 1) falls into the last bin."""
SYNTH, REAL = "synth", "activitynet-captions"


@dataclass(frozen=True)
class Series:
    """The moment lengths (fractions of the duration) of one split of one benchmark, and where they come from."""

    benchmark: str  # "synth/<profile>" or "activitynet-captions"
    split: str
    path: Path
    lengths: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.benchmark} {self.split}"


def moment_lengths(path: Path, split: str) -> np.ndarray:
    """span / duration of every moment the blind methods score in ``path`` (bad entries dropped, as they drop them)."""
    ann = read_captions(path, split, SkipPolicy(skip=True))
    return np.array([(m.end - m.start) / m.duration for m in ann], dtype=np.float64)


def synth_source(profile: str) -> tuple[Any | None, str]:
    """The cached synth build of ``profile`` (never built here), or None and the reason it is absent."""
    from bench.data import synth

    root = synth.root_for(profile)
    meta = root / "meta.json"
    if not meta.is_file():
        return None, f"synth/{profile} is not built under {root.parent} (`bench data synth --profile {profile}`)"
    return synth.SynthDataset.from_root(root, profile), ""


def real_source(profile: str) -> tuple[Any | None, str]:
    """The opened real annotations, or None and the opener's one-line error (naming the file and the fix)."""
    from bench.data.captions import CaptionsDataset

    try:
        return CaptionsDataset.open(profile), ""
    except DataError as err:
        return None, str(err)


def collect(profile: str) -> tuple[list[Series], list[str]]:
    """Every split of both benchmarks that is present, and one line per benchmark that is not."""
    series: list[Series] = []
    absent: list[str] = []
    for benchmark, (source, reason) in (
        (f"{SYNTH}/{profile}", synth_source(profile)),
        (REAL, real_source(profile)),
    ):
        if source is None:
            absent.append(reason)
            continue
        for split in SPLITS:
            path = source.annotation_path(split)
            series.append(Series(benchmark, split, path, moment_lengths(path, split)))
    return series, absent


def bin_edges(bins: int = BINS) -> np.ndarray:
    """``bins + 1`` equal-width edges over [0, 1], rounded so that the CSV shows 0.15, not 0.15000000000000002."""
    return np.linspace(0.0, 1.0, bins + 1).round(9)


def histogram_counts(series: list[Series], bins: int = BINS) -> pd.DataFrame:
    """One row per bin (``bin_start``, ``bin_end``) and one column of moment counts per series (its label)."""
    edges = bin_edges(bins)
    table = pd.DataFrame({"bin_start": edges[:-1], "bin_end": edges[1:]})
    for s in series:
        table[s.label] = np.histogram(s.lengths, bins=edges)[0]
    return table


def summary(series: list[Series]) -> pd.DataFrame:
    """Per series: moments, mean and median length, and the share of moments longer than half the video."""
    return pd.DataFrame(
        [
            {
                "benchmark": s.benchmark,
                "split": s.split,
                "moments": len(s.lengths),
                "mean": float(s.lengths.mean()),
                "median": float(np.median(s.lengths)),
                "share > 0.5": float((s.lengths > 0.5).mean()),
            }
            for s in series
        ]
    )


def plot_histogram(series: list[Series], path: Path, bins: int = BINS, caption: str = "") -> pd.DataFrame:
    """Write the figure (PNG and PDF, ``caption`` under it: :func:`bench.plots.save_figure`) and its counts
    (``<path>.csv``); return the counts.

    One panel per split, each overlaying the benchmarks as the share of that split's moments per bin (the splits
    differ in size, so counts would hide the shapes).
    """
    from bench.plots import pyplot, save_figure

    plt = pyplot()
    counts = histogram_counts(series, bins)
    edges = bin_edges(bins)
    benchmarks = list(dict.fromkeys(s.benchmark for s in series))
    colours = {b: f"C{i}" for i, b in enumerate(benchmarks)}
    fig, axes = plt.subplots(1, len(SPLITS), figsize=(4.2 * len(SPLITS), 3.4), sharey=True)
    for ax, split in zip(axes, SPLITS, strict=True):
        for s in (s for s in series if s.split == split):
            share = counts[s.label].to_numpy() / max(len(s.lengths), 1)
            filled = s.benchmark.startswith(SYNTH)
            ax.stairs(
                share,
                edges,
                fill=filled,
                alpha=0.35 if filled else 1.0,
                color=colours[s.benchmark],
                linewidth=1.6,
                label=f"{s.benchmark} (n={len(s.lengths):,})",
            )
        ax.set_title(split)
        ax.set_xlabel("moment length / video duration")
        ax.set_xlim(0, 1)
        if any(s.split == split for s in series):
            ax.legend(fontsize=7)
    axes[0].set_ylabel("share of the split's moments")
    title = "Moment length: synthetic benchmark against ActivityNet Captions"
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, title, caption or title)
    counts.to_csv(path.with_suffix(".csv"), index=False)
    return counts
