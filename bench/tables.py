"""The paper's tables as data (``tables/tableNN.toml``), joined with tracked runs, rendered as Markdown or LaTeX.

This module reads runs; it never trains. For every row it shows three lines: the paper's number, ours
(mean ± std over the seeds of FINISHED runs of the row's method on the chosen dataset and profile) and
the difference. A row with no finished run shows ``missing``, never a number. Under every grounding
table come the blind rows (random, fixed-span prior, whole video), which see neither video nor query,
and every "ours" line carries two diagnostics: the share of top-1 centres inside the true moment and the
mean predicted length as a share of the video.

When several finished runs exist for one seed, the newest is used; older ones stay in the store.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import tracking

TABLES_DIR = Path(os.environ.get("WSVG_TABLES", Path(__file__).resolve().parents[1] / "tables"))
TABLE_NUMBERS = tuple(range(1, 12))

METRIC_LABELS: dict[str, str] = {
    **{f"R{n}@{m}": f"R@{n} IoU={m}" for n in (1, 5) for m in (0.1, 0.3, 0.5, 0.7)},
    "mIoU": "mIoU",
    "mIoU_finetune": "mIoU (finetune)",
    "latency_s": "Latency (s)",
    "speedup": "Speed-up",
    "WER": "WER",
    "centre_in": "centre-in",
    "pred_len": "pred. len",
}
# Runs log fractions for recalls, IoUs, WER and the diagnostics; the paper prints percentages.
PERCENT_METRICS = {k for k in METRIC_LABELS if k.startswith(("R1@", "R5@", "mIoU"))} | {"WER", "centre_in", "pred_len"}
DECIMALS = {"latency_s": 3, "WER": 4}
DIAGNOSTICS = ("centre_in", "pred_len")
BLIND_METHODS = ("random", "prior", "whole-video")
"""The blind rows under every grounding table; their variants (``prior-miou``, ...) appear in ``bench report``."""
REAL_ANNOTATIONS = "activitynet-captions"
"""The dataset whose 'ours' lines are real-data rows (annotations only); its tables say so in the caption."""
GROUNDING_METRICS = {k for k in METRIC_LABELS if k.startswith(("R1@", "R5@", "mIoU"))}


@dataclass(frozen=True)
class Row:
    id: str
    label: str
    method: str | None
    group: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, float] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    not_reproducible: str = ""
    blind: bool = False


@dataclass(frozen=True)
class Table:
    number: int
    kind: str
    title: str
    paper_caption: str
    paper_dataset: str
    info: list[tuple[str, str]]
    metrics: list[str]
    rows: list[Row]
    columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def is_grounding(self) -> bool:
        return self.kind == "results" and bool(GROUNDING_METRICS & set(self.metrics))


def table_path(number: int) -> Path:
    return TABLES_DIR / f"table{number:02d}.toml"


def load_table(number: int) -> Table:
    """Parse and check ``tables/tableNN.toml``; errors name the file and the offending row."""
    if number not in TABLE_NUMBERS:
        raise ValueError(f"the paper has tables 1 to 11; there is no table {number}")
    path = table_path(number)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the paper's tables ship with the suite in tables/")
    with path.open("rb") as fh:
        try:
            raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: not valid TOML ({err})") from None
    try:
        rows = [
            Row(
                id=r["id"],
                label=r.get("label", r["id"]),
                method=r.get("method"),
                group=r.get("group", ""),
                info=dict(r.get("info", {})),
                paper={k: float(v) for k, v in r.get("paper", {}).items()},
                values=dict(r.get("values", {})),
                note=r.get("note", ""),
                not_reproducible=r.get("not_reproducible", ""),
            )
            for r in raw["rows"]
        ]
        table = Table(
            number=int(raw["number"]),
            kind=raw["kind"],
            title=raw["title"],
            paper_caption=raw.get("paper_caption", ""),
            paper_dataset=raw.get("paper_dataset", ""),
            info=[(c["key"], c["label"]) for c in raw.get("info", [])],
            metrics=list(raw.get("metrics", [])),
            rows=rows,
            columns=list(raw.get("columns", [])),
            notes=list(raw.get("notes", [])),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: malformed table ({type(err).__name__}: {err}); see tables/README.md") from None
    _check(table, path)
    return table


def _check(table: Table, path: Path) -> None:
    if table.number != int(path.stem.removeprefix("table")):
        raise ValueError(f"{path}: says number = {table.number}")
    unknown = [m for m in table.metrics if m not in METRIC_LABELS]
    if unknown:
        raise ValueError(f"{path}: unknown metric key(s) {unknown}; known: {sorted(METRIC_LABELS)}")
    ids = [r.id for r in table.rows]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{path}: duplicate row ids {sorted({i for i in ids if ids.count(i) > 1})}")
    for row in table.rows:
        if table.kind == "results" and not row.method and not row.not_reproducible:
            raise ValueError(f"{path}: row {row.id!r} names no method and is not marked not_reproducible")
        extra = set(row.paper) - set(table.metrics)
        if extra:
            raise ValueError(f"{path}: row {row.id!r} has paper values for undeclared metrics {sorted(extra)}")


def load_all() -> list[Table]:
    return [load_table(n) for n in TABLE_NUMBERS]


# ----------------------------------------------------------------------------------------------------
# Joining runs


@dataclass(frozen=True)
class Reproduced:
    """Mean ± std over seeds of one method's finished runs (fractions as logged)."""

    mean: dict[str, float]
    std: dict[str, float]
    seeds: list[int]
    commits: list[str]
    run_ids: list[str]
    dataset_hashes: list[str]

    @property
    def n(self) -> int:
        return len(self.seeds)


def collect(runs, method: str) -> Reproduced | None:
    """Aggregate the newest FINISHED run per seed of ``method`` in the ``runs`` DataFrame.

    Latency measurements (``scripts/bench_latency.py``, param ``measure = latency``) are separate runs of the same
    method: they are aggregated apart and contribute only the metrics the accuracy runs lack (Table 2's latency and
    speed-up), so a newer latency run never hides a training run of the same seed.
    """
    if runs is None or len(runs) == 0 or "params.method" not in runs:
        return None
    mine = runs[runs["params.method"] == method]
    if len(mine) == 0:
        return None
    if "params.measure" not in mine:
        return _aggregate(mine)
    latency = mine["params.measure"] == "latency"
    accuracy, timing = _aggregate(mine[~latency]), _aggregate(mine[latency])
    if accuracy is None or timing is None:
        return accuracy or timing
    extra = [k for k in timing.mean if k not in accuracy.mean]
    return dataclasses.replace(
        accuracy,
        mean={**accuracy.mean, **{k: timing.mean[k] for k in extra}},
        std={**accuracy.std, **{k: timing.std[k] for k in extra}},
        commits=sorted(set(accuracy.commits) | set(timing.commits)),
        run_ids=accuracy.run_ids + timing.run_ids,
    )


def _aggregate(mine) -> Reproduced | None:
    if len(mine) == 0:
        return None
    mine = mine.sort_values("start_time", ascending=False).drop_duplicates("params.seed")
    mine = mine.sort_values("params.seed", key=lambda s: s.astype(int))
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for metric in METRIC_LABELS:
        col = f"metrics.test/{tracking.mlflow_key(metric)}"
        if col not in mine:
            continue
        values = [float(v) for v in mine[col] if v is not None and not math.isnan(float(v))]
        if len(values) != len(mine):  # a metric missing from some seed is not averaged over fewer seeds
            continue
        mean[metric] = statistics.fmean(values)
        std[metric] = statistics.stdev(values) if len(values) > 1 else 0.0
    if not mean:
        return None

    def column(name: str) -> list[str]:
        return [str(v) for v in mine[name]] if name in mine else []

    dirty = column("params.dirty")
    commits = [c[:7] + ("+dirty" if d == "true" else "") for c, d in zip(column("params.commit"), dirty, strict=False)]
    return Reproduced(
        mean=mean,
        std=std,
        seeds=[int(s) for s in mine["params.seed"]],
        commits=sorted(set(commits)),
        run_ids=list(mine["run_id"]),
        dataset_hashes=sorted(set(column("params.dataset_hash"))),
    )


@dataclass
class Rendered:
    """A table ready to print: header, body lines (each a list of cells) and caption."""

    header: list[str]
    lines: list[list[str]]
    caption: str
    provenance: list[str]
    align: str
    notes: list[str] = field(default_factory=list)


def build(table: Table, dataset: str, profile: str, runs=None) -> Rendered:
    """Lay out ``table`` with the paper's numbers and the runs of ``dataset``/``profile``."""
    if table.kind == "config":
        return _build_config(table)
    if runs is None:
        runs = tracking.finished_runs({"dataset": dataset, "profile": profile})
    rows = list(table.rows)
    if table.is_grounding:
        rows += [
            Row(id=m, label=_blind_label(m), method=m, group="Blind rows (no video, no query)", blind=True)
            for m in BLIND_METHODS
        ]
    metrics = list(table.metrics) + (list(DIAGNOSTICS) if table.is_grounding else [])
    info_keys = [k for k, _ in table.info]
    header = ["Method", *[label for _, label in table.info], "", *[METRIC_LABELS[m] for m in metrics]]
    lines: list[list[str]] = []
    provenance: list[str] = []
    seeds: set[int] = set()
    commits: set[str] = set()
    hashes: set[str] = set()
    group = None
    for row in rows:
        if row.group and row.group != group:
            lines.append([f"*{row.group}*"] + [""] * (len(header) - 1))
            group = row.group
        info = [_info_cell(row.info.get(k, "")) for k in info_keys]
        if not row.blind:
            lines.append([row.label, *info, "paper", *[_fmt(m, row.paper.get(m), scale=False) for m in metrics]])
        repro = collect(runs, row.method) if row.method else None
        label = row.label if row.blind else ""
        blank_info = info if row.blind else [""] * len(info)
        if row.not_reproducible:
            lines.append([label, *blank_info, "ours", *["n/a"] * len(metrics)])
            provenance.append(f"{row.id}: not reproducible ({row.not_reproducible})")
            continue
        if repro is None:
            lines.append([label, *blank_info, "ours", *["missing"] * len(metrics)])
        else:
            seeds.update(repro.seeds)
            commits.update(repro.commits)
            hashes.update(repro.dataset_hashes)
            cells = [fmt_repro(m, repro) for m in metrics]
            lines.append([label, *blank_info, f"ours (n={repro.n})", *cells])
            provenance.append(f"{row.id}: runs {', '.join(repro.run_ids)}")
        if not row.blind:
            lines.append(["", *[""] * len(info), "Δ", *[_fmt_delta(m, row.paper.get(m), repro) for m in metrics]])
    caption = _caption(table, dataset, profile, sorted(seeds), sorted(commits), sorted(hashes))
    align = "l" * (len(info_keys) + 2) + "r" * len(metrics)
    return Rendered(header, lines, caption, provenance, align, table.notes)


def _blind_label(method: str) -> str:
    return {"random": "Random", "prior": "Fixed-span prior (train)", "whole-video": "Whole video"}[method]


def _build_config(table: Table) -> Rendered:
    header = ["Setting", *table.columns]
    lines = [[r.label, *[_config_cell(r.values.get(c)) for c in table.columns]] for r in table.rows]
    caption = f"Table {table.number} of SIL (ACL 2023): {table.title}. A configuration table: no runs enter it."
    return Rendered(header, lines, caption, [], "l" * len(header), table.notes)


def _config_cell(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:g}" for v in value) + "]"
    return "" if value is None else str(value)


def _caption(table: Table, dataset: str, profile: str, seeds: list[int], commits: list[str], hashes: list[str]) -> str:
    seed_text = ", ".join(map(str, seeds)) if seeds else "none"
    text = (
        f"Table {table.number} of SIL (ACL 2023): {table.title}. "
        f"'paper': the numbers the paper reports on {table.paper_dataset or 'its data'}. "
        f"'ours': mean ± std over seeds of finished runs on dataset {dataset}"
        f"{' (content hash ' + ', '.join(hashes) + ')' if hashes else ''}, profile {profile}, seeds {seed_text}, "
        f"commit {', '.join(commits) if commits else 'none'}; 'missing' means no finished run. Δ = ours − paper."
    )
    if dataset == "synth":
        text += (
            " The synthetic benchmark is not ActivityNet Speech: its numbers are not a reproduction of the"
            " paper, and Δ compares two different benchmarks."
        )
    if dataset == REAL_ANNOTATIONS:
        text += (
            " The 'ours' lines are real-data rows: computed on the real ActivityNet Captions annotations (nothing"
            " else: no video features, no speech), scored on its val_2 split, the test split whose moments the"
            " paper's ActivityNet Speech test set shares; only the blind rows can run on this dataset, the prior's"
            " span chosen on train alone. The 'paper' lines are the paper's reported numbers, not reproduced here."
        )
    if table.is_grounding:
        text += (
            " Blind rows see neither video nor query; the fixed-span prior is the span chosen on train for R@1"
            " IoU=0.5 (the priors tuned for the other metrics are in `bench report`). centre-in: share of queries"
            " whose top-1 centre lies inside the true moment; pred. len: mean top-1 length as a share of the video."
        )
    return text


def _info_cell(value: Any) -> str:
    if value is True:
        return "✓"
    if value is False:
        return "✗"
    return str(value)


def _fmt(metric: str, value: float | None, scale: bool) -> str:
    if value is None:
        return "–"
    if scale and metric in PERCENT_METRICS:
        value *= 100
    return f"{value:.{DECIMALS.get(metric, 2)}f}"


def fmt_repro(metric: str, repro: Reproduced) -> str:
    """``mean ± std`` in the table's units, or ``missing`` when some seed lacks the metric."""
    if metric not in repro.mean:
        return "missing"
    mean, std = _fmt(metric, repro.mean[metric], True), _fmt(metric, repro.std[metric], True)
    return f"{mean} ± {std}"


def _fmt_delta(metric: str, paper: float | None, repro: Reproduced | None) -> str:
    if paper is None or repro is None or metric not in repro.mean:
        return "–"
    ours = repro.mean[metric] * (100 if metric in PERCENT_METRICS else 1)
    return f"{ours - paper:+.{DECIMALS.get(metric, 2)}f}"


# ----------------------------------------------------------------------------------------------------
# Writers


def to_markdown(r: Rendered) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    out = ["| " + " | ".join(r.header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in r.align) + "|"]
    out += ["| " + " | ".join(esc(c) for c in line) + " |" for line in r.lines]
    out += ["", r.caption]
    if r.notes:
        out += ["", "Notes on the paper's table:"] + [f"- {n}" for n in r.notes]
    if r.provenance:
        out += ["", "<!-- provenance"] + [f"  {p}" for p in r.provenance] + ["-->"]
    return "\n".join(out) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_SYMBOLS = {"±": r"$\pm$", "✓": r"\checkmark", "✗": r"$\times$", "Δ": r"$\Delta$", "–": "--", "−": "-"}


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)
    for sym, rep in _LATEX_SYMBOLS.items():
        out = out.replace(sym, rep)
    return out


def to_latex(r: Rendered, label: str) -> str:
    """A booktabs table (needs ``\\usepackage{booktabs,amssymb}``), provenance as ``%`` comments."""
    out = [
        r"\begin{table*}[t]",
        r"\centering",
        r"\small",
        rf"\begin{{tabular}}{{{r.align}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in r.header) + r" \\",
        r"\midrule",
    ]
    for line in r.lines:
        if line[0].startswith("*") and not any(line[1:]):
            out.append(rf"\multicolumn{{{len(r.header)}}}{{l}}{{\textit{{{latex_escape(line[0].strip('*'))}}}}} \\")
        else:
            out.append(" & ".join(latex_escape(c) for c in line) + r" \\")
    out += [
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{latex_escape(r.caption)}}}",
        rf"\label{{{label}}}",
        r"\end{table*}",
    ]
    out += [f"% {p}" for p in r.provenance]
    out += [f"% Note on the paper's table: {n}" for n in r.notes]
    return "\n".join(out) + "\n"


def render(number: int, fmt: str = "md", dataset: str = "synth", profile: str = "small", runs=None) -> str:
    table = load_table(number)
    rendered = build(table, dataset, profile, runs)
    if fmt == "md":
        return f"### Table {number}: {table.title}\n\n" + to_markdown(rendered)
    if fmt == "latex":
        return to_latex(rendered, label=f"tab:sil-{number}")
    raise ValueError(f"unknown format {fmt!r}; choose md or latex")
