"""``bench run --table N`` in a real MLflow store: one parent run per invocation, a child per row and seed (issue 18).

The parent is a folder for the UI and nothing else: tables, ``bench compare`` and the resume of killed runs read the
child runs exactly as they read runs without a parent, and never the parent itself.
"""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pytest

from bench import compare, run, tables, tracking, views


def _all_runs() -> list:
    mlflow.set_tracking_uri(tracking.tracking_uri())
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def _split(runs: list) -> tuple[list, list]:
    parents = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == tracking.TABLE_KIND]
    return parents, [r for r in runs if r not in parents]


def test_a_table_invocation_is_one_parent_run_with_a_child_per_seed(home, toy_method):
    outcomes = run.run([toy_method], dataset="synth", profile="tiny", seeds=[0, 1], device="cpu", table=1)
    assert [o.status for o in outcomes] == ["FINISHED", "FINISHED"]

    (parent,), children = _split(_all_runs())
    assert parent.info.status == "FINISHED" and parent.data.params == {} and parent.data.metrics == {}
    assert parent.data.tags["wsvg.table"] == "1" and parent.data.tags["wsvg.seeds"] == "0,1"
    assert sorted(c.info.run_id for c in children) == sorted(o.run_id for o in outcomes)
    for child in children:
        tags = child.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["wsvg.table"] == "1" and tags["wsvg.row"] == "base" and tags["wsvg.row_label"] == "Base"
        # Table 1's Base row: R@1 IoU=0.5 24.20 in the paper, tagged in the unit of the run's own metric
        assert tags["paper.R1_IoU0.5"] == "0.2420" and tags["paper.mIoU"] == "0.2844"
        index = [r.method for r in tables.all_rows(tables.load_table(1), "synth")].index("base") + 1
        assert tags["wsvg.row_index"] == f"{index:02d}"


def test_tables_and_compare_read_the_children_and_never_the_parent(home, toy_method):
    run.run([toy_method], dataset="synth", profile="tiny", seeds=[0, 1], device="cpu", table=1)
    run.run([toy_method], dataset="synth", profile="tiny", seeds=[2], device="cpu")  # no --table: no parent

    finished = tracking.finished_runs()
    assert len(finished) == 3 and set(finished["params.method"]) == {"base"}
    assert len(tracking.finished_runs({"dataset": "synth", "profile": "tiny"})) == 3
    assert "ours (n=3)" in tables.render(1, "md", "synth", "tiny")
    assert list(compare.newest_runs(finished, "base")) == [0, 1, 2]


def test_a_failed_row_fails_its_parent_and_enters_no_table(home, toy_method, monkeypatch):
    import dataclasses

    failing = dataclasses.replace(toy_method, config=lambda profile: dataclasses.replace(toy_method.config(profile),
                                                                                         fail=True))  # fmt: skip
    outcomes = run.run([failing], dataset="synth", profile="tiny", seeds=[0], device="cpu", table=1)
    assert [o.status for o in outcomes] == ["FAILED"]
    (parent,), (child,) = _split(_all_runs())
    assert parent.info.status == "FAILED" and child.info.status == "FAILED"
    assert len(tracking.finished_runs()) == 0


def test_a_parent_left_running_by_a_dead_process_is_closed_by_the_next_invocation(home, toy_method):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with tracking.start_table_run(1, "Table 1", {}) as stale:
        pass
    client = mlflow.MlflowClient(tracking.tracking_uri())
    client.update_run(stale.run_id, "RUNNING")  # what a kill -9 leaves: RUNNING, owned by a process that is gone
    client.set_tag(stale.run_id, "wsvg.pid", str(dead.pid))

    run.run([toy_method], dataset="synth", profile="tiny", seeds=[0], device="cpu", table=1)
    assert client.get_run(stale.run_id).info.status == "KILLED"
    parents, _ = _split(_all_runs())
    assert sorted(p.info.status for p in parents) == ["FINISHED", "KILLED"]


def test_a_tables_saved_view_selects_its_rows_in_the_tables_order(home, toy_method):
    """The view's filter and sort, run through MLflow's search as the UI runs them, give the rows and no parent."""
    import dataclasses

    from bench import context as spec_store

    sil = dataclasses.replace(toy_method, name="sil")  # the stand-in again, as Table 1's last row
    spec_store._REGISTRY["sil"] = sil  # the fixture's registry, restored after the test
    run.run([sil, toy_method], dataset="synth", profile="tiny", seeds=[0, 1], device="cpu", table=1)
    run.run([toy_method], dataset="synth", profile="tiny", seeds=[0], device="cpu", table=3)
    pages = views.save([1])
    assert pages == {"table-1": "/#/experiments/1/runs?viewStateShareKey=table-1"}

    exp = mlflow.MlflowClient(tracking.tracking_uri()).get_experiment_by_name(tracking.EXPERIMENT)
    state = json.loads(exp.tags[views.SHARED_VIEW_TAG + "table-1"])
    columns = state["selectedColumns"]
    assert columns[:3] == ["tags.`wsvg.row_label`", "params.`method`", "params.`seed`"]
    assert columns.index("metrics.`test/R1_IoU0.5`") + 1 == columns.index("tags.`paper.R1_IoU0.5`")
    order = state["orderByKey"] + (" ASC" if state["orderByAsc"] else " DESC")
    shown = mlflow.search_runs([exp.experiment_id], state["searchFilter"], order_by=[order], output_format="list")
    assert [r.data.params["method"] for r in shown] == ["base", "base", "sil", "sil"]  # Table 1's order, not the run's
    assert all(r.data.params["table"] == "1" and "mlflow.parentRunId" in r.data.tags for r in shown)


@pytest.mark.parametrize("number", [n for n in tables.TABLE_NUMBERS if tables.load_table(n).kind != "config"])
def test_every_views_columns_name_metrics_the_runs_log(number):
    """A column the runs never log would show empty: every metric column is a test/ metric of the table's columns."""
    state = views.table_view(number)
    metric_columns = [c for c in state["selectedColumns"] if c.startswith("metrics.")]
    table = tables.load_table(number)
    assert metric_columns == [f"metrics.`test/{tracking.mlflow_key(m)}`" for m in views.headline_metrics(table)]
    assert metric_columns, f"table {number}'s view shows no metric"
