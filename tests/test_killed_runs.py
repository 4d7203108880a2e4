"""Killed and concurrent ``bench run`` processes: what the tracking store says afterwards, and what a table counts.

The processes are real (``tests/killable.py``): a SIGKILL mid-training leaves the run RUNNING as a real ``kill -9``
would, and two processes open one fresh SQLite store at the same moment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import tables, tracking

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _bench_run(home: Path, *args: str, kill_after: int | None = None, sig: str = "KILL", start_at: float | None = None):
    """``bench run ARGS`` of the killable stand-in in its own process, started (not waited for)."""
    env = {
        **os.environ,
        "WSVG_HOME": str(home),
        "WSVG_QUIET": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, str(HERE / "killable.py")]
    if kill_after is not None:
        cmd += ["--kill-after-epoch", str(kill_after), "--signal", sig]
    if start_at is not None:
        cmd += ["--start-at", str(start_at)]
    cmd += ["--", "--method", "base", "--profile", "tiny", "--device", "cpu", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _runs(home: Path) -> list:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def test_a_killed_run_ends_killed_and_the_resumed_one_is_the_seed_s_only_finished_run(home, toy_method):
    killed = _bench_run(home, "--seeds", "0", kill_after=1)
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    (stale,) = _runs(home)
    assert stale.info.status == "RUNNING"  # what MLflow shows of a killed process until someone closes it

    resumed = _bench_run(home, "--seeds", "0")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"run {stale.info.run_id}" in err and "marked KILLED" in err
    by_status = {r.info.status: r for r in _runs(home)}
    assert sorted(by_status) == ["FINISHED", "KILLED"]
    assert by_status["KILLED"].info.run_id == stale.info.run_id and by_status["KILLED"].info.end_time is not None
    new = by_status["FINISHED"]
    assert new.data.tags["wsvg.replaces"] == stale.info.run_id
    assert new.data.params["resumed_from_epoch"] == "1"  # it went on from the killed run's checkpoint
    assert [m.step for m in _history(home, new.info.run_id, "train/loss")] == [1, 2, 3]  # its curves are whole

    finished = tracking.finished_runs({"method": "base", "profile": "tiny"})
    assert list(finished["run_id"]) == [new.info.run_id]
    assert "ours (n=1)" in tables.render(1, "md", "synth", "tiny")


def _history(home: Path, run_id: str, key: str) -> list:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    return sorted(mlflow.MlflowClient().get_metric_history(run_id, key), key=lambda m: m.step)


def test_a_running_run_of_a_live_process_is_left_running(home):
    params = {"method": "base", "dataset": "synth", "profile": "tiny", "seed": 0, "config_hash": "c0ffee"}
    with tracking.start_run("live", params) as log:
        assert tracking.close_stale_runs(params) == []  # its process (this one) is alive
        (run,) = _runs(home)
        assert run.info.status == "RUNNING" and run.info.run_id == log.run_id
    (run,) = _runs(home)
    assert run.info.status == "FINISHED"


def test_an_interrupted_run_ends_killed(home):
    params = {"method": "base", "dataset": "synth", "profile": "tiny", "seed": 0, "config_hash": "c0ffee"}
    try:
        with tracking.start_run("interrupted", params):
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    (run,) = _runs(home)
    assert run.info.status == "KILLED"


def test_kill_pid_ends_the_run_killed_with_one_line(home):
    stopped = _bench_run(home, "--seeds", "0", kill_after=1, sig="TERM")
    _, err = stopped.communicate(timeout=300)
    assert stopped.returncode == 130
    assert err.strip().splitlines()[-1] == (
        "bench run: interrupted; the open run ends KILLED, and the same command resumes from its last checkpoint"
    )
    assert "Traceback" not in err
    assert [r.info.status for r in _runs(home)] == ["KILLED"]


def test_two_bench_run_processes_on_one_fresh_store_both_land(home, toy_method):
    start_at = time.time() + 20  # after both have imported torch and mlflow: they open the new store together
    procs = [_bench_run(home, "--seeds", str(seed), start_at=start_at) for seed in (0, 1)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    assert sorted(r.info.status for r in _runs(home)) == ["FINISHED", "FINISHED"]
    finished = tracking.finished_runs({"method": "base", "profile": "tiny"})
    assert sorted(finished["params.seed"]) == ["0", "1"]
    assert "ours (n=2)" in tables.render(1, "md", "synth", "tiny")
