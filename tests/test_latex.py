"""The LaTeX tables are paste-ready: each compiles in a plain article with the packages its first line names, and
fits the page (pdflatex reports no overfull box and no float too large), also with every cell filled by a two-seed
mean ± std.

The compile test needs ``pdflatex`` (Debian: ``texlive-latex-base texlive-latex-recommended``) and skips without it;
the layout tests below it run everywhere.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import report, tables, tracking

PDFLATEX = shutil.which("pdflatex")


def _fill_store() -> None:
    """Two seeds of every method named by a table (and the blind and reference rows), every metric of the tables
    logged with a spread, so that every cell is as wide as it gets: ``14.84 ± 3.54``."""
    methods = {r.method for t in tables.load_all() for r in t.rows if r.method}
    methods |= set(tables.BLIND_METHODS) | set(tables.REFERENCE_METHODS)
    for method in sorted(methods):
        for seed in (0, 1):
            params = {"method": method, "dataset": "synth", "profile": "small", "seed": seed, "commit": f"{seed:040d}",
                      "dirty": "true", "dataset_hash": "0123456789ab"}  # fmt: skip  # a caption as long as real ones
            with tracking.start_run(f"{method}/synth/small/seed{seed}", params) as log:
                values = {m: 0.1234 + 0.05 * seed for m in tables.PERCENT_METRICS}
                values |= {"latency_s": 0.0123 + 0.001 * seed, "speedup": 2.04 - 0.1 * seed}
                values |= {"latency_paper_s": 0.0456 + 0.001 * seed, "speedup_paper": 1.5 - 0.1 * seed}
                log.log_metrics(values, prefix="test/")


@pytest.fixture
def filled_report(home, tmp_path) -> Path:
    _fill_store()
    out = tmp_path / "report"
    report.write_report(out, "synth", "small")
    return out


def _compile(tex: Path, workdir: Path) -> tuple[int, str]:
    first = tex.read_text().splitlines()[0]
    packages = re.fullmatch(r"% needs \\usepackage\{([\w,]+)\}", first)
    assert packages, f"{tex.name}: the first line must name the packages, got {first!r}"
    wrapper = workdir / f"wrap_{tex.stem}.tex"
    wrapper.write_text(
        "\\documentclass{article}\n"
        f"\\usepackage{{{packages.group(1)}}}\n"
        "\\begin{document}\n"
        f"\\input{{{tex}}}\n"
        "\\end{document}\n"
    )
    done = subprocess.run(
        [PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", wrapper.name],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, (workdir / f"wrap_{tex.stem}.log").read_text(errors="replace")


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex is not installed (texlive-latex-base, -recommended)")
def test_every_generated_table_compiles_and_fits_the_page(filled_report, tmp_path):
    """Wider than the text width: 'Overfull \\hbox'; taller than the page: 'Float too large'."""
    texs = sorted(filled_report.glob("table*.tex"))
    assert len(texs) == len(tables.TABLE_NUMBERS)
    for tex in texs:
        code, log = _compile(tex, tmp_path)
        assert code == 0, f"{tex.name} does not compile:\n{log[-2000:]}"
        overfull = re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)
        assert overfull == [], f"{tex.name}: wider than the text width by {overfull} pt"
        too_tall = re.findall(r"Float too large for page by ([\d.]+)pt", log)
        assert too_tall == [], f"{tex.name}: a float taller than the page by {too_tall} pt"
        assert "Undefined control sequence" not in log and "Missing character" not in log


def test_latex_layout_one_line_per_method_then_the_papers(filled_report):
    latex = (filled_report / "table03.tex").read_text()
    assert latex.splitlines()[0] == r"% needs \usepackage{booktabs,amssymb}"
    assert r"\checkmark" in latex and "L\\_sem" not in latex and r"$\mathcal{L}_{\mathrm{sem}}$" in latex
    lines = latex.splitlines()
    # the checkmarks come once, in the first tabular (with the first metric columns that fit beside them)
    lsem = r"$\mathcal{L}_{\mathrm{sem}}$"
    described = [li for li in lines if li.startswith(lsem + r" & $\times$ & $\times$ & \checkmark")]
    assert len(described) == 1
    ours = next(i for i, li in enumerate(lines) if li.startswith(r"$\mathcal{L}_{\mathrm{sem}}$ & ours"))
    assert "& ours (n=2) &" in lines[ours] and "14.84 $\\pm$ 3.54" in lines[ours]  # 12.34 and 17.34: mean, sample std
    first = lines.index(described[0])
    assert "& ours (n=2) &" in described[0] and r"\textit{paper} & \textit{73.11}" in lines[first + 1]  # R@1 IoU=0.1
    assert r"& \textit{paper} & \textit{46.39}" in lines[ours + 1]  # Table 3's L_sem row, R@1 IoU=0.3 in part 2
    assert "$\\Delta$ &" not in latex  # the compact layout has no Δ line; the caption says the Markdown has it
    assert "the Markdown table adds $\\Delta$ = ours $-$ paper" in latex
    assert "Table 3: Table 3" not in latex and r"\caption{Ablation Results" in latex
    assert "fractions (MLflow's test/R1\\_IoU0.5 = 0.3026 is 30.26 here)" in latex
    # the columns that do not fit one tabular go into the next, each repeating the labels
    assert latex.count(r"\begin{tabular}{") >= 2 and latex.count(r"\toprule") == latex.count(r"\begin{tabular}{")


def test_latex_escape_math_and_minus():
    assert tables.latex_escape("WSLLN+L_sem") == r"WSLLN+$\mathcal{L}_{\mathrm{sem}}$"
    dis = tables.latex_escape("L_dis-s + L_dis-w")
    assert dis == r"$\mathcal{L}_{\mathrm{dis-s}}$ + $\mathcal{L}_{\mathrm{dis-w}}$"
    assert tables.latex_escape("[-2, 2]") == "[$-$2, 2]" and tables.latex_escape("-0.25") == "$-$0.25"
    assert tables.latex_escape("Fixed-span prior") == "Fixed-span prior"  # a hyphen in a word stays a hyphen
    assert tables.latex_escape("a_b & 5%") == r"a\_b \& 5\%" and tables.latex_escape("−1") == "$-$1"
    assert tables.latex_escape("–") == "--" and tables.latex_escape("|Δ| < 1") == r"$|$$\Delta$$|$ $<$ 1"
