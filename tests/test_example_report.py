"""The committed example report (``reports/examples/synth-small/``, made by ``bench report`` from synth/small runs):
whole, honest about what it shows, naming no machine's folders, and its LaTeX compiles where pdflatex is present."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from test_latex import PDFLATEX, _compile

from bench import tables
from methods import registry

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


# -- scripts/example_report.py: the plan that regenerates it -------------------------------------------------------

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "example_report.py"
_spec = importlib.util.spec_from_file_location("example_report", _SCRIPT)
er = importlib.util.module_from_spec(_spec)
sys.modules["example_report"] = er  # its dataclasses look their module up there
_spec.loader.exec_module(er)


def _made(steps) -> list[tuple[str, str, int, str]]:
    return [m for step in steps for m in sorted(step.makes)]


def test_the_plan_runs_every_row_series_and_sweep_once_then_the_report():
    steps = er.plan("small", [0, 1, 2], [0], "OUT", 1, have=set())
    made = _made(steps)
    assert len(made) == len(set(made))  # the blind rows of Tables 1-11 once, SIL once for its many rows
    synth = [(m, s, w) for d, m, s, w in made if d == "synth"]
    trained = {(m, s) for m, s, w in synth if w == "-"}
    for number in tables.TABLE_NUMBERS:
        for row in tables.load_table(number).rows:
            for method in filter(None, (row.method, row.finetune)):
                assert {(method, s) for s in (0, 1, 2)} <= trained, (number, method)
    assert {("prior", 0), ("whole-video", 0), ("oracle-concept", 0)} <= trained and ("prior", 1) not in trained
    for method in ("sil-freq-only", "sil-time-only", "base+ldis", "base+lseq", "base+lseq+lword"):  # figure series
        assert (method, 2) in trained
    assert ("prior-miou", 0) in trained  # a claim's blind variant, in no table
    sweeps = sorted(w for m, s, w in synth if w not in ("-", "latency", "latency-paper-sizes", "robustness"))
    assert sweeps == sorted(["asp.mask_ratio=0.15", "asp.mask_ratio=0.3", "asp.mask_ratio=0.7", "T=3", "T=12",
                             "T=24"]), sweeps  # the default values (0.5, 6) are SIL's own runs  # fmt: skip
    robust = {(m, s) for m, s, w in synth if w == "robustness"}
    assert robust == {(m, s) for m in ("sil", "asr-rtbpn", "sil-freq-only", "sil-time-only") for s in (0, 1, 2)}
    assert {(m, 0, "latency-paper-sizes") for m in ("sil", "asr-base", "asr-rtbpn")} <= set(synth)
    for real in ("activitynet-captions", "activitynet-cd"):  # the blind section's real benchmarks, blind rows only
        assert {(m, s) for d, m, s, w in made if d == real} == {(m, s) for m, s in trained if registry.get(m).blind}
    assert steps[-1].argv == ["report", "--out", "OUT", "--profile", "small"]
    order = [step.why for step in steps]
    assert order.index("Figure 4 (robustness)") > max(i for i, w in enumerate(order) if w == "Figure 4")  # sources


def test_the_plan_leaves_out_what_the_store_holds(tiny):
    """Runs made by ``bench run`` (a row and a sweep's point) drop out of the plan by their logged params."""
    from bench import cli

    assert cli.main(["run", "--method", "prior", "--profile", "tiny", "--seeds", "0"]) == 0
    assert cli.main(["run", "--method", "sbase", "--profile", "tiny", "--seeds", "0,1"]) == 0
    assert cli.main(["run", "--method", "sil", "--profile", "tiny", "--seeds", "0", "--set", "T=3"]) == 0
    made = {(m, s, w) for d, m, s, w in _made(er.plan("tiny", [0, 1], [0], "OUT", 1)) if d == "synth"}
    assert ("prior", 0, "-") not in made and ("sbase", 0, "-") not in made and ("sbase", 1, "-") not in made
    assert ("sil", 0, "T=3") not in made and ("sil", 0, "T=24") in made and ("sil", 0, "-") in made
    assert ("sil", 0, "T=12") not in made  # tiny's own T: the point is SIL's own run
    everything = set(_made(er.plan("tiny", [0, 1], [0], "OUT", 1, have=set())))
    assert [s.why for s in er.plan("tiny", [0, 1], [0], "OUT", 1, have=everything)] == ["the report"]
