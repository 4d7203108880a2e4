"""What ``bench run`` settles before it opens a tracked run: data that cannot be opened, seeds that change nothing."""

from __future__ import annotations

import dataclasses

import pytest

from bench import cli, datasets, run, tables, tracking
from methods import registry


def _all_runs() -> list:
    import mlflow

    if not (tracking.runs_home() / "mlflow.db").exists():
        return []
    mlflow.set_tracking_uri(tracking.tracking_uri())
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def test_a_dataset_without_its_data_root_is_one_error_before_any_run(home, monkeypatch, capsys):
    monkeypatch.delenv("WSVG_DATA", raising=False)
    argv = ["run", "--method", "prior", "--dataset", "activitynet-speech", "--profile", "tiny", "--seeds", "0,1,2"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench run: error: $WSVG_DATA: no data root given")
    assert "--data-root DIR" in err[0]
    assert _all_runs() == []  # no FAILED run per seed


def test_a_dataset_not_built_yet_is_one_error_naming_its_issue(home, monkeypatch):
    planned = datasets.DatasetSpec("planned-set", "a dataset a later issue builds", issue=99)
    monkeypatch.setattr(datasets, "_DATASETS", {**datasets._DATASETS, "planned-set": planned})
    with pytest.raises(NotImplementedError, match=r"'planned-set' is not built yet .*\(issue 99 adds it\)"):
        run.run([registry.get("prior")], dataset="planned-set", profile="tiny", seeds=[0], device="cpu")
    assert _all_runs() == []


def test_a_seed_free_method_runs_one_seed_and_says_so(home, toy_method, capsys):
    fixed = dataclasses.replace(toy_method, seed_free=True)
    outcomes = run.run([fixed], dataset="synth", profile="tiny", seeds=[0, 1, 2], device="cpu", progress=False)
    assert [(o.seed, o.status) for o in outcomes] == [(0, "FINISHED")]
    assert "bench run: base does not depend on the seed; running seed 0 only (of 0, 1, 2)" in capsys.readouterr().err
    assert [r.info.status for r in _all_runs()] == ["FINISHED"]
    assert "ours (n=1)" in tables.render(1, "md", "synth", "tiny")  # n counts the one run, not three copies of it


def test_the_priors_the_whole_video_and_the_oracle_are_seed_free_and_random_is_not():
    free = {name for name, spec in registry.all_methods().items() if spec.seed_free}
    blind = {name for name, spec in registry.all_methods().items() if spec.blind and spec.implemented}
    # and the concept oracle, a deterministic reference
    assert free == {name for name in blind if name.startswith("prior") or name == "whole-video"} | {"oracle-concept"}
    assert {"prior", "prior-miou", "whole-video"} <= free and "random" not in free and "random-continuous" not in free
