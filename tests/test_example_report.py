"""The committed example report (``reports/examples/synth-small/``, made by ``bench report`` from synth/small runs):
whole, honest about what it shows, naming no machine's folders, and its LaTeX compiles where pdflatex is present."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_latex import PDFLATEX, _compile

from bench import tables

EXAMPLE = Path(__file__).resolve().parents[1] / "reports" / "examples" / "synth-small"


def test_the_example_report_is_whole_and_says_what_it_shows():
    index = (EXAMPLE / "index.md").read_text()
    assert "dataset **synth**, profile **small**, test split **val_2**" in index
    assert "not a reproduction of the paper" in index
    commit = re.search(r"source commit ([0-9a-f]{12})", index)
    assert commit and "(uncommitted changes)" not in index  # made from a committed tree
    for number in tables.TABLE_NUMBERS:
        assert (EXAMPLE / f"table{number:02d}.md").is_file() and (EXAMPLE / f"table{number:02d}.tex").is_file()
        assert f"(table{number:02d}.md)" in index
    for name in ("claims.md", "blind.md", "figures.md"):
        assert (EXAMPLE / name).is_file() and f"({name})" in index
    table1 = (EXAMPLE / "table01.md").read_text()
    assert table1.count("| ours") >= 10 and "synth" in table1  # filled from runs, captioned with its dataset


def test_the_example_report_names_no_folder_of_the_machine_it_was_made_on():
    for path in EXAMPLE.iterdir():
        if path.suffix in (".md", ".tex", ".csv"):
            text = path.read_text()
            assert not re.search(r"(/work/|/tmp/|/home/|/root/)", text), path.name


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex is not installed (texlive-latex-base, -recommended)")
def test_the_example_reports_latex_compiles(tmp_path):
    for tex in sorted(EXAMPLE.glob("table*.tex")):
        code, log = _compile(tex, tmp_path)
        assert code == 0, f"{tex.name} does not compile:\n{log[-2000:]}"
