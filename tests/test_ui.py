"""``bench ui`` killed by its PID takes the MLflow server (and the server's children) down with it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0  # mlflow's server took 20 to 37 s to answer on a loaded 2-core machine
STOP_TIMEOUT_S = 15.0  # more than bench.tracking.STOP_GRACE_S, after which what is left is killed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc, so the test can clean up whatever the code under test left."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = [], [pid]
    while frontier:
        children = [p for p, pp in parent.items() if pp in frontier]
        out += children
        frontier = children
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc to find the server's processes")
def test_killing_bench_ui_stops_the_server(tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "WSVG_HOME": str(tmp_path),
        "PYTHONPATH": str(REPO),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no job runners: the server answers sooner
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (tmp_path / "ui.log").open("w")
    ui = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "ui", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # whatever happens, the test's own process group is never signalled
    )
    left: list[int] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(port):
            if ui.poll() is not None:
                pytest.skip(f"mlflow's server cannot start here: {(tmp_path / 'ui.log').read_text()[-500:]}")
            if time.monotonic() > deadline:
                pytest.skip(f"mlflow's server did not answer within {START_TIMEOUT_S:g} s on this machine")
            time.sleep(0.5)
        left = _descendants(ui.pid)
        assert left, "bench ui serves from child processes"
        os.kill(ui.pid, signal.SIGTERM)
        status = ui.wait(timeout=STOP_TIMEOUT_S)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _answers(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _answers(port), "the MLflow server still answers after bench ui was killed"
        assert status == 0  # a stop asked for by a signal is the normal end of a UI
    finally:
        for pid in [ui.pid, *left]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        ui.wait()
        log.close()
