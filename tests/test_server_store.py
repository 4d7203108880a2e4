"""A store for many users: ``bench run`` logs to an MLflow tracking server backed by PostgreSQL (issue 19, item 8).

The test makes a real one on 127.0.0.1 and takes it down after: a PostgreSQL cluster initialised in a temporary
directory on a free port (its unix socket there too), a database, and ``mlflow server`` over it that keeps the
artifacts in its own store (``--serve-artifacts``). Two ``bench run`` processes log to it at once; ``bench table``
and ``bench compare`` (which downloads the predictions artifacts) read it back. PostgreSQL refuses to run as root,
so under root the cluster belongs to the ``postgres`` user (Debian's package makes it) or else ``nobody``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from bench import tracking

SERVER_START_S = 180  # the server imports mlflow, migrates a fresh database and starts uvicorn; slow on a busy machine


def _pg_bin(name: str) -> str | None:
    """A PostgreSQL program on PATH, or in Debian's versioned directory (``/usr/lib/postgresql/N/bin``)."""
    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)


PG = {name: _pg_bin(name) for name in ("initdb", "pg_ctl", "postgres")}
pytestmark = pytest.mark.skipif(
    not all(PG.values()),
    reason="PostgreSQL's server programs (initdb, pg_ctl, postgres) are not installed: apt-get install postgresql",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _owner() -> pwd.struct_passwd | None:
    """The user the cluster runs as: None (this one) unless this is root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.fail("running as root, and there is no 'postgres' or 'nobody' user to run PostgreSQL as")


def _as_owner(cmd: list[str], owner: pwd.struct_passwd | None, **kw) -> subprocess.CompletedProcess:
    ids = {} if owner is None else {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **ids, **kw)


def _wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"mlflow server did not answer on {url} within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server():
    """``(tracking URI, artifacts directory, work directory)`` of a live server; everything stopped afterwards."""
    import psycopg

    owner = _owner()
    work = Path(tempfile.mkdtemp(prefix="wsvg-pg-"))  # not pytest's tmp_path: the postgres user must reach it
    if owner is not None:
        os.chown(work, owner.pw_uid, owner.pw_gid)
    data, pg_port = work / "pgdata", _free_port()
    pg_started = mlflow_server = None
    try:
        initdb = [PG["initdb"], "-D", str(data), "-U", "bench", "--auth=trust", "-E", "UTF8", "--no-sync"]
        init = _as_owner(initdb, owner)
        assert init.returncode == 0, init.stderr
        options = f"-h 127.0.0.1 -p {pg_port} -k {work} -c fsync=off"
        start = _as_owner([PG["pg_ctl"], "-D", str(data), "-l", str(work / "postgres.log"), "-w", "-o", options,
                           "start"], owner)  # fmt: skip
        assert start.returncode == 0, start.stdout + start.stderr + (work / "postgres.log").read_text()
        pg_started = True
        with psycopg.connect(host="127.0.0.1", port=pg_port, user="bench", dbname="postgres", autocommit=True) as db:
            db.execute("CREATE DATABASE mlflow")
        artifacts, port = work / "artifacts", _free_port()
        log = work / "mlflow.log"
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
               f"postgresql://bench@127.0.0.1:{pg_port}/mlflow", "--artifacts-destination", str(artifacts),
               "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runners: none are used here
        with log.open("w") as out:
            mlflow_server = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        uri = f"http://127.0.0.1:{port}"
        _wait_healthy(uri, mlflow_server, log)
        yield uri, artifacts, work
    finally:
        if mlflow_server is not None:
            tracking._stop_group(mlflow_server)  # the server and every process it started
            with pytest.raises(ProcessLookupError):
                os.killpg(mlflow_server.pid, 0)
        if pg_started:
            stop = _as_owner([PG["pg_ctl"], "-D", str(data), "-m", "fast", "-w", "stop"], owner)
            assert stop.returncode == 0, stop.stderr
            assert not (data / "postmaster.pid").exists()
        shutil.rmtree(work, ignore_errors=True)


def _bench(home: Path, uri: str, *args: str) -> subprocess.Popen:
    """``bench ARGS`` in its own process, run from ``home`` (where MLflow would make ``./mlruns`` if it fell back)."""
    env = {**os.environ, "WSVG_HOME": str(home), "MLFLOW_TRACKING_URI": uri, "WSVG_QUIET": "1", "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    cmd = [sys.executable, "-m", "bench.cli", *args]
    return subprocess.Popen(cmd, cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{proc.args}: exit {proc.returncode}\n{out[-2000:]}\n{err[-3000:]}"
    return out


def test_two_processes_log_to_the_server_at_once_and_the_table_reads_it(server, tmp_path):
    from mlflow import MlflowClient

    uri, artifacts, _ = server
    home = tmp_path / "runs"
    home.mkdir()
    _finish(_bench(home, uri, "data", "synth", "--profile", "tiny"))  # built first: both runs reach the store at once
    common = ("--profile", "tiny", "--seeds", "0", "--device", "cpu", "--threads", "1")
    runs = [_bench(home, uri, "run", "--method", method, *common) for method in ("prior", "random")]
    for proc in runs:
        _finish(proc)

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(tracking.EXPERIMENT)
    logged = {r.data.params["method"]: r for r in client.search_runs([exp.experiment_id])}
    assert sorted(logged) == ["prior", "random"]
    for method, run in logged.items():
        assert run.info.status == "FINISHED", method
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri  # the server's store
        stored = artifacts / exp.experiment_id / run.info.run_id / "artifacts" / "predictions"
        assert (stored / "test_predictions.jsonl").is_file() and (stored / "test_predictions.jsonl").stat().st_size > 0
    assert not {"mlflow.db", "mlartifacts", "mlruns"} & {p.name for p in home.iterdir()}  # nothing in a local store

    table = _finish(_bench(home, uri, "table", "1", "--profile", "tiny"))
    cells = [[c.strip() for c in line.split("|")] for line in table.splitlines() if line.startswith("| ")]
    column = cells[0].index("R@1 IoU=0.5")
    rows = {row[1]: row for row in cells}
    for name, method in (("Random", "random"), ("Fixed-span prior (train)", "prior")):
        assert "ours (n=1)" in rows[name]
        logged_percent = 100 * logged[method].data.metrics["test/R1_IoU0.5"]
        assert float(rows[name][column]) == pytest.approx(logged_percent, abs=0.005)
        assert logged[method].info.run_id in table

    compare = _finish(_bench(home, uri, "compare", "prior", "random", "--profile", "tiny"))
    assert "paired difference prior − random" in compare
    assert all(run.info.run_id[:8] in compare for run in logged.values())


def test_a_second_create_of_the_experiment_finds_the_first(server, monkeypatch):
    """Two processes that both find no experiment both create it; the server refuses the second, which looks it up.

    The first lookup is made to miss an experiment that exists, as it does for the process that loses the race.
    """
    uri, _, _ = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow = tracking._mlflow()
    existing = tracking._experiment_id(mlflow)  # created now, or by the test above
    real_lookup, calls = mlflow.get_experiment_by_name, []

    def late_lookup(name: str):
        calls.append(name)
        return None if len(calls) == 1 else real_lookup(name)

    monkeypatch.setattr(mlflow, "get_experiment_by_name", late_lookup)
    assert tracking._experiment_id(mlflow) == existing
    assert len(calls) == 2
