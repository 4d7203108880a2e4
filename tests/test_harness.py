"""``bench run`` end to end with a test-only method: tracking, FAILED runs, tables from runs, the CLI."""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path

import pytest

from bench import cli, run, tables, tracking
from bench.data import captions

IOU = [1.0, 50 / 60, 50 / 70]  # top-1 IoU of the test method for seeds 0, 1, 2 (see conftest.shift_run)


def test_run_logs_params_metrics_and_artifacts(home, toy_method):
    outcomes = run.run(
        [toy_method], dataset="synth", profile="tiny", seeds=[0, 1, 2], device="cpu", table=1, progress=False
    )
    assert [o.status for o in outcomes] == ["FINISHED"] * 3
    runs = tracking.finished_runs({"method": "base"})
    assert len(runs) == 3
    assert sorted(runs["params.seed"]) == ["0", "1", "2"]
    assert set(runs["params.dataset_hash"]) == {"toyhash00001"}
    assert set(runs["params.profile"]) == {"tiny"}
    assert set(runs["params.table"]) == {"1"}
    for key in ("commit", "dirty", "config_hash", "version.torch", "version.mlflow", "evaluator"):
        assert f"params.{key}" in runs and runs[f"params.{key}"].notna().all()
    by_seed = runs.set_index("params.seed")
    for seed, iou in enumerate(IOU):
        assert by_seed.loc[str(seed), "metrics.test/mIoU"] == pytest.approx(iou)
    # the @ of R1@0.5 becomes _IoU in MLflow keys
    assert by_seed.loc["1", "metrics.test/R1_IoU0.7"] == 1.0  # 0.833 > 0.7
    assert by_seed.loc["2", "metrics.test/R1_IoU0.7"] == 1.0  # 0.714 > 0.7
    assert by_seed.loc["0", "metrics.val_best/R1_IoU0.5"] == 0.5
    assert (home / "mlflow.db").exists()
    # the resolved config and the predictions file are artifacts of each run
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri())
    files = {a.path for a in mlflow.MlflowClient().list_artifacts(runs.iloc[0]["run_id"], "config")}
    assert "config/resolved.json" in files
    preds = mlflow.MlflowClient().list_artifacts(runs.iloc[0]["run_id"], "predictions")
    assert [p.path for p in preds] == ["predictions/test_predictions.jsonl"]
    history = mlflow.MlflowClient().get_metric_history(runs.iloc[0]["run_id"], "val/R1_IoU0.5")
    assert [(m.step, m.value) for m in history] == [(0, 0.0), (1, 0.5)]


def test_artifacts_stay_in_the_run_directory(home, toy_method, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run.run([toy_method], dataset="synth", profile="tiny", seeds=[0], device="cpu", progress=False)
    runs = tracking.finished_runs()
    assert runs.iloc[0]["artifact_uri"].startswith(str(home / "mlartifacts"))
    assert not (tmp_path / "mlruns").exists()
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_failed_run_is_failed_and_never_enters_a_table(home, toy_method, monkeypatch, capsys):
    ok = run.run([toy_method], dataset="synth", profile="tiny", seeds=[0], device="cpu", progress=False)
    bad = run.run(
        [toy_method],
        dataset="synth",
        profile="tiny",
        seeds=[1],
        device="cpu",
        overrides={"fail": "true"},
        progress=False,
    )
    assert ok[0].status == "FINISHED" and bad[0].status == "FAILED"
    assert "planned failure" in bad[0].error
    assert "FAILED" in capsys.readouterr().err
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri())
    statuses = sorted(r.info.status for r in mlflow.search_runs(search_all_experiments=True, output_format="list"))
    assert statuses == ["FAILED", "FINISHED"]
    repro = tables.collect(tracking.finished_runs({"dataset": "synth", "profile": "tiny"}), "base")
    assert repro is not None and repro.seeds == [0]


def test_rerun_adds_runs_and_table_uses_newest_per_seed_of_the_methods_own_configuration(home, toy_method):
    def once(**overrides: str) -> str:
        (outcome,) = run.run([toy_method], dataset="synth", profile="tiny", seeds=[1], device="cpu",
                             overrides=overrides, progress=False)  # fmt: skip
        return outcome.run_id

    first, second, sweep = once(), once(), once(shift="30")
    runs = tracking.finished_runs({"method": "base"})
    assert len(runs) == 3  # nothing overwritten
    logged = dict(zip(runs["run_id"], runs["params.overrides"], strict=True))
    assert logged == {first: "-", second: "-", sweep: "shift=30"}
    repro = tables.collect(runs, "base")
    assert repro.n == 1 and repro.run_ids == [second] and repro.mean["mIoU"] == pytest.approx(50 / 60)  # not 50/80
    same = once(shift="10.0")  # an option that leaves the configuration as it is makes a run of the method's own
    runs = tracking.finished_runs({"method": "base"})
    assert runs.set_index("run_id").loc[same, "params.overrides"] == "-"
    assert tables.collect(runs, "base").run_ids == [same]


def test_a_run_logged_before_the_overrides_param_is_its_methods_own_only_when_its_resolved_config_had_no_set(home):
    """Runs from before the ``overrides`` param: the ``--set`` options in their ``config/resolved.json`` decide, so an
    old sweep never stands in the method's cell, and a run whose file cannot be read still counts."""

    def legacy(seed: int, mIoU: float, overrides: dict[str, str] | None) -> str:
        params = {"method": "base", "dataset": "synth", "profile": "tiny", "seed": seed, "config_hash": "old"}
        with tracking.start_run(f"legacy/{seed}/{mIoU}", params) as log:
            if overrides is not None:
                log.log_dict({"method": "base", "overrides": overrides, "config": {}}, "config/resolved.json")
            log.log_metrics({"mIoU": mIoU}, prefix="test/")
            return log.run_id

    own, _sweep, unreadable = legacy(0, 0.5, {}), legacy(0, 0.9, {"shift": "30"}), legacy(1, 0.25, None)
    runs = tracking.finished_runs({"method": "base"})
    assert "params.overrides" not in runs  # as in a store written before the param
    assert sorted(tables.default_runs(runs)["run_id"]) == sorted([own, unreadable])
    repro = tables.collect(runs, "base")
    assert repro.seeds == [0, 1] and repro.mean["mIoU"] == pytest.approx((0.5 + 0.25) / 2)  # the sweep's 0.9 is not


def test_table_shows_mean_std_and_delta(home, toy_method):
    run.run([toy_method], dataset="synth", profile="tiny", seeds=[0, 1, 2], device="cpu", progress=False)
    text = tables.render(1, "md", dataset="synth", profile="tiny")
    mean, std = statistics.fmean(IOU) * 100, statistics.stdev(IOU) * 100
    line = next(li for li in text.splitlines() if "ours (n=3)" in li)
    assert f"{mean:.2f} ± {std:.2f}" in line  # mIoU: 84.92 ± 14.30
    assert "100.00 ± 0.00" in line  # R@1 IoU=0.7 holds for all three seeds
    delta_line = text.splitlines()[text.splitlines().index(line) + 1]
    assert f"{mean - 28.44:+.2f}" in delta_line  # the paper's Base mIoU is 28.44
    assert "seeds 0, 1, 2" in text and "toyhash00001" in text and "profile tiny" in text
    assert "not a reproduction of the paper" in text
    # rows without runs stay missing; SIL's paper number is there but no reproduced number
    sil = text.splitlines().index(next(li for li in text.splitlines() if li.startswith("| Base+")))
    assert "missing" in text.splitlines()[sil + 1]


def test_table_without_runs_marks_every_reproduced_cell_missing(home):
    for fmt in ("md", "latex"):
        text = tables.render(1, fmt, dataset="synth", profile="small")
        cell = "| ours |" if fmt == "md" else "& ours &"
        ours = [li for li in text.splitlines() if cell in li]
        # every paper row, the blind rows and the reference rows (the oracle too: this is the synthetic benchmark),
        # in LaTeX once per tabular that holds metric columns (a wide table is split to fit the page)
        parts = 1 if fmt == "md" else text.count(r"\begin{tabular}{") - 1  # Table 1's descriptions: a tabular alone
        rows = len(tables.load_table(1).rows) + len(tables.BLIND_METHODS) + len(tables.REFERENCE_METHODS)
        assert len(ours) == rows * parts
        for li in ours:
            cells = [c.strip() for c in li.strip("| \\").split("&" if fmt == "latex" else "|")]
            numbers = [c for c in cells[1:] if any(ch.isdigit() for ch in c)]  # cells[0]: the label (2D-TAN)
            assert numbers == [], li
    latex = tables.render(1, "latex")
    assert r"\toprule" in latex and r"\bottomrule" in latex and "76.42" in latex
    assert r"\begin{tabular}[t]{@{}r@{}}R@1 \\ IoU=0.5\end{tabular}" in latex  # a header on two lines


def test_run_refuses_planned_methods_and_wrong_rows(home):
    # a planned method's refusal: test_config_registry, on a planned row of its own copy of the tables
    with pytest.raises(ValueError, match="no row in table 8"):
        run.methods_to_run("sil", 8)
    with pytest.raises(KeyError, match="did you mean|Did you mean"):
        run.methods_to_run("sill", None)
    assert [s.name for s in run.methods_to_run(None, 8)] == ["asr-wav2vec2"]  # Table 8 (ASR): no blind rows
    with pytest.raises(KeyError, match="'sill'"):  # several names: each is checked as if named alone
        run.methods_to_run("base,sill", None)


def test_seeds_parsing():
    assert run.parse_seeds("0,1,2") == [0, 1, 2]
    assert run.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert run.parse_seeds("3, 3,1") == [3, 1]
    with pytest.raises(ValueError):
        run.parse_seeds("a")


def test_non_zero_rank_does_not_log(home, toy_method, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    out = run.run([toy_method], dataset="synth", profile="tiny", seeds=[0], device="cpu", progress=False)
    assert out[0].status == "FINISHED" and out[0].run_id is None
    monkeypatch.delenv("RANK")
    assert len(tracking.finished_runs()) == 0


def test_tracking_uri_is_absolute_sqlite_and_overridable(home, monkeypatch, tmp_path):
    assert tracking.tracking_uri() == f"sqlite:///{home}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/other.db")
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path}/other.db"
    assert tracking.mlflow_key("R5@0.7") == "R5_IoU0.7" and tracking.metric_name("R5_IoU0.7") == "R5@0.7"


# --- the CLI ------------------------------------------------------------------------------------------


def test_cli_run_and_table(home, toy_method, capsys):
    assert (
        cli.main(["run", "--method", "base", "--table", "1", "--profile", "tiny", "--seeds", "0,1", "--device", "cpu"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("FINISHED") == 2 and "ours (n=2)" in out  # the stand-in registry has no blind rows to add
    assert cli.main(["table", "3", "--profile", "tiny", "--format", "latex"]) == 0
    assert "ours (n=2)" in capsys.readouterr().out  # Base is a row of Table 3 too


def test_method_with_a_table_also_runs_the_blind_rows_that_have_no_run_yet(home):
    """``bench run --method M --table N`` prints table N: its blind rows run too, once (seconds each)."""
    names = [s.name for s in run.methods_to_run("base", 1, "synth", "tiny")]
    assert names == ["base", *tables.BLIND_METHODS]
    with tracking.start_run("prior/synth/tiny/seed0", {"method": "prior", "dataset": "synth", "profile": "tiny"}):
        pass
    assert [s.name for s in run.methods_to_run("base", 1, "synth", "tiny")] == ["base", "random", "whole-video"]
    assert [s.name for s in run.methods_to_run("base", 1, "synth", "small")] == ["base", *tables.BLIND_METHODS]
    assert [s.name for s in run.methods_to_run("base", None, "synth", "tiny")] == ["base"]
    # several names: each in turn, then the blind rows not yet run, each once (a named blind row where it was named)
    named = [s.name for s in run.methods_to_run("base, sil,random,base", 1, "synth", "tiny")]
    assert named == ["base", "sil", "random", "whole-video"]
    everything = [s.name for s in run.methods_to_run(None, 1, "synth", "tiny")]
    assert set(tables.REFERENCE_METHODS) <= set(everything) and everything[0] == "vslnet"


def test_cli_errors_are_one_line(home, capsys):
    assert cli.main(["run", "--method", "vgcll", "--table", "1"]) == 2  # a planned method: test_config_registry
    err = capsys.readouterr().err
    assert err.startswith("bench run: error:") and "vgcl" in err and "Traceback" not in err
    assert cli.main(["run"]) == 2
    assert "--method" in capsys.readouterr().err
    assert cli.main(["table", "12"]) == 2
    assert "tables 1 to 11" in capsys.readouterr().err
    assert cli.main(["run", "--table", "1", "--set", "nokey"]) == 2
    assert "key=value" in capsys.readouterr().err


def test_cli_run_table_with_nothing_implemented(home, capsys):
    assert cli.main(["run", "--table", "7", "--profile", "tiny"]) == 0  # Table 7 lists augmentation levels only
    assert "nothing was run" in capsys.readouterr().err


def test_cli_evaluate_golden_file(capsys):
    path = Path(__file__).resolve().parent / "data" / "predictions_golden.jsonl"
    assert cli.main(["evaluate", str(path), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 3 and metrics["nms"] == 0.45 and metrics["iou"] == "standard"
    assert 0 <= metrics["mIoU"] <= 1 and not math.isnan(metrics["R5@0.5"])
    assert cli.main(["evaluate", str(path)]) == 0
    assert "R@1 IoU=0.5" in capsys.readouterr().out


def test_cli_evaluate_bad_file_names_it(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": "a", "duration": 10, "gt": [0, 5], "pred": [[6, 2]]}\n')
    assert cli.main(["evaluate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "Traceback" not in err


def test_cli_methods_and_data_and_report(home, tmp_path, capsys):
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "sil" in out and "vslnet" in out and "vgcl" in out
    assert cli.main(["data", "list"]) == 0
    assert "synth" in capsys.readouterr().out
    assert cli.main(["report", "--out", str(tmp_path / "rep")]) == 0
    files = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert "index.md" in files and "table01.tex" in files and "table11.md" in files
    assert len([f for f in files if f.startswith("table")]) == 22 and "blind.md" in files
    # the histogram needs annotation files: here no synth is built, so it exists exactly when the real ones do
    real = (captions.default_root() / "val_2.json").is_file()
    assert ("moment_lengths.png" in files) == real == ("moment_lengths.csv" in files) == ("moment_lengths.pdf" in files)
    # figures.md says which figures the runs allow: the toy method's runs allow none, so no figure file is written
    assert "claims.md" in files and "figures.md" in files and len(files) == 23 + 3 + 3 * real


def test_every_verb_has_help(capsys):
    for verb in ("run", "table", "report", "methods", "data", "ui", "evaluate"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([verb, "--help"])
        assert exit_info.value.code == 0
        assert "usage: bench" in capsys.readouterr().out


def test_ui_command_binds_localhost(home):
    cmd = tracking.ui_command(5001)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5001"
    assert tracking.tracking_uri() in cmd


def test_a_newer_latency_run_does_not_hide_the_accuracy_runs_of_the_same_seed():
    import pandas as pd

    from bench import tables, tracking

    miou, lat = f"metrics.test/{tracking.mlflow_key('mIoU')}", f"metrics.test/{tracking.mlflow_key('latency_s')}"
    runs = pd.DataFrame(
        {
            "run_id": ["a0", "a1", "l0"],
            "params.method": ["sil"] * 3,
            "params.seed": ["0", "1", "0"],
            "params.measure": [None, None, "latency"],
            "start_time": [1, 2, 3],  # the latency run is the newest of seed 0
            miou: [0.20, 0.30, float("nan")],
            lat: [float("nan"), float("nan"), 0.016],
        }
    )
    got = tables.collect(runs, "sil")
    assert got.seeds == [0, 1] and got.mean["mIoU"] == pytest.approx(0.25)  # both training runs still count
    assert got.mean["latency_s"] == pytest.approx(0.016) and set(got.run_ids) == {"a0", "a1", "l0"}


def test_threads_option_sets_torchs_cpu_threads(monkeypatch):
    """``--threads N`` reaches torch before the verb runs (run, calibrate and wer take it)."""
    import torch

    from bench import cli

    before = torch.get_num_threads()
    seen = {}
    monkeypatch.setitem(cli.VERBS, "run", lambda args: seen.setdefault("threads", torch.get_num_threads()) and 0)
    try:
        assert cli.main(["run", "--method", "prior", "--threads", "1"]) == 0
        assert seen["threads"] == 1
        for verb in ("calibrate", "wer"):
            assert cli.build_parser().parse_args([verb, "--threads", "3"]).threads == 3
    finally:
        torch.set_num_threads(before)


def test_the_report_names_a_store_under_the_working_directory_by_its_relative_path(home, monkeypatch):
    from bench import report

    monkeypatch.chdir(home.parent)
    assert report.store_label() == "runs/mlflow.db (SQLite, under the working directory)"
    (home.parent / "elsewhere").mkdir()
    monkeypatch.chdir(home.parent / "elsewhere")  # not under it: the store's whole URI, as tracking has it
    assert report.store_label() == tracking.tracking_uri() == f"sqlite:///{home / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert report.store_label() == "http://127.0.0.1:5000"


def test_table_1_with_its_fine_tune_column_runs_each_variant_after_its_row(home, capsys):
    plain = [s.name for s in run.methods_to_run(None, 1, "synth", "small")]
    both = [s.name for s in run.methods_to_run(None, 1, "synth", "small", finetune=True)]
    cells = [r.finetune for r in tables.load_table(1).rows if r.finetune]
    assert len(cells) == 9 and not set(cells) & set(plain) and [m for m in both if m not in cells] == plain
    for cell in cells:  # right after the row whose bracket it fills
        assert both[both.index(cell) - 1] == cell.removesuffix("-ft")
    with pytest.raises(ValueError, match="table 3 has no fine-tune column"):
        run.methods_to_run(None, 3, "synth", "small", finetune=True)
    assert cli.main(["run", "--method", "sil", "--finetune", "--profile", "tiny"]) == 2
    assert "--finetune goes with --table 1 alone" in capsys.readouterr().err
