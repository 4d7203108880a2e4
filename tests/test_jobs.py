"""``bench run --jobs N``: runs in worker processes give the numbers of the sequential path, under the table's parent
run; two processes that need one stage build it once (the stage lock, :mod:`bench.stages`); and a worker that waits
for such a lock gives its CPU slot to a spare worker meanwhile."""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

from bench import atomic, cli, stages, tracking
from bench import run as bench_run
from bench.context import set_seed


def test_parallel_runs_give_the_sequential_numbers_under_the_tables_parent(tiny, capsys):
    argv = ["run", "--method", "vslnet-text", "--profile", "tiny", "--device", "cpu"]
    assert cli.main([*argv, "--seeds", "0,1", "--table", "1", "--jobs", "2"]) == 0  # and the blind rows not yet run
    assert cli.main([*argv, "--seeds", "1"]) == 0  # one after another, in this process
    out = capsys.readouterr()
    assert "vslnet-text seed 1 FINISHED" in out.err  # each worker's outcome as it ends
    runs = tracking.finished_runs({"method": "vslnet-text", "profile": "tiny"})
    assert len(runs) == 3
    key = f"metrics.test/{tracking.mlflow_key('R1@0.5')}"
    seed1 = runs[runs["params.seed"] == "1"]
    assert len(seed1) == 2 and seed1[key].nunique() == 1 and seed1["metrics.test/mIoU"].nunique() == 1  # one number
    parallel = runs[runs["params.table"] == "1"]
    children = tracking.finished_runs({"profile": "tiny", "table": "1"})
    assert set(children["params.method"]) == {"vslnet-text", "random", "prior", "whole-video"}
    assert children["tags.mlflow.parentRunId"].nunique() == 1 and len(parallel) == 2


def test_jobs_below_one_is_a_clear_error(tiny, capsys):
    assert cli.main(["run", "--method", "prior", "--profile", "tiny", "--seeds", "0", "--jobs", "0"]) != 0
    assert "--jobs 0: give 1 (one run after another) or more" in capsys.readouterr().err


def _build(ctx: stages.StageContext) -> dict:
    with (ctx.out.parent.parent / "builds.txt").open("a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(1.0)  # long enough for the other process to arrive while this one builds
    (ctx.out / "weights.json").write_text(json.dumps({"pid": os.getpid()}))
    return {"value": 1}


def _need_stage(cache: str, queue) -> None:
    set_seed(0)
    st = stages.stage(cache, "toy", {"size": 1}, {"data": "abc"})
    record = stages.run_stage(st, _build, config={"size": 1}, inputs={"data": "abc"}, device="cpu", seed=0,
                              log=tracking.RunLogger(None, None))  # fmt: skip
    queue.put((record["seed"], (st.path / "weights.json").read_text()))


def _in_two_processes(target, folder: Path) -> list:
    """``target(folder, queue)`` in two forked processes at once; what each put on the queue (both must exit 0)."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(str(folder), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return got


def test_two_processes_that_need_one_stage_build_it_once(tmp_path):
    got = _in_two_processes(_need_stage, tmp_path)
    builds = (tmp_path / "stages" / "builds.txt").read_text().split()
    assert len(builds) == 1  # the second process waited on the lock, then found the stage done
    assert got[0] == got[1] and json.loads(got[0][1])["pid"] == int(builds[0])
    assert [p.name for p in (tmp_path / "stages" / "toy").iterdir()] == [stages.stage_key("toy", {"size": 1},
                                                                                          {"data": "abc"})]
    assert Path(tmp_path / "stages" / ".locks").is_dir()


def test_a_job_waiting_for_a_lock_gives_its_cpu_slot_back_and_takes_it_again(tmp_path, monkeypatch):
    """``--jobs N``: a job that waits for another process's stage lock holds none of the N slots (a spare worker
    computes meanwhile), and holds one again before it builds; its slot is free once it ends."""
    semaphore = threading.BoundedSemaphore(1)  # one slot, as --jobs 1 would have
    slot = bench_run._CpuSlot(semaphore)
    monkeypatch.setattr(atomic, "_while_waiting", contextlib.nullcontext)  # put back after the test
    atomic.while_waiting(slot.waiting)
    lock, started, inside = tmp_path / "stage.lock", threading.Event(), []

    def job() -> None:
        with slot.job():
            started.set()  # the job holds the only slot from here
            with atomic.exclusive(lock, "stage: another process is building it; waiting"):
                inside.append(slot.held)

    with atomic.exclusive(lock, "unused: nobody holds it yet"):  # "another process" builds the stage
        worker = threading.Thread(target=job)
        worker.start()
        assert started.wait(60)
        assert semaphore.acquire(timeout=60)  # given back by the waiting job: a spare worker's job takes it
        assert inside == []  # the job is still waiting for the lock
        semaphore.release()  # the spare's job ends
    worker.join(60)
    assert inside == [True]  # it took the slot again before going on
    assert not slot.held and semaphore.acquire(blocking=False)  # and gave it back at its end


def _need_split(cache: str, queue) -> None:
    import torch

    from bench.data import loader

    def build() -> loader.PaddedSplit:
        with (Path(cache) / "builds.txt").open("a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(1.0)  # the other process arrives while this one featurises
        return loader.PaddedSplit({"x": torch.full((2, 3), float(os.getpid()))}, ["q0", "q1"])

    split = loader.featurize_cached("toy-split", cache, build)
    queue.put(split.tensors["x"][0, 0].item())


def test_two_processes_that_need_one_cached_split_featurise_it_once(tmp_path, monkeypatch):
    """``bench run --jobs N``'s workers all open the dataset at once: the first featurises, the others load."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    got = _in_two_processes(_need_split, tmp_path)
    builds = (tmp_path / "builds.txt").read_text().split()
    assert len(builds) == 1 and got == [float(builds[0])] * 2  # one build, and both hold its tensors


def _statuses(home: Path) -> list[str]:
    """Every run's status in ``home``'s store, read under the suite's store lock (a fresh store is being created)."""
    if not (home / "mlflow.db").exists():
        return []
    mlflow = tracking._mlflow()
    with tracking._store_lock():
        exp = mlflow.get_experiment_by_name(tracking.EXPERIMENT)
    if exp is None:
        return []
    return sorted(r.info.status for r in mlflow.search_runs([exp.experiment_id], output_format="list"))


def test_sigterm_ends_the_workers_runs_killed(home):
    """A plain ``kill PID`` of ``bench run --jobs 2`` reaches the workers: both open runs end KILLED, none RUNNING."""
    import signal
    import subprocess
    import sys

    env = {**os.environ, "WSVG_QUIET": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "bench.cli", "run", "--method", "vslnet-text", "--profile", "tiny", "--seeds", "0,1",
           "--device", "cpu", "--jobs", "2", "--set", "train.epochs=100000"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and _statuses(home) != ["RUNNING", "RUNNING"] and proc.poll() is None:
        time.sleep(1.0)
    assert _statuses(home) == ["RUNNING", "RUNNING"], proc.communicate(timeout=60)[1][-2000:]
    time.sleep(3.0)  # both inside training
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert _statuses(home) == ["KILLED", "KILLED"], err[-2000:]
