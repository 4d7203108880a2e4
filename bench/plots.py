"""One way to save a figure of the report: PNG and PDF side by side, the caption drawn under the plot and stored in the
PDF's metadata, so a figure copied out of the report still says what it shows (dataset, profile, seeds, commit)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

CAPTION_FONT = 7
CHARS_PER_INCH = 17  # of 7-point text: where the caption wraps
LINE_INCHES = 0.13


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (the report runs without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, png: Path, title: str, caption: str, dpi: int = 120) -> list[Path]:
    """Write ``fig`` as ``png`` and the PDF beside it, ``caption`` wrapped under the axes; returns both paths.

    The figure grows by the caption's height, so the plot keeps its size whatever the caption's length.
    """
    width, height = fig.get_size_inches()
    lines = textwrap.wrap(caption, width=int(width * CHARS_PER_INCH)) or [""]
    extra = LINE_INCHES * len(lines) + 0.15
    fig.set_size_inches(width, height + extra)
    fig.tight_layout(rect=(0, extra / (height + extra), 1, 1))
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=CAPTION_FONT, va="bottom", ha="left")
    png.parent.mkdir(parents=True, exist_ok=True)
    pdf = png.with_suffix(".pdf")
    fig.savefig(png, dpi=dpi, metadata={"Title": title, "Description": caption})
    fig.savefig(pdf, metadata={"Title": title, "Subject": caption})
    pyplot().close(fig)
    return [png, pdf]
