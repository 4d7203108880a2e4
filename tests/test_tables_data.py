"""The paper's tables as data: schema, golden cells typed by hand, and every number checked against the paper;
then the tables rendered from a hand-made tracking store (splits, n, our dR@1 columns, captions, hints).

Reads ``tables/tableNN.toml`` and ``tables/figures.toml`` with ``tomllib`` directly (not through
``bench.tables``), so that the data files are checked on their own; the last section renders through
``bench.tables`` and ``bench.report``. The paper-text checks need
``shared/paper/sil-acl2023.txt`` next to the repository (or under ``$WSVG_SHARED/paper/``) and are
skipped, with the reason, where it is absent.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TABLES_DIR = REPO / "tables"
TABLE_NUMBERS = tuple(range(1, 12))

METRICS = {
    "R1@0.1",
    "R1@0.3",
    "R1@0.5",
    "R1@0.7",
    "R5@0.1",
    "R5@0.3",
    "R5@0.5",
    "R5@0.7",
    "mIoU",
    "mIoU_finetune",
    "latency_s",
    "speedup",
    "WER",
}
RESULTS_KEYS = {"number", "kind", "title", "paper_caption", "paper_dataset", "info", "metrics", "rows"}
CONFIG_KEYS = {"number", "kind", "title", "paper_caption", "columns", "rows"}
FIGURE_KEYS = {"id", "title", "x_label", "x", "y_metric", "claim", "note", "series"}

# Row ids of every table, in the paper's order (so also the row count of each table).
EXPECTED_ROWS: dict[int, list[str]] = {
    1: [
        "vslnet",
        "vgcl",
        "asr-wslln",
        "asr-scn",
        "asr-rtbpn",
        "base",
        "base+wav2vec2",
        "base+vilt",
        "base+lut",
        "wslln+lsem",
        "rtbpn+lsem",
        "base+lsem",
        "base+asp",
        "sil",
    ],
    2: ["asr-base", "asr-rtbpn", "sil"],
    3: ["base", "base+lsem", "base+lconc+lsem", "base+lsem+avcl", "sil-no-rob", "sil"],
    4: ["sil-data10", "sil-data50", "sil"],
    5: ["base-pooladd+lsem", "base-pooladd+asp", "base+lsem", "base+asp"],
    6: ["rtbpn-text", "rtbpn-text+avcl"],
    7: ["time-stretching", "pitch-shifting", "noise-addition"],
    8: ["asr-wav2vec2", "google-api"],
    9: ["asr-wslln", "wslln-text", "asr-scn", "scn-text", "asr-rtbpn", "rtbpn-text", "sil"],
    10: ["vslnet", "vgcl", "sbase", "sbase+asp"],
    11: ["sil-no-location", "sil-no-score", "sil"],
}

# Cells typed by hand from the paper, independently of the data files: (table, row id, metric, value).
# A value of None means the paper prints "-" there, so the cell must be absent.
GOLDEN: list[tuple[int, str, str, float | None]] = [
    (1, "sil", "R1@0.5", 30.26),
    (1, "sil", "mIoU_finetune", 34.52),
    (1, "base", "R5@0.7", 28.08),
    (1, "asr-wslln", "mIoU", 31.42),
    (1, "asr-wslln", "mIoU_finetune", 31.68),
    (1, "asr-wslln", "R5@0.1", None),
    (1, "vslnet", "R5@0.7", None),
    (1, "base+lsem", "mIoU_finetune", None),
    (1, "base+vilt", "R1@0.7", 12.43),
    (2, "sil", "latency_s", 0.044),
    (2, "sil", "speedup", 2.04),
    (2, "asr-base", "mIoU", 32.13),
    (2, "asr-rtbpn", "speedup", 0.95),
    (3, "base", "R1@0.5", 22.99),
    (3, "sil-no-rob", "mIoU", 33.91),
    (3, "base+lsem+avcl", "R5@0.7", 33.64),
    (4, "sil-data10", "mIoU", 31.71),
    (4, "sil-data50", "R1@0.3", 49.28),
    (4, "sil", "R1@0.1", None),
    (5, "base-pooladd+lsem", "R1@0.5", 27.49),
    (5, "base-pooladd+asp", "R1@0.7", 13.38),
    (5, "base+asp", "mIoU", 33.04),
    (6, "rtbpn-text", "R1@0.3", 49.77),
    (6, "rtbpn-text+avcl", "R5@0.5", 64.68),
    (8, "asr-wav2vec2", "WER", 5.2817),
    (8, "google-api", "WER", 9.5057),
    (9, "asr-wslln", "R1@0.1", 74.47),
    (9, "wslln-text", "R1@0.1", 75.40),
    (9, "wslln-text", "R5@0.1", None),
    (9, "scn-text", "R5@0.3", 71.45),
    (9, "rtbpn-text", "R5@0.5", 60.56),
    (9, "asr-rtbpn", "R5@0.5", 61.88),
    (10, "sbase+asp", "mIoU", 40.54),
    (10, "sbase", "R5@0.1", 96.62),
    (10, "vgcl", "R5@0.1", None),
    (11, "sil-no-score", "R1@0.7", 14.42),
    (11, "sil-no-location", "R1@0.1", 72.38),
]
GOLDEN_INFO: list[tuple[int, str, str, object]] = [
    (1, "base+wav2vec2", "sp", True),
    (1, "base+wav2vec2", "txt", False),
    (1, "sil", "backbone", "Base+L_AVCL"),
    (3, "sil-no-rob", "rob", False),
    (3, "sil-no-rob", "avcl", True),
    (3, "base+lsem+avcl", "conc", False),
    (10, "vgcl", "pretraining", "VGCL"),
    (10, "sbase+asp", "pretraining", "ASP"),
]
GOLDEN_CONFIG: list[tuple[str, str, list[float]]] = [
    ("noise-addition", "medium", [10, 20]),  # printed "[10.20]"
    ("time-stretching", "high", [0.5, 2.0]),
    ("pitch-shifting", "low", [-2, 2]),
    ("time-stretching", "medium", [0.6, 1.67]),
]

# Cells the paper prints so that they cannot be found as typed on the row's line: (table, row id) -> the
# token that stands there instead.
PRINTED_OTHERWISE = {(7, "noise-addition"): 10.20}

# Rows the paper repeats across tables: (table, row id) pairs that must agree on all shared metrics.
SAME_NUMBERS = [
    [(1, "sil"), (2, "sil"), (3, "sil"), (4, "sil"), (9, "sil"), (11, "sil")],
    [(1, "base+lsem"), (3, "base+lsem"), (5, "base+lsem")],
    [(1, "base+asp"), (5, "base+asp")],
    [(1, "vslnet"), (10, "vslnet")],
    [(1, "vgcl"), (10, "vgcl")],
    [(1, "asr-wslln"), (9, "asr-wslln")],
    [(1, "asr-scn"), (9, "asr-scn")],
    [(1, "asr-rtbpn"), (2, "asr-rtbpn"), (9, "asr-rtbpn")],
    [(6, "rtbpn-text"), (9, "rtbpn-text")],
]

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _paper_path() -> Path:
    shared = os.environ.get("WSVG_SHARED")
    base = Path(shared) if shared else REPO.parent / "shared"
    return base / "paper" / "sil-acl2023.txt"


def _load(path: Path) -> dict:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def _table_path(number: int) -> Path:
    return TABLES_DIR / f"table{number:02d}.toml"


@pytest.fixture(scope="module")
def tables() -> dict[int, dict]:
    return {n: _load(_table_path(n)) for n in TABLE_NUMBERS if _table_path(n).exists()}


@pytest.fixture(scope="module")
def figures() -> list[dict]:
    return _load(TABLES_DIR / "figures.toml")["figures"]


@pytest.fixture(scope="module")
def paper_text() -> str:
    path = _paper_path()
    if not path.exists():
        pytest.skip(f"paper text not found at {path} (set WSVG_SHARED to a directory holding paper/)")
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def paper_numbers(paper_text: str) -> list[float]:
    found: set[float] = set()
    for token in NUMBER.findall(paper_text):
        found.update({float(token), abs(float(token))})
    return sorted(found)


def _rows(table: dict) -> dict[str, dict]:
    return {r["id"]: r for r in table["rows"]}


def _numbers(row: dict) -> list[float]:
    """Every number a row gives: its paper cells, or the flattened ranges of a config row."""
    if "paper" in row:
        return [float(v) for v in row["paper"].values()]
    return [float(v) for cell in row["values"].values() for v in cell]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _contains(haystack: list[float], value: float) -> bool:
    return any(math.isclose(value, h, rel_tol=0.0, abs_tol=1e-9) for h in haystack)


# ----------------------------------------------------------------------------------------------------
# Schema


@pytest.mark.parametrize("number", TABLE_NUMBERS)
def test_table_file_exists_and_parses(number: int) -> None:
    path = _table_path(number)
    assert path.exists(), f"{path} is missing"
    data = _load(path)
    assert data["number"] == number
    assert data["kind"] == ("config" if number == 7 else "results")


@pytest.mark.parametrize("number", TABLE_NUMBERS)
def test_table_schema(tables: dict[int, dict], number: int) -> None:
    table = tables[number]
    required = CONFIG_KEYS if table["kind"] == "config" else RESULTS_KEYS
    assert required <= set(table), f"table {number} lacks {sorted(required - set(table))}"
    assert table["paper_caption"].startswith(f"Table {number}: ")
    assert all(isinstance(n, str) and n for n in table.get("notes", []))
    ids = [r["id"] for r in table["rows"]]
    assert len(ids) == len(set(ids)), f"table {number}: duplicate row ids"
    for row in table["rows"]:
        rid = row["id"]
        assert rid == rid.strip().lower() and " " not in rid, f"table {number}: bad row id {rid!r}"
        assert isinstance(row.get("label"), str) and row["label"], f"table {number}/{rid}: no label"
        assert isinstance(row.get("note", ""), str)
        if table["kind"] == "config":
            assert set(row["values"]) == set(table["columns"]), f"table {number}/{rid}: values vs columns"
            for cell in row["values"].values():
                assert len(cell) == 2 and all(_is_number(v) for v in cell) and cell[0] <= cell[1]
            continue
        assert ("method" in row) != ("not_reproducible" in row), (
            f"table {number}/{rid}: give exactly one of method and not_reproducible"
        )
        if "not_reproducible" in row:
            assert isinstance(row["not_reproducible"], str) and row["not_reproducible"]
        assert row["paper"], f"table {number}/{rid}: no paper numbers"
        assert set(row["paper"]) <= set(table["metrics"]), f"table {number}/{rid}: undeclared metric"
        assert all(_is_number(v) for v in row["paper"].values())
        info_keys = [c["key"] for c in table["info"]]
        assert set(row.get("info", {})) == set(info_keys), f"table {number}/{rid}: info keys"
        assert all(isinstance(v, str | bool) for v in row.get("info", {}).values())
    if table["kind"] == "results":
        metrics = table["metrics"]
        assert metrics and len(metrics) == len(set(metrics))
        assert set(metrics) <= METRICS, f"table {number}: unknown metrics {set(metrics) - METRICS}"
        used = {k for r in table["rows"] for k in r["paper"]}
        assert used == set(metrics), f"table {number}: declared metrics no row gives {set(metrics) - used}"
        for col in table["info"]:
            assert set(col) == {"key", "label"} and col["key"] and col["label"]


@pytest.mark.parametrize("number", TABLE_NUMBERS)
def test_row_ids_and_counts(tables: dict[int, dict], number: int) -> None:
    assert [r["id"] for r in tables[number]["rows"]] == EXPECTED_ROWS[number]


def test_methods_are_registered(tables: dict[int, dict], figures: list[dict]) -> None:
    try:
        from methods import registry
    except ImportError as err:  # pragma: no cover - depends on how pytest was started
        pytest.skip(f"methods.registry is not importable ({err})")
    named = {r["method"] for t in tables.values() for r in t["rows"] if "method" in r}
    named |= {s["method"] for f in figures for s in f["series"]}
    unknown = sorted(m for m in named if not registry.is_known(m))
    assert not unknown, f"methods unknown to methods/registry.py: {unknown}"


# ----------------------------------------------------------------------------------------------------
# Golden cells


@pytest.mark.parametrize(("number", "rid", "metric", "value"), GOLDEN)
def test_golden_cell(tables: dict[int, dict], number: int, rid: str, metric: str, value: float | None) -> None:
    paper = _rows(tables[number])[rid]["paper"]
    if value is None:
        assert metric not in paper, f"table {number}/{rid}: the paper prints '-' for {metric}"
    else:
        assert paper.get(metric) == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize(("number", "rid", "key", "value"), GOLDEN_INFO)
def test_golden_info(tables: dict[int, dict], number: int, rid: str, key: str, value: object) -> None:
    assert _rows(tables[number])[rid]["info"][key] == value


@pytest.mark.parametrize(("rid", "column", "value"), GOLDEN_CONFIG)
def test_golden_config(tables: dict[int, dict], rid: str, column: str, value: list[float]) -> None:
    assert _rows(tables[7])[rid]["values"][column] == pytest.approx(value)


def test_table7_typo_is_noted(tables: dict[int, dict]) -> None:
    assert any("[10.20]" in n for n in tables[7]["notes"])


def test_google_api_is_not_reproducible(tables: dict[int, dict]) -> None:
    row = _rows(tables[8])["google-api"]
    assert "method" not in row and row["not_reproducible"]


@pytest.mark.parametrize("group", SAME_NUMBERS, ids=lambda g: "=".join(f"t{n}:{r}" for n, r in g))
def test_repeated_rows_agree(tables: dict[int, dict], group: list[tuple[int, str]]) -> None:
    first_n, first_id = group[0]
    ref = _rows(tables[first_n])[first_id]["paper"]
    for number, rid in group[1:]:
        other = _rows(tables[number])[rid]["paper"]
        shared = set(ref) & set(other)
        assert shared, f"table {number}/{rid} shares no metric with table {first_n}/{first_id}"
        for metric in shared:
            assert other[metric] == pytest.approx(ref[metric], abs=1e-9), (number, rid, metric)


def test_base_rows_of_table1_and_table3_differ_and_are_noted(tables: dict[int, dict]) -> None:
    t1, t3 = _rows(tables[1])["base"]["paper"], _rows(tables[3])["base"]["paper"]
    assert all(t1[m] != t3[m] for m in tables[3]["metrics"])
    assert any("Table 1" in n for n in tables[3]["notes"])


# ----------------------------------------------------------------------------------------------------
# Against the paper's text


def test_every_number_is_in_the_paper(tables: dict[int, dict], paper_numbers: list[float]) -> None:
    missing = [
        (n, row["id"], v)
        for n, t in tables.items()
        for row in t["rows"]
        for v in _numbers(row)
        if not _contains(paper_numbers, v)
    ]
    assert not missing, f"numbers not found in the paper text: {missing}"


def test_each_row_is_on_one_line_of_the_paper(tables: dict[int, dict], paper_text: str) -> None:
    """All of a row's numbers occur (with multiplicity) on one line of the dump.

    Catches a cell typed into the wrong row, which the global check above cannot.
    """
    lines = [Counter(float(t) for t in NUMBER.findall(line)) for line in paper_text.splitlines()]
    lines = [c for c in lines if c]
    bad = []
    for number, table in tables.items():
        for row in table["rows"]:
            if (number, row["id"]) in PRINTED_OTHERWISE:
                want = Counter([PRINTED_OTHERWISE[(number, row["id"])]])
            else:
                want = Counter(_numbers(row))
            if not any(all(line[v] >= k for v, k in want.items()) for line in lines):
                bad.append((number, row["id"]))
    assert not bad, f"rows whose numbers are not together on any line of the paper: {bad}"


# Tables whose rows the dump merges into one line, column by column: (table, row ids on that line).
MERGED_LINES = {
    5: EXPECTED_ROWS[5],
    6: EXPECTED_ROWS[6],
    9: ["asr-wslln", "wslln-text", "asr-scn", "scn-text", "asr-rtbpn", "rtbpn-text"],
}


def _line_tokens(paper_text: str) -> list[list[float]]:
    return [[float(t) for t in NUMBER.findall(line)] for line in paper_text.splitlines()]


def _ends_some_line(lines: list[list[float]], want: list[float]) -> bool:
    return any(
        len(line) >= len(want)
        and all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(line[-len(want) :], want, strict=True))
        for line in lines
    )


def test_cells_are_in_the_papers_order(tables: dict[int, dict], paper_text: str) -> None:
    """A row's cells, in the declared column order, end a line of the dump (catches swapped columns).

    Where the dump merges a table's rows into one line, that line lists column after column.
    """
    lines = _line_tokens(paper_text)
    bad = []
    for number, table in tables.items():
        merged = MERGED_LINES.get(number, [])
        for row in table["rows"]:
            if row["id"] in merged or (number, row["id"]) in PRINTED_OTHERWISE:
                continue
            if "paper" in row:
                want = [float(row["paper"][m]) for m in table["metrics"] if m in row["paper"]]
            else:
                want = [float(v) for c in table["columns"] for v in row["values"][c]]
            if not _ends_some_line(lines, want):
                bad.append((number, row["id"]))
        if merged:
            paper = {r: _rows(table)[r]["paper"] for r in merged}
            want = [float(paper[r][m]) for m in table["metrics"] for r in merged if m in paper[r]]
            if not _ends_some_line(lines, want):
                bad.append((number, "merged line"))
    assert not bad, f"cells not in the order the paper prints them: {bad}"


@pytest.mark.parametrize("number", TABLE_NUMBERS)
def test_caption_is_verbatim(tables: dict[int, dict], paper_text: str, number: int) -> None:
    assert tables[number]["paper_caption"] in paper_text


# ----------------------------------------------------------------------------------------------------
# Figures


def test_figures_schema(figures: list[dict]) -> None:
    assert [f["id"] for f in figures] == ["fig4", "fig5a", "fig5b", "fig9a", "fig9b"]
    for fig in figures:
        assert set(fig) >= FIGURE_KEYS, f"{fig.get('id')}: lacks {sorted(FIGURE_KEYS - set(fig))}"
        for key in ("title", "x_label", "y_metric", "claim", "note"):
            assert isinstance(fig[key], str) and fig[key], f"{fig['id']}: empty {key}"
        assert isinstance(fig["x"], list)
        assert fig["series"], f"{fig['id']}: no series"
        for series in fig["series"]:
            assert {"method", "label", "y"} <= set(series), f"{fig['id']}: series lacks a field"
            assert isinstance(series["y"], list)
            assert not series["y"] or len(series["y"]) == len(fig["x"])
            if "sweep" in series:
                assert set(series["sweep"]) == {"key", "values"}
                assert len(series["sweep"]["values"]) == len(fig["x"])


def test_figure_series(figures: list[dict]) -> None:
    by_id = {f["id"]: f for f in figures}
    fig4 = [s["method"] for s in by_id["fig4"]["series"]]
    assert fig4 == ["sil", "asr-rtbpn", "sil-freq-only", "sil-time-only"]
    assert [s["method"] for s in by_id["fig5a"]["series"]] == ["base+ldis", "base+lseq", "base+lseq+lword"]
    assert by_id["fig4"]["x"] == ["low", "medium", "high"]
    assert by_id["fig9a"]["x"] == [15, 30, 50, 70]
    assert by_id["fig9a"]["series"][0]["sweep"]["values"] == pytest.approx([0.15, 0.30, 0.50, 0.70])
    assert by_id["fig9b"]["x"] == [3, 6, 12, 24]


def test_figure_x_values_are_in_the_paper(figures: list[dict], paper_numbers: list[float]) -> None:
    missing = [(f["id"], x) for f in figures for x in f["x"] if _is_number(x) and not _contains(paper_numbers, x)]
    assert not missing


# ----------------------------------------------------------------------------------------------------
# Rendering from tracked runs (bench.tables, bench.report): a hand-made store whose runs log val_2 metrics under
# test/ and test-ood metrics under test_ood/, as the harness does; the numbers are chosen so that every cell can be
# read off by hand.

# (method, seed) -> (val_2 metrics, test-ood metrics), fractions as logged
LOGGED = {
    ("sil", 0): ({"R1@0.5": 0.30, "R1@0.7": 0.10, "dR1@0.5": 0.20, "mIoU": 0.35}, {"R1@0.5": 0.12, "mIoU": 0.20}),
    ("sil", 1): ({"R1@0.5": 0.40, "R1@0.7": 0.20, "dR1@0.5": 0.30, "mIoU": 0.45}, {"R1@0.5": 0.18, "mIoU": 0.30}),
    ("base", 0): ({"R1@0.5": 0.25, "R1@0.7": 0.05, "dR1@0.5": 0.125, "mIoU": 0.3}, {}),  # no test-ood logged
}


def _cells(text: str, after: str) -> list[str]:
    """The cells of the 'ours' line that follows the paper line starting with ``after`` (Markdown)."""
    lines = text.splitlines()
    start = next(i for i, li in enumerate(lines) if li.startswith(after))
    ours = next(li for li in lines[start + 1 :] if "| ours" in li)
    return [c.strip() for c in ours.split("|")[1:-1]]


@pytest.fixture
def logged_store(home):
    from bench import tracking

    for (method, seed), (val, ood) in LOGGED.items():
        params = {"method": method, "dataset": "synth", "profile": "small", "seed": seed, "dataset_hash": "hash0001"}
        with tracking.start_run(f"{method}/seed{seed}", params) as log:
            log.log_metrics(val, prefix="test/")
            log.log_metrics(ood, prefix="test_ood/")
    return home


def test_tables_show_the_chosen_split_with_n_and_our_dr_columns(logged_store):
    from bench import tables

    table = tables.load_table(1)
    header = tables.build(table, "synth", "small").header
    col = {h: i for i, h in enumerate(header)}
    # our dR@1 columns sit right after the paper's R@1 columns, marked as ours
    assert header[col["R@1 IoU=0.7"] + 1 : col["R@1 IoU=0.7"] + 3] == ["dR@1 IoU=0.5 †", "dR@1 IoU=0.7 †"]
    assert header.index("R@5 IoU=0.1") == col["R@1 IoU=0.7"] + 3
    val = tables.render(1, "md", "synth", "small")
    sil = _cells(val, "| SIL (Base+L_AVCL")
    assert sil[col[""]] == "ours (n=2)"
    assert sil[col["R@1 IoU=0.5"]] == "35.00 ± 7.07"  # mean of 30 and 40, sample std 10 / sqrt(2)
    assert sil[col["dR@1 IoU=0.5 †"]] == "25.00 ± 7.07" and sil[col["dR@1 IoU=0.7 †"]] == "missing"
    base = _cells(val, "| Base |")
    assert base[col[""]] == "ours (n=1)" and base[col["R@1 IoU=0.5"]] == "25.00"  # one seed: no "± 0.00"
    assert base[col["dR@1 IoU=0.5 †"]] == "12.50"
    paper_sil = next(li for li in val.splitlines() if li.startswith("| SIL (Base+L_AVCL"))
    assert [c.strip() for c in paper_sil.split("|")[1:-1]][col["dR@1 IoU=0.5 †"]] == "–"  # the paper has none
    assert "test split val_2, the test split (metrics logged under test/)" in val
    assert "† Columns of this suite, not of the paper" in val and "sample standard deviation" in val
    # the debiased split: the same runs, their test_ood/ metrics; Base logged none there
    ood = tables.render(1, "md", "synth", "small", split="test-ood")
    sil = _cells(ood, "| SIL (Base+L_AVCL")
    assert sil[col["R@1 IoU=0.5"]] == "15.00 ± 4.24" and sil[col["mIoU"]] == "25.00 ± 7.07"
    assert all(c == "missing" for c in _cells(ood, "| Base |")[col["R@1 IoU=0.1"] :])
    assert "test split test-ood, the debiased test split" in ood and "test_ood/" in ood
    with pytest.raises(ValueError, match="unknown test split"):
        tables.render(1, "md", "synth", "small", split="val_1")


def test_captions_do_not_repeat_the_table_number_and_latex_says_what_it_needs(logged_store):
    from bench import tables

    md = tables.render(3, "md", "synth", "small")
    assert md.startswith("### Table 3: ") and "Table 3: Table 3" not in md
    caption = next(li for li in md.splitlines() if li.startswith("'paper':"))
    assert "SIL (ACL 2023) reports in its Table 3" in caption
    latex = tables.render(3, "latex", "synth", "small")
    title = tables.load_table(3).title
    assert latex.splitlines()[0] == r"% needs \usepackage{booktabs,amssymb}"
    assert rf"\caption{{{tables.latex_escape(title)}. 'paper': the numbers" in latex  # LaTeX adds "Table N:" itself
    assert "$^\\dagger$" in latex and "ours (n=2)" in latex
    # LaTeX has no Δ line (the Markdown has it); a negative number is a math minus in LaTeX, never a hyphen
    assert "& $\\Delta$ &" not in latex and "| Δ |" in md
    assert tables.latex_escape("-4.08") == "$-$4.08"
    cells = [c.strip() for li in latex.splitlines() if not li.startswith("%") for c in li.split("&")]
    assert not any(re.match(r"-\d", c) for c in cells)


def test_an_empty_table_says_what_the_store_holds(logged_store, capsys):
    from bench import cli, tables

    assert tables.empty_hint(1, "synth", "small") is None  # SIL and Base have runs here
    hint = tables.empty_hint(1, "synth", "tiny")
    assert "no finished run of its rows for dataset synth, profile tiny" in hint
    assert "synth/small (3 runs)" in hint and "--profile" in hint
    assert tables.empty_hint(7, "synth", "tiny") is None  # a configuration table takes no runs
    assert cli.main(["table", "1", "--profile", "tiny"]) == 0
    captured = capsys.readouterr()
    assert "synth/small (3 runs)" in captured.err and "missing" in captured.out
    assert cli.main(["table", "1"]) == 0  # runs found: no hint, but what it shows and what else the store holds
    err = capsys.readouterr().err
    assert "no finished run" not in err and "Table 1 from dataset synth, profile small, test split val_2" in err
    assert "the store holds finished runs of synth/small (3 runs)" in err


def test_report_follows_the_split(logged_store, tmp_path):
    from bench import cli

    assert cli.main(["report", "--out", str(tmp_path / "ood"), "--split", "test-ood"]) == 0
    index = (tmp_path / "ood" / "index.md").read_text()
    assert "test split **test-ood**" in index
    table1 = (tmp_path / "ood" / "table01.md").read_text()
    assert "15.00 ± 4.24" in table1 and "35.00 ± 7.07" not in table1
    assert "| Method | Benchmark (test: test-ood) |" in (tmp_path / "ood" / "blind.md").read_text()
