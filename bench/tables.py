r"""The paper's tables as data (``tables/tableNN.toml``), joined with tracked runs, rendered as Markdown or LaTeX.

This module reads runs; it never trains. For every row it shows three lines: the paper's number, ours
(mean ± sample standard deviation over the seeds of FINISHED runs of the row's method on the chosen dataset and
profile, with the number of seeds n in the line's label; a single seed shows its value alone, never "± 0.00") and
the difference. A row with no finished run shows ``missing``, never a number. Under every grounding
table come the blind rows (random, fixed-span prior, whole video), which see neither video nor query,
and every "ours" line carries two diagnostics: the share of top-1 centres inside the true moment and the
mean predicted length as a share of the video. Every grounding table also shows the discounted recall dR@1 at
IoU 0.5 and 0.7 (Yuan et al. 2021, :mod:`bench.evaluate`) beside R@1: columns of this suite, with no paper number.

Test splits (:data:`TEST_SPLITS`). A grounding run logs its test metrics on val_2 under ``test/`` and, where the
dataset has the debiased split, those on test-ood under ``test_ood/``, with the predictions artifacts
``predictions/test_predictions.jsonl`` and ``predictions/test_ood_predictions.jsonl``. ``split`` chooses which
one a table shows, and the caption names it: on a real annotations dataset by the dataset's own split name and file
(:func:`split_description`; ActivityNet-CD's ``test/`` is its test-iid split).

When several finished runs exist for one seed, the newest is used; older ones stay in the store. A run made with a
``--set`` that changes the method's configuration (param ``overrides``) is never a row's: sweeps and ablations by
option are compared with ``bench compare A B --set-b KEY=VALUE``.

Writers. Markdown (:func:`to_markdown`) shows the three lines per row and keeps the ASCII hyphen-minus for negative
numbers (``-1.23``: what a reader copies into a script parses as a number). LaTeX (:func:`to_latex`) is compact and
paste-ready: per row one line of ours and the paper's number under it, no Δ line; negative numbers get a math minus
(``$-$``), losses such as ``L_sem`` are set as ``$\mathcal{L}_{\mathrm{sem}}$``; its first line names the packages it
needs (booktabs, amssymb), and a table wider than a plain article's text width is split into several tabulars under
one caption (``tests/test_latex.py`` compiles each with pdflatex and checks that none is overfull). Recalls, IoUs and
the diagnostics are logged to MLflow as fractions and printed in percent; every caption says so.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import statistics
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import datasets, swap, tracking
from bench.data.captions import SOURCES

TABLES_DIR = Path(os.environ.get("WSVG_TABLES", Path(__file__).resolve().parents[1] / "tables"))
TABLE_NUMBERS = tuple(range(1, 12))

METRIC_LABELS: dict[str, str] = {
    **{f"R{n}@{m}": f"R@{n} IoU={m}" for n in (1, 5) for m in (0.1, 0.3, 0.5, 0.7)},
    "mIoU": "mIoU",
    **{f"dR1@{m}": f"dR@1 IoU={m}" for m in (0.1, 0.3, 0.5, 0.7)},
    "mIoU_finetune": "mIoU (finetune)",
    "latency_s": "Latency (s)",
    "speedup": "Speed-up",
    "latency_paper_s": "Latency at the paper's sizes (s)",
    "speedup_paper": "Speed-up at the paper's sizes",
    "WER": "WER",
    "centre_in": "centre-in",
    "pred_len": "pred. len",
}
# Runs log fractions for recalls, IoUs, WER and the diagnostics; the paper prints percentages.
PERCENT_METRICS = {k for k in METRIC_LABELS if k.startswith(("R1@", "R5@", "mIoU", "dR1@"))} | {
    "WER",
    "centre_in",
    "pred_len",
}
DECIMALS = {"latency_s": 3, "latency_paper_s": 3, "WER": 4}
LATENCY_MEASURES = ("latency", "latency-paper-sizes")  # the ``measure`` param of scripts/bench_latency.py's runs
PAPER_SIZE_METRICS = ("latency_paper_s", "speedup_paper")
"""Table 2's columns of this suite: the three systems rebuilt at the paper's sizes (fresh weights), timed beside
each other (``scripts/bench_latency.py --sizes paper``); no paper number, marked as ours."""
DIAGNOSTICS = ("centre_in", "pred_len")
BLIND_METHODS = ("random", "prior", "whole-video")
FINETUNE_METRIC = "mIoU_finetune"
"""Table 1's "mIoU (finetune)": filled from the runs of a row's ``finetune`` method (:func:`with_finetuned`)."""
"""The blind rows under every grounding table; their variants (``prior-miou``, ...) appear in ``bench report``."""
REFERENCE_METHODS = ("vslnet-text", "2dtan-text", "oracle-concept")
"""Reference rows under every grounding table (not rows of the paper, not under test): the supervised ceilings on
the gold text and, on the synthetic benchmark, the oracle that knows the planted concept (issue 14)."""
REFERENCE_GROUP = "References (not rows of the paper: supervised ceilings on the gold text, the concept oracle)"
SPEECH_DATASET = "activitynet-speech"
"""The real ActivityNet Speech over a local data root (``bench/data/speech_root.py``): its tables say that their
'ours' lines are real-data results, and at which profile."""
REAL_DATASETS: tuple[str, ...] = tuple(SOURCES)
"""The datasets whose 'ours' lines are real-data rows (annotations only, ``bench/data/captions.py``); their tables
say so in the caption."""
GROUNDING_METRICS = {k for k in METRIC_LABELS if k.startswith(("R1@", "R5@", "mIoU"))}
OURS_METRICS = ("dR1@0.5", "dR1@0.7")
"""Columns every grounding table gets beside R@1 although the paper reports none: ours, marked with OURS_MARK."""
OURS_MARK = "†"


@dataclass(frozen=True)
class TestSplit:
    """Where a run keeps one test split's numbers: the metric prefix and the predictions artifact.

    ``key`` is the split's name among a dataset's annotation files (``val_2``, ``test_ood``), by which a real
    annotations dataset names its own file for it (:func:`split_description`); ``remedy`` is what to do about a run
    that lacks the split's artifact (``{method}``: the run's method).
    """

    name: str
    prefix: str
    artifact: str
    description: str
    key: str
    remedy: str = "runs of this split log it (re-run the method)"

    @property
    def means_artifact(self) -> str:
        """The per-query means over random draws beside the predictions (:data:`bench.evaluate.QUERY_MEANS_SUFFIX`),
        which only a method that averages draws (``random``) logs."""
        return self.artifact.replace("_predictions.jsonl", "_query_means.jsonl")


def logged_split(name: str, logged_as: str, description: str, key: str, **kw: str) -> TestSplit:
    """The split called ``name`` here, which a grounding run scores as ``logged_as`` (:mod:`bench.train`'s naming:
    metrics under ``<logged_as>/``, predictions in ``predictions/<logged_as>_predictions.jsonl``)."""
    return TestSplit(name, f"{logged_as}/", f"predictions/{logged_as}_predictions.jsonl", description, key, **kw)


TEST_SPLITS: dict[str, TestSplit] = {
    "val_2": logged_split("val_2", "test", "val_2, the test split (metrics logged under test/)", "val_2"),
    "test-ood": logged_split(
        "test-ood",
        "test_ood",
        "test-ood, the debiased test split whose moments sit where training moments rarely do (metrics logged under"
        " test_ood/)",
        "test_ood",
    ),
}
SWAPPED_TEST = logged_split(
    "swapped",
    swap.SWAPPED,
    f"the swap test of val_2, each query given its video's other query (metrics logged under {swap.SWAPPED}/)",
    swap.SWAPPED,
    remedy="a run on synth that trains through the grounding loop logs it (not the blind rows or the oracle, nor a "
    "run older than the swap test); re-run `bench run --method {method}`",
)
"""Not a ``--split``: the same queries as val_2 with other inputs (:mod:`bench.swap`), which ``bench compare M
M@swapped`` and ``bench calibrate --swap`` pair with val_2 query by query."""
DEFAULT_SPLIT = "val_2"


def test_split(name: str) -> TestSplit:
    """The :class:`TestSplit` called ``name`` (``val_2`` or ``test-ood``); an unknown name is a clear error."""
    if name not in TEST_SPLITS:
        raise ValueError(f"unknown test split {name!r}; choose one of {', '.join(TEST_SPLITS)}")
    return TEST_SPLITS[name]


def split_description(split: str, dataset: str) -> str:
    """What test split ``split`` is on ``dataset``, for captions: on a real annotations dataset its own name and
    file (``--split val_2`` on ActivityNet-CD is its test-iid, ``anet_test_iid.json``), else the generic text."""
    ts = test_split(split)
    source = SOURCES.get(dataset)
    if source is None or ts.key not in source.files:
        return ts.description
    return f"{source.labels[ts.key]} ({source.files[ts.key]}; metrics logged under {ts.prefix})"


def annotations_only(dataset: str) -> bool:
    """Whether ``dataset`` holds annotations only, so that its tables show no reference rows (unknown names: no)."""
    known = datasets.all_datasets().get(dataset)
    return known is not None and known.annotations_only


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
    # the method whose runs' mIoU fill this row's mIoU_finetune (Table 1's "mIoU (finetune)": the row's method with
    # its pre-trained speech encoder fine-tuned in grounding, bench.context.finetuned)
    finetune: str = ""
    blind: bool = False
    reference: bool = False  # a reference row of the suite (REFERENCE_METHODS): no paper line, labelled as such


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
                finetune=r.get("finetune", ""),
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
        if row.finetune and FINETUNE_METRIC not in table.metrics:
            raise ValueError(f"{path}: row {row.id!r} names a finetune method, but the table has no "
                             f"{FINETUNE_METRIC} column to fill")  # fmt: skip


def load_all() -> list[Table]:
    return [load_table(n) for n in TABLE_NUMBERS]


def rows_by_method() -> dict[str, tuple[tuple[int, str], ...]]:
    """Every method the tables name -> the rows it fills, ``(table number, row id)`` in table order, then row order.

    The one place that says which method fills which row (issue 16): a method's ``MethodSpec.rows``, the
    ``wsvg.rows`` tag of its runs and the tables column of ``bench methods`` are all read from here, so a row typed
    into ``tables/*.toml`` is a row of its method without a second list to keep in step.
    """
    out: dict[str, list[tuple[int, str]]] = {}
    for table in load_all():
        for row in table.rows:
            for method in (row.method, row.finetune):  # a row's fine-tuned variant fills the row too
                if method:
                    out.setdefault(method, []).append((table.number, row.id))
    return {method: tuple(rows) for method, rows in out.items()}


def named_methods() -> dict[str, Path]:
    """Every method the tables and ``figures.toml`` name -> the first file that names it, in table order, then
    the figures' curves: the methods that are runnable or planned (``methods.registry``)."""
    out = {method: table_path(rows[0][0]) for method, rows in rows_by_method().items()}
    path = TABLES_DIR / "figures.toml"
    try:
        figures = tomllib.loads(path.read_text(encoding="utf-8"))["figures"]
        curves = [series["method"] for figure in figures for series in figure["series"]]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: cannot read the figures' methods ({type(err).__name__}: {err}); see "
                         "tables/README.md") from None  # fmt: skip
    for method in curves:
        out.setdefault(method, path)
    return out


# ----------------------------------------------------------------------------------------------------
# Joining runs


@dataclass(frozen=True)
class Reproduced:
    """Mean ± sample std over seeds of one method's finished runs (fractions as logged); ``counts`` says over how
    many runs each metric was averaged (``n`` unless latency runs of other seeds supplied it)."""

    mean: dict[str, float]
    std: dict[str, float]
    seeds: list[int]
    commits: list[str]
    run_ids: list[str]
    dataset_hashes: list[str]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.seeds)

    def count(self, metric: str) -> int:
        return self.counts.get(metric, self.n)


def default_runs(runs):
    """The runs of each method's own configuration: the one rule of the tables, ``bench compare`` and the figures.

    A run that logged the ``overrides`` param is its method's own when the param is ``-`` (``bench run`` without a
    ``--set`` that changes the configuration). A run logged before the param existed is its method's own when the
    ``--set`` options its ``config/resolved.json`` records are none, so that an old sweep's run never stands in the
    method's cell; where that file cannot be read, nothing says otherwise and the run counts as its method's own."""
    if runs is None or not len(runs) or "params.method" not in runs:
        return runs
    logged = runs["params.overrides"] if "params.overrides" in runs else [None] * len(runs)
    uri = tracking.tracking_uri()
    own = [o == "-" if isinstance(o, str) else _legacy_own(uri, r) for r, o in zip(runs["run_id"], logged, strict=True)]
    return runs[own]


@functools.lru_cache(maxsize=4096)
def _legacy_own(uri: str, run_id: str) -> bool:
    """Whether a run logged before the ``overrides`` param was made without ``--set`` options (its resolved config,
    read once per store and run: a finished run's artifacts do not change)."""
    try:
        resolved = tracking.load_run_json(run_id, "config/resolved.json")
    except Exception:  # noqa: BLE001 - an unreadable or absent file says nothing against the run
        return True
    return not resolved.get("overrides")


def collect(runs, method: str, split: str = DEFAULT_SPLIT) -> Reproduced | None:
    """Aggregate the newest FINISHED run per seed of ``method`` in the ``runs`` DataFrame, on test split ``split``;
    only runs of the method's own configuration (:func:`default_runs`: a ``--set`` sweep is not the method's row).

    Latency measurements (``scripts/bench_latency.py``, param ``measure = latency``) are separate runs of the same
    method: they are aggregated apart and contribute only the metrics the accuracy runs lack (Table 2's latency and
    speed-up), so a newer latency run never hides a training run of the same seed. Robustness runs (``measure =
    robustness``, :mod:`bench.robustness`: the same weights on augmented test speech) are left out.
    """
    prefix = test_split(split).prefix
    if runs is None or len(runs) == 0 or "params.method" not in runs:
        return None
    mine = default_runs(runs[runs["params.method"] == method])
    if len(mine) == 0:
        return None
    if "params.measure" not in mine:
        return _aggregate(mine, prefix)
    measure = mine["params.measure"]
    out = _aggregate(mine[measure.isna()], prefix)
    for kind in LATENCY_MEASURES:  # each kind of latency run apart: a newer one never hides another kind's
        timing = _aggregate(mine[measure == kind], prefix)
        if out is None or timing is None:
            out = out or timing
            continue
        extra = [k for k in timing.mean if k not in out.mean]
        out = dataclasses.replace(
            out,
            mean={**out.mean, **{k: timing.mean[k] for k in extra}},
            std={**out.std, **{k: timing.std[k] for k in extra}},
            counts={**out.counts, **{k: timing.count(k) for k in extra}},
            commits=sorted(set(out.commits) | set(timing.commits)),
            run_ids=out.run_ids + timing.run_ids,
        )
    return out


def _aggregate(mine, prefix: str = "test/") -> Reproduced | None:
    if len(mine) == 0:
        return None
    mine = mine.sort_values("start_time", ascending=False).drop_duplicates("params.seed")
    mine = mine.sort_values("params.seed", key=lambda s: s.astype(int))
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for metric in METRIC_LABELS:
        col = f"metrics.{prefix}{tracking.mlflow_key(metric)}"
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
        counts=dict.fromkeys(mean, len(mine)),
    )


def with_finetuned(repro: Reproduced | None, tuned: Reproduced | None) -> Reproduced | None:
    """``repro`` with the fine-tuned runs' mIoU as its ``mIoU_finetune`` (their own n, which the cell names when it
    differs from the line's), their seeds, commits and run ids joined in; unchanged when there is none."""
    if tuned is None or "mIoU" not in tuned.mean:
        return repro
    cell = {"mean": {FINETUNE_METRIC: tuned.mean["mIoU"]}, "std": {FINETUNE_METRIC: tuned.std["mIoU"]},
            "counts": {FINETUNE_METRIC: tuned.count("mIoU")}}  # fmt: skip
    if repro is None:  # only the fine-tuned runs: the one cell, none of their other metrics
        return dataclasses.replace(tuned, **cell)
    return dataclasses.replace(
        repro,
        mean={**repro.mean, **cell["mean"]},
        std={**repro.std, **cell["std"]},
        counts={**repro.counts, **cell["counts"]},  # a metric with no count of its own has the line's n
        commits=sorted(set(repro.commits) | set(tuned.commits)),
        run_ids=repro.run_ids + tuned.run_ids,
        dataset_hashes=sorted(set(repro.dataset_hashes) | set(tuned.dataset_hashes)),
    )


@dataclass
class Rendered:
    """A table ready to print: header, body lines (each a list of cells) and caption.

    ``title`` heads the caption in LaTeX (whose ``\\caption`` numbers the table itself); ``n_reproduced`` counts
    the rows with at least one finished run, so that a caller can say when none matched.
    """

    header: list[str]
    lines: list[list[str]]
    caption: str
    provenance: list[str]
    align: str
    notes: list[str] = field(default_factory=list)
    title: str = ""
    n_reproduced: int = 0


def table_metrics(table: Table) -> list[str]:
    """The columns of ``table``: the paper's metrics, then in a grounding table our dR@1 columns right after the last
    R@1 column (they have no paper number) and the two diagnostics; a latency table also gets the latencies at the
    paper's sizes."""
    metrics = list(table.metrics)
    if "latency_s" in metrics:
        metrics += [m for m in PAPER_SIZE_METRICS if m not in metrics]
    if not table.is_grounding:
        return metrics
    r1 = [i for i, m in enumerate(metrics) if m.startswith("R1@")]
    at = r1[-1] + 1 if r1 else len(metrics)
    extra = [m for m in OURS_METRICS if m not in metrics]
    return metrics[:at] + extra + metrics[at:] + list(DIAGNOSTICS)


def header_label(metric: str) -> str:
    return METRIC_LABELS[metric] + (f" {OURS_MARK}" if metric in OURS_METRICS + PAPER_SIZE_METRICS else "")


def all_rows(table: Table, dataset: str) -> list[Row]:
    """The rows ``table`` shows on ``dataset``: the paper's, then (a grounding table) the blind and reference rows."""
    rows = list(table.rows)
    if table.is_grounding:
        rows += [
            Row(id=m, label=_blind_label(m, dataset), method=m, group="Blind rows (no video, no query)", blind=True)
            for m in BLIND_METHODS
        ]
        if not annotations_only(dataset):  # the references need video features; the oracle only runs on synth
            refs = [m for m in REFERENCE_METHODS if m != "oracle-concept" or dataset == "synth"]
            rows += [Row(id=m, label=_reference_label(m), method=m, group=REFERENCE_GROUP, reference=True)
                     for m in refs]  # fmt: skip
    return rows


def row_tags(number: int, method: str, dataset: str) -> dict[str, str]:
    """The tags that file a run of ``method`` under its row of table ``number``, for the MLflow UI.

    ``wsvg.table`` is the table's number, ``wsvg.row`` the row's id, ``wsvg.row_label`` its label as the table
    prints it, ``wsvg.row_index`` its place in the table (zero-padded, so that sorting on it in the UI keeps the
    table's order), and ``paper.<metric>`` each number the paper prints for it (metric names as MLflow spells them,
    ``R1_IoU0.5``). The paper's percentages are written as fractions, 65.62 as ``0.6562``, the unit of the run's own
    metric: the UI shows the two side by side. A method with no row in the table gets ``wsvg.row = -``; nothing
    reads these tags back into a table.
    """
    rows = all_rows(load_table(number), dataset)
    for index, row in enumerate(rows, start=1):
        if method in (row.method, row.finetune):
            tags = {"wsvg.table": str(number), "wsvg.row": row.id, "wsvg.row_label": row.label,
                    "wsvg.row_index": f"{index:02d}"}  # fmt: skip
            paper = {m: f"{v / 100:.4f}" if m in PERCENT_METRICS else f"{v:g}" for m, v in row.paper.items()}
            return {**tags, **{f"paper.{tracking.mlflow_key(m)}": v for m, v in paper.items()}}
    return {"wsvg.table": str(number), "wsvg.row": "-"}


def build(table: Table, dataset: str, profile: str, runs=None, split: str = DEFAULT_SPLIT) -> Rendered:
    """Lay out ``table`` with the paper's numbers and the runs of ``dataset``/``profile`` on test split ``split``."""
    test_split(split)
    if table.kind == "config":
        return _build_config(table)
    if runs is None:
        runs = tracking.finished_runs({"dataset": dataset, "profile": profile})
    rows = all_rows(table, dataset)
    metrics = table_metrics(table)
    info_keys = [k for k, _ in table.info]
    header = ["Method", *[label for _, label in table.info], "", *[header_label(m) for m in metrics]]
    lines: list[list[str]] = []
    provenance: list[str] = []
    seeds: set[int] = set()
    commits: set[str] = set()
    hashes: set[str] = set()
    group = None
    n_reproduced = 0
    for row in rows:
        if row.group and row.group != group:
            lines.append([f"*{row.group}*"] + [""] * (len(header) - 1))
            group = row.group
        info = [_info_cell(row.info.get(k, "")) for k in info_keys]
        ours_only = row.blind or row.reference  # no paper line, no Δ
        if not ours_only:
            lines.append([row.label, *info, "paper", *[_fmt(m, row.paper.get(m), scale=False) for m in metrics]])
        repro = collect(runs, row.method, split) if row.method else None
        tuned = collect(runs, row.finetune, split) if row.finetune else None  # _check: the table has the column
        repro = with_finetuned(repro, tuned)
        seeds.update(tuned.seeds if tuned is not None else [])
        label = row.label if ours_only else ""
        blank_info = info if ours_only else [""] * len(info)
        if row.not_reproducible:
            lines.append([label, *blank_info, "ours", *["n/a"] * len(metrics)])
            provenance.append(f"{row.id}: not reproducible ({row.not_reproducible})")
            continue
        if repro is None:
            lines.append([label, *blank_info, "ours", *["missing"] * len(metrics)])
        else:
            n_reproduced += 1
            seeds.update(repro.seeds)
            commits.update(repro.commits)
            hashes.update(repro.dataset_hashes)
            cells = [fmt_repro(m, repro) for m in metrics]
            lines.append([label, *blank_info, f"ours (n={repro.n})", *cells])
            provenance.append(f"{row.id}: runs {', '.join(repro.run_ids)}")
        if not ours_only:
            lines.append(["", *[""] * len(info), "Δ", *[_fmt_delta(m, row.paper.get(m), repro) for m in metrics]])
    caption = _caption(table, dataset, profile, split, sorted(seeds), sorted(commits), sorted(hashes))
    align = "l" * (len(info_keys) + 2) + "r" * len(metrics)
    return Rendered(header, lines, caption, provenance, align, table.notes, table.title, n_reproduced)


def _blind_label(method: str, dataset: str) -> str:
    """The blind row's label; the prior's names the split its span was tuned on (ActivityNet-CD: val)."""
    labels = {"random": "Random", "prior": f"Fixed-span prior ({tuned_on(dataset)})", "whole-video": "Whole video"}
    return labels[method]


def tuned_on(dataset: str) -> str:
    """The split the prior's span is tuned on, in ``dataset``'s own words: ``train``, or ``val`` on ActivityNet-CD."""
    source = SOURCES.get(dataset)
    return source.labels["train"] if source is not None else "train"


def _reference_label(method: str) -> str:
    return {
        "vslnet-text": "VSLNet, gold text (reference)",
        "2dtan-text": "2D-TAN, gold text (reference)",
        "oracle-concept": "Oracle: knows the planted concept (reference)",
    }[method]


def _build_config(table: Table) -> Rendered:
    header = ["Setting", *table.columns]
    lines = [[r.label, *[_config_cell(r.values.get(c)) for c in table.columns]] for r in table.rows]
    caption = f"The SIL paper's (ACL 2023) Table {table.number}, a configuration table: no runs enter it."
    return Rendered(header, lines, caption, [], "l" * len(header), table.notes, table.title)


def _config_cell(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:g}" for v in value) + "]"
    return "" if value is None else str(value)


DELTA_SENTENCE = " Δ = ours − paper."
LATEX_LINES_SENTENCE = (
    " Each method has two lines: ours (mean ± std, n seeds), then the paper's number (the Markdown table adds"
    " Δ = ours − paper)."
)
UNITS_SENTENCE = (
    " Recalls, IoUs and the diagnostics are in percent; the tracked runs log them as fractions (MLflow's"
    " test/R1_IoU0.5 = 0.3026 is 30.26 here)."
)


def _caption(
    table: Table, dataset: str, profile: str, split: str, seeds: list[int], commits: list[str], hashes: list[str]
) -> str:
    """The caption under the table (its title is the heading above it, or LaTeX's caption head: not repeated)."""
    seed_text = ", ".join(map(str, seeds)) if seeds else "none"
    text = (
        f"'paper': the numbers SIL (ACL 2023) reports in its Table {table.number} on "
        f"{table.paper_dataset or 'its data'}. "
        f"'ours': finished runs on dataset {dataset}"
        f"{' (content hash ' + ', '.join(hashes) + ')' if hashes else ''}, profile {profile}, seeds {seed_text}, "
        f"commit {', '.join(commits) if commits else 'none'}, scored on test split {split_description(split, dataset)};"
        " each cell is the mean ± sample standard deviation over the n seeds of its line, ours (n=...); a single"
        f" seed (n=1) shows its one value. 'missing' means no finished run logged that metric.{DELTA_SENTENCE}"
    )
    if set(table.metrics) & PERCENT_METRICS:
        text += UNITS_SENTENCE
    if dataset == "synth":
        text += (
            " The synthetic benchmark is not ActivityNet Speech: its numbers are not a reproduction of the"
            " paper, and Δ compares two different benchmarks."
        )
    if dataset == SPEECH_DATASET:
        sizes = ("the paper's settings (App. B.2), so that Δ compares like with like" if profile == "paper" else
                 f"profile {profile}, not the paper's sizes (App. B.2 is --profile paper): the real data path run,"
                 " its numbers not a reproduction of the paper")  # fmt: skip
        text += (
            " The 'ours' lines are real-data results: computed on ActivityNet Speech from a local data root (its C3D"
            " features and spoken queries; train / val_1 / val_2, the train split's empty or reversed spans"
            " dropped: four in ActivityNet's train.json;"
            f" pre-training on LibriSpeech's 960 h), scored on val_2, the paper's test split; at {sizes}."
        )
    source = SOURCES.get(dataset)
    if source is not None:
        text += (
            f" The 'ours' lines are real-data rows: computed on the real {source.title} annotations (nothing else: no"
            f" video features, no speech); {source.about}. Only the blind rows can run on this dataset."
            f" {source.versus_paper}"
        )
    if table.is_grounding:
        text += (
            f" {OURS_MARK} Columns of this suite, not of the paper (no paper number): dR@1 IoU=m is the discounted"
            " recall of Yuan et al. 2021, each R@1 hit weighted by (1 − |Δstart|)(1 − |Δend|) with Δ in fractions"
            " of the video. IoU ties with a threshold are decided exactly (bench.evaluate)."
            " Blind rows see neither video nor query; the fixed-span prior is the span chosen on"
            f" {tuned_on(dataset)} for R@1 IoU=0.5 (the priors tuned for the other metrics are in `bench report`)."
            " centre-in: share of queries whose top-1 centre lies inside the true moment; pred. len: mean top-1"
            " length as a share of the video."
        )
    if FINETUNE_METRIC in table.metrics:
        text += (
            " mIoU (finetune): the mIoU of the row's runs with its pre-trained speech encoder fine-tuned on the"
            " grounding data (the row's '-ft' method); a cell whose number of seeds differs from its line's names it."
        )
    if table.is_grounding and not annotations_only(dataset):  # build() shows no references on annotations only
        text += (
            " References are rows of this suite, not of the paper, and not under test: VSLNet and 2D-TAN trained"
            " with full supervision on the gold transcript (ceilings for a method that reads the words), and on the"
            " synthetic benchmark an oracle that knows the planted concept (what the clip features allow)."
        )
    if "latency_s" in table.metrics:
        text += (
            f" Latency: seconds per query at batch 1, pre-processing excluded (scripts/bench_latency.py); speed-up ="
            f" ASR-Base's latency over the row's. 'ours' Latency / Speed-up: the systems at the profile's sizes with"
            f" their trained weights where cached; {OURS_MARK} at the paper's sizes: the same three systems rebuilt at"
            " the paper's architecture sizes (wav2vec2-base, d = 256, 64 clips; fresh weights, latency does not"
            " depend on them), timed beside each other on the same queries. The paper's speed-ups are on a GPU."
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
    """``mean ± std`` in the table's units, the single value when one seed gave it (a std of one run is not 0), or
    ``missing`` when some seed lacks the metric. A count other than the line's n is named: ``0.016 (n=1)``."""
    if metric not in repro.mean:
        return "missing"
    count = repro.count(metric)
    mean = _fmt(metric, repro.mean[metric], True)
    text = mean if count == 1 else f"{mean} ± {_fmt(metric, repro.std[metric], True)}"
    return text if count == repro.n else f"{text} (n={count})"


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
    "|": r"$|$",  # the default OT1 font has no |, < or >: they would print as an em dash, ¡ and ¿
    "<": r"$<$",
    ">": r"$>$",
}
_LATEX_SYMBOLS = {
    "±": r"$\pm$",
    "✓": r"\checkmark",
    "✗": r"$\times$",
    "Δ": r"$\Delta$",
    "–": "--",
    "−": "$-$",
    "†": r"$^\dagger$",
    "≈": r"$\approx$",
}
_LOSS = re.compile(r"\bL_([A-Za-z](?:[A-Za-z-]*[A-Za-z])?)")
r"""A loss as the tables type it (``L_sem``, ``L_dis-s``): printed as math, ``$\mathcal{L}_{\mathrm{sem}}$``."""
_MINUS = re.compile(r"(?<![\w-])-(?=\.?\d)")
"""A minus sign before a number (``-1.23``, ``[-2, 2]``), not a hyphen inside a word (``Fixed-span``)."""


def latex_escape(text: str) -> str:
    """``text`` for LaTeX: special characters escaped, losses as math, minus signs of numbers as math minus."""
    parts = []
    at = 0
    for m in _LOSS.finditer(text):
        parts += [_latex_plain(text[at : m.start()]), rf"$\mathcal{{L}}_{{\mathrm{{{m.group(1)}}}}}$"]
        at = m.end()
    parts.append(_latex_plain(text[at:]))
    return "".join(parts)


def _latex_plain(text: str) -> str:
    out = _MINUS.sub("\0", "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)).replace("\0", "$-$")
    for sym, rep in _LATEX_SYMBOLS.items():
        out = out.replace(sym, rep)
    return out


LATEX_PACKAGES = "booktabs,amssymb"
"""What the LaTeX output needs (``\\toprule``..., ``\\checkmark``); its first line says so."""
LATEX_TEXT_WIDTH_PT = 345.0
"""The text width of a plain ``article`` (10 pt, letter or A4): every tabular of the output fits it."""
_ADVANCE = {
    **dict.fromkeys("0123456789", 4.25), ".": 2.4, ",": 2.4, " ": 2.8, "(": 3.1, ")": 3.1, "=": 6.2, "+": 6.2,
    "-": 2.7, ":": 2.2, "'": 2.2, "/": 4.0, "@": 6.2, "±": 6.6, "†": 4.0, "✓": 6.7, "✗": 6.2, "Δ": 6.9, "≈": 6.2,
    "–": 4.0, "m": 6.7, "w": 5.8, "a": 4.3, "A": 6.2,
}  # fmt: skip
"""Advances in points of 8 pt Computer Modern (the classes: lower-case letters "a", capitals and the rest "A")."""
_COLSEP_PT = 2 * 3.0  # \tabcolsep is set to 3 pt
_WRAP_LABEL, _WRAP_HEADER = 20, 9  # characters per line of a wrapped label or metric header


def _stack(lines: list[str], align: str = "l") -> str:
    """Several lines in one cell (a nested tabular: no package needed)."""
    return (
        lines[0]
        if len(lines) == 1
        else rf"\begin{{tabular}}[t]{{@{{}}{align}@{{}}}}" + r" \\ ".join(lines) + (r"\end{tabular}")
    )


def _wrapped(text: str, width: int, hyphens: bool = False) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, break_on_hyphens=hyphens, break_long_words=False) or [""]


def _header_lines(r: Rendered, col: int) -> list[str]:
    """A header cell's lines: the method column's label whole, the others wrapped to a narrow column."""
    return [r.header[col]] if col == 0 else _wrapped(r.header[col], _WRAP_HEADER, hyphens=True)


def _width(lines: list[str]) -> float:
    """An estimate of a cell's width in points at \\footnotesize (8 pt Computer Modern), from its raw text: the
    advances of its characters by class, a loss (``L_sem``) as its math form, and 3 % to spare (within 3 % of
    pdflatex's widths where measured, above them for numbers)."""

    def line(text: str) -> float:
        text = _LOSS.sub(lambda m: "L" + "x" * max(1, round(len(m.group(1)) * 0.7)), text)  # subscripts are small
        return sum(_ADVANCE.get(ch, _ADVANCE["a"] if ch.islower() else _ADVANCE["A"]) for ch in text)

    return 1.03 * max(line(li) for li in lines)


def _methods(r: Rendered, n_left: int) -> list[tuple[str, list[list[str]]]]:
    """Regroup the Markdown layout's lines (paper, ours, Δ per row) into LaTeX blocks: ``("group", [[title]])`` or
    ``("row", [ours line, paper line])`` with the ours line first and the row's label and info on it; Δ dropped."""
    blocks: list[tuple[str, list[list[str]]]] = []
    paper: list[str] | None = None
    for line in r.lines:
        kind = line[n_left - 1]
        if line[0].startswith("*") and not any(line[1:]):
            blocks.append(("group", [[line[0].strip("*")]]))
        elif kind == "paper":
            paper = line
        elif kind == "Δ":
            continue
        elif paper is not None:  # the ours line of a paper row: label and info from the paper line
            ours = [*paper[: n_left - 1], *line[n_left - 1 :]]
            blocks.append(("row", [ours, ["", *[""] * (n_left - 2), "paper", *paper[n_left:]]]))
            paper = None
        else:  # a blind or reference row: ours only
            blocks.append(("row", [line]))
    return blocks


def _parts(r: Rendered, n_left: int, blocks) -> list[list[int]]:
    """Column indices of each tabular: the label and kind columns, then as many metric columns as fit the text
    width; the info columns go with the first part, or into a part of their own when the metrics would not fit."""
    rows = [line for kind, lines in blocks if kind == "row" for line in lines]

    def width(col: int) -> float:
        cells = [_wrapped(line[col], _WRAP_LABEL) if col == 0 else [line[col]] for line in rows]
        return max(_width(c) for c in [*cells, _header_lines(r, col)]) + _COLSEP_PT

    fixed = [0, n_left - 1]
    info = list(range(1, n_left - 1))
    metrics = list(range(n_left, len(r.header)))
    budget = LATEX_TEXT_WIDTH_PT + _COLSEP_PT  # no \tabcolsep outside the first and last column (@{})
    base = sum(width(c) for c in fixed)
    parts: list[list[int]] = []
    current = [0, *info, n_left - 1]
    used = base + sum(width(c) for c in info)
    for col in metrics:
        w = width(col)
        if used + w > budget and current[-1] != fixed[-1]:
            parts.append(current)
            current, used = list(fixed), base
        elif used + w > budget:  # the info columns fill the page: a part of their own, without kind
            parts.append(current[:-1])
            current, used = list(fixed), base
        current.append(col)
        used += w
    parts.append(current)
    return parts


def _described(blocks, n_left: int):
    """The blocks of the rows with a description (info cells), each group kept only if one of its rows is."""
    kept, group = [], None
    for kind, lines in blocks:
        if kind == "group":
            group = (kind, lines)
        elif any(lines[0][1 : n_left - 1]):
            if group is not None:
                kept.append(group)
                group = None
            kept.append((kind, lines))
    return kept


LATEX_TEXT_HEIGHT_PT = 550.0
"""The text height of a plain ``article`` (10 pt, letter paper; A4 has 598 pt): no float of the output is taller."""
_LINE_PT = 9.5  # \footnotesize's baselineskip
_HEIGHT_SPARE = 1.15  # the estimates below are short of pdflatex's heights by up to 12 % (struts, nested tabulars)
_RULES_PT = 12.0  # booktabs' three rules and their spacing, and the \medskip between two tabulars in a float


def _segment_lines(segment: tuple[list[int], list]) -> list[tuple[str, list[str], int]]:
    """What a tabular of ``segment`` (its columns and blocks) prints: ``(kind, cells, index of the line in its
    block)``, in order."""
    cols, blocks = segment
    return [(kind, line, j) for kind, lines in blocks for j, line in enumerate(lines)]


def _height(r: Rendered, cols: list[int], blocks) -> float:
    """An estimate of a tabular's height in points: its header, each line (a wrapped label counts its lines)."""
    head = max(len(_header_lines(r, c)) for c in cols)
    body = sum(len(_wrapped(line[0], _WRAP_LABEL)) if kind == "row" and 0 in cols else 1
               for kind, lines in blocks for line in lines)  # fmt: skip
    return _HEIGHT_SPARE * ((head + body) * _LINE_PT + _RULES_PT)


def _caption_height(text: str) -> float:
    """Lines of ``text`` set in the text width, 10 % lost at line ends, and the caption's skip above."""
    return _HEIGHT_SPARE * (math.ceil(1.1 * _width([text]) / LATEX_TEXT_WIDTH_PT) + 2) * _LINE_PT


def _floats(r: Rendered, parts: list[list[int]], blocks, n_left: int, caption: str) -> list[list[tuple]]:
    """The floats: each a list of tabulars ``(columns, blocks)``; a column part whose rows do not fit one page
    goes on in the next float (its group title repeated), and tabulars share a float while they fit the page
    height, the first float holding the caption too."""
    segments: list[tuple[list[int], list]] = []
    for cols in parts:
        rows = _described(blocks, n_left) if n_left - 1 not in cols else blocks
        rows = [(kind, lines[:1]) for kind, lines in rows] if n_left - 1 not in cols else rows
        chunk: list = []
        group = None
        budget = LATEX_TEXT_HEIGHT_PT - _caption_height(caption if not segments else r.title + " (continued).")
        for block in rows:
            if block[0] == "group":
                group = block
            if chunk and _height(r, cols, [*chunk, block]) > budget:
                segments.append((cols, chunk))
                chunk = [group] if group is not None and block is not group else []
                budget = LATEX_TEXT_HEIGHT_PT - _caption_height(r.title + " (continued).")
            chunk.append(block)
        segments.append((cols, chunk))
    floats: list[list[tuple]] = []
    used = 0.0
    for segment in segments:
        h = _height(r, *segment)
        reserve = _caption_height(caption if len(floats) == 1 else r.title + " (continued).")  # the open float's
        if floats and used + h + reserve <= LATEX_TEXT_HEIGHT_PT:
            floats[-1].append(segment)
            used += h
        else:
            floats.append([segment])
            used = h
    return floats


def to_latex(r: Rendered, label: str) -> str:
    """Booktabs tabulars that fit a plain article's page (needs ``\\usepackage{booktabs,amssymb}``).

    A compact layout, unlike the Markdown one: per method one line of ours (the label and ``ours (n=...)``) and
    under it the paper's number; no Δ line. A table with more columns than fit the text width is split into several
    tabulars, each repeating the method labels (the info columns in the first, or alone when they fill the width);
    tabulars taller than the page go on in further floats of the same number ("continued"). The first float holds
    the caption and the label. Provenance and the notes on the paper's table come as ``%`` comments.
    """
    n_left = len(r.align) - len(r.align.lstrip("l")) if "r" in r.align else len(r.align)
    caption = _latex_caption(r)
    if "r" not in r.align:  # a configuration table (Table 7): as it is
        blocks = [("row", [line]) for line in r.lines]
        floats = [[(list(range(len(r.header))), blocks)]]
    else:
        blocks = _methods(r, n_left)
        floats = _floats(r, _parts(r, n_left, blocks), blocks, n_left, caption)
    out = [rf"% needs \usepackage{{{LATEX_PACKAGES}}}"]
    for f, segments in enumerate(floats):
        out += [r"\begin{table*}[tbp]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{3pt}"]
        for i, (cols, rows) in enumerate(segments):
            if i:
                out.append(r"\par\medskip")
            out += [rf"\begin{{tabular}}{{@{{}}{''.join(r.align[c] for c in cols)}@{{}}}}", r"\toprule"]
            head = [_stack([latex_escape(x) for x in _header_lines(r, c)], r.align[c]) for c in cols]
            out += [" & ".join(head) + r" \\", r"\midrule"]
            for kind, line, j in _segment_lines((cols, rows)):
                if kind == "group":
                    title = line[0].split(" (")[0]  # the caption explains the group; a long title would not fit
                    out.append(rf"\multicolumn{{{len(cols)}}}{{l}}{{\textit{{{latex_escape(title)}}}}} \\")
                    continue
                cells = []
                for c in cols:
                    cell = _stack([latex_escape(x) for x in _wrapped(line[c], _WRAP_LABEL)]) if c == 0 else (
                        latex_escape(line[c]))  # fmt: skip
                    cells.append(rf"\textit{{{cell}}}" if j and cell else cell)
                out.append(" & ".join(cells) + r" \\")
            out += [r"\bottomrule", r"\end{tabular}"]
        if f == 0:
            out += [rf"\caption{{{latex_escape(caption)}}}", rf"\label{{{label}}}"]
        else:  # the same number again
            out += [r"\addtocounter{table}{-1}", rf"\caption{{{latex_escape(r.title or 'Table')} (continued).}}"]
        out.append(r"\end{table*}")
    out += [f"% {p}" for p in r.provenance]
    out += [f"% Note on the paper's table: {n}" for n in r.notes]
    return "\n".join(out) + "\n"


def _latex_caption(r: Rendered) -> str:
    """LaTeX numbers the table itself ("Table 3:"), so the caption starts with the title, not a second number; and
    its lines are ours then the paper's, without the Markdown's Δ line."""
    caption = r.caption.replace(DELTA_SENTENCE, LATEX_LINES_SENTENCE)
    return f"{r.title}. {caption}" if r.title else caption


def render(
    number: int, fmt: str = "md", dataset: str = "synth", profile: str = "small", runs=None, split: str = DEFAULT_SPLIT
) -> str:
    table = load_table(number)
    rendered = build(table, dataset, profile, runs, split)
    if fmt == "md":
        return f"### Table {number}: {table.title}\n\n" + to_markdown(rendered)
    if fmt == "latex":
        return to_latex(rendered, label=f"tab:sil-{number}")
    raise ValueError(f"unknown format {fmt!r}; choose md or latex")


def held(store=None) -> str:
    """What the tracking store holds, for a reader choosing ``--dataset`` and ``--profile``: ``synth/small (12
    runs), activitynet-captions/small (8 runs)``, or ``no finished run``."""
    store = tracking.finished_runs() if store is None else store
    if store is None or len(store) == 0 or "params.dataset" not in store:
        return "no finished run"
    counts = store.groupby(["params.dataset", "params.profile"]).size()
    return ", ".join(f"{d}/{p} ({n} run{'s' * (n != 1)})" for (d, p), n in counts.items())


def empty_hint(
    number: int, dataset: str, profile: str, split: str = DEFAULT_SPLIT, runs=None, store=None
) -> str | None:
    """What to say when table ``number`` finds no finished run for ``dataset``/``profile``/``split``: what the
    tracking store holds instead and how to show it; ``None`` when some row has runs (or the table takes none).

    ``runs`` are the store's finished runs of ``dataset``/``profile`` and ``store`` all of them (both read from the
    store when not given).
    """
    table = load_table(number)
    if table.kind == "config":
        return None
    rendered = build(table, dataset, profile, runs, split)
    if rendered.n_reproduced:
        return None
    store = tracking.finished_runs() if store is None else store
    shown = f"dataset {dataset}, profile {profile}, test split {split}"
    if store is None or len(store) == 0 or "params.dataset" not in store:
        return (
            f"Table {number}: no finished run for {shown}; the tracking store {tracking.tracking_uri()} holds no "
            f"finished run at all. `bench run --table {number} --dataset {dataset} --profile {profile}` makes them."
        )
    counts = store.groupby(["params.dataset", "params.profile"]).size()
    text = f"Table {number}: no finished run of its rows for {shown}. The store holds finished runs of {held(store)}"
    if (dataset, profile) in counts.index:
        text += f"; those of {dataset}/{profile} are of other methods or logged no {test_split(split).prefix} metrics"
    return text + ". Choose with --dataset, --profile and --split."
