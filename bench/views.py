"""Saved views of the MLflow UI: one per paper table, its rows lined up with their R@1 beside the paper's.

Why they are needed. MLflow's runs table opens with the columns Source, Models and Dataset, fixed in the UI's own
code (MLflow 3.17): no server option and no tag of ours changes that default, so a fresh browser shows no param and
no metric of the suite. What the UI does read from the store is a *shared view*: a view state saved as the
experiment tag ``mlflow.sharedViewState.<key>`` (what its "Share" button writes) and opened by the URL
``#/experiments/<id>/runs?viewStateShareKey=<key>``. The suite writes one per table (key ``table-N``) and one of every
run (key ``runs``); ``bench ui`` writes them all and prints their addresses, ``bench run --table N`` writes table N's.

A table's view selects the child runs of ``bench run --table N`` invocations (the param ``table = N``; the parent
runs have no params, so the rows are listed flat rather than folded under their invocation), sorted in the table's
order (the tag ``wsvg.row_index``, :func:`bench.tables.row_tags`), with the columns row, method, seed, then per
headline metric ours on the test split and the paper's number. A run made with ``--method M`` alone is not in it
(no ``table`` param), though ``bench table N`` counts it; the ``runs`` view shows every run.

The state is plain JSON, which the UI accepts beside its own compressed form. The keys used are those the UI's
loader takes from a shared state (search facets ``searchFilter``, ``orderByKey``, ``orderByAsc``, ``startTime``,
``lifecycleFilter``; UI state ``selectedColumns``); it drops what a view cannot share (which runs are expanded,
pinned or hidden). Column ids are the UI's: ``params.`method```, ``metrics.`test/R1_IoU0.5```, ``tags.`wsvg.row```.

What a view cannot change: the compare page (runs side by side, "Compare" in the runs table) lists params, metrics
and tags sorted by name in the UI's code (JavaScript's default sort: code-unit order), so a run that pre-trained a
stage shows its ``asp/...`` curves above ``test/...``; its "Show diff only" switch, on by default, drops the rows
that are equal across the compared runs. The suite's metric names stay as they are: tables and old stores read them.
"""

from __future__ import annotations

import json
from typing import Any

from bench import tables, tracking

SHARED_VIEW_TAG = "mlflow.sharedViewState."
"""The experiment tag prefix under which the UI looks up ``?viewStateShareKey=<key>``."""
ALL_RUNS = "runs"


def _param(name: str) -> str:
    return f"params.`{name}`"


def _tag(name: str) -> str:
    return f"tags.`{name}`"


def _metric(name: str) -> str:
    return f"metrics.`{name}`"


def headline_metrics(table: tables.Table) -> list[str]:
    """The metrics a table's view shows: R@1 at each IoU and mIoU for a grounding table, else the table's own."""
    metrics = tables.table_metrics(table)
    if not table.is_grounding:
        return metrics
    return [m for m in metrics if m.startswith("R1@") or m == "mIoU"]


def table_key(number: int) -> str:
    return f"table-{number}"


def table_view(number: int) -> dict[str, Any]:
    """The view state of table ``number``: its runs in the table's order, ours beside the paper's per metric."""
    table = tables.load_table(number)
    columns = [_tag("wsvg.row_label"), _param("method"), _param("seed"), _param("dataset"), _param("profile")]
    for metric in headline_metrics(table):
        key = tracking.mlflow_key(metric)
        columns += [_metric(f"test/{key}"), _tag(f"paper.{key}")]
    return {
        "searchFilter": f"params.table = '{number}'",
        "orderByKey": _tag("wsvg.row_index"),
        "orderByAsc": True,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "selectedColumns": columns,
        "columnOrder": columns,
    }


def all_runs_view() -> dict[str, Any]:
    """The view of every run, newest first: what it ran (method, dataset, profile, seed, table, row) and R@1."""
    columns = [_param(p) for p in ("method", "dataset", "profile", "seed", "table")] + [_tag("wsvg.row")]
    columns += [_metric(f"test/{tracking.mlflow_key(m)}") for m in ("R1@0.5", "R1@0.7", "mIoU")]
    return {
        "searchFilter": "",
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "selectedColumns": columns,
        "columnOrder": columns,
    }


def views(numbers: list[int] | None = None) -> dict[str, dict[str, Any]]:
    """Key -> view state: table ``numbers`` (default every results table) and, with no numbers given, every run."""
    chosen = [n for n in (numbers or tables.TABLE_NUMBERS) if tables.load_table(n).kind != "config"]
    out = {table_key(n): table_view(n) for n in chosen}
    if numbers is None:
        out[ALL_RUNS] = all_runs_view()
    return out


def save(numbers: list[int] | None = None) -> dict[str, str]:
    """Write the views (:func:`views`) as experiment tags; return key -> the path of its page on a UI server.

    Writing them again is harmless (an experiment tag is set, not appended), so every ``bench run --table N`` and
    every ``bench ui`` writes what it needs and a view always matches the suite's current column names.
    """
    chosen = views(numbers)
    tags = {SHARED_VIEW_TAG + key: json.dumps(state, separators=(",", ":")) for key, state in chosen.items()}
    exp_id = tracking.set_experiment_tags(tags)
    return {key: view_path(exp_id, key) for key in chosen}


def view_path(experiment_id: str, key: str) -> str:
    """The page of view ``key``, relative to the UI's address (the UI routes after ``#``).

    It names the runs tab: MLflow 3 opens an experiment on a GenAI traces overview otherwise (its "GenAI" mode, the
    default of a fresh browser), where the view does not apply.
    """
    return f"/#/experiments/{experiment_id}/runs?viewStateShareKey={key}"
