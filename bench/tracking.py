"""MLflow tracking: the only module of the suite that imports mlflow.

Where runs go. The suite's run directory is ``$WSVG_HOME`` or, by default, ``./runs`` resolved to an
absolute path. The tracking store is ``sqlite:///<run dir>/mlflow.db`` with artifacts in
``<run dir>/mlartifacts``; ``MLFLOW_TRACKING_URI`` overrides the store (for example a shared
``postgresql://`` server for a multi-machine team). The URI is always set explicitly: MLflow's own
default depends on the current directory and silently switches to a file store when ``./mlruns`` exists
(``shared/research/suites.md`` §3).

What a run records. Params: method, dataset and its content hash, profile, seed, git commit and whether
the tree was dirty, config hash, package versions and the evaluator's definition. Metrics: per-epoch
values with ``step=epoch``, then the selected epoch's validation metrics under ``val_best/`` and the one
test evaluation under ``test/``. Artifacts: the resolved config and the predictions file. MLflow rejects
``@`` in metric names, so ``R1@0.5`` is logged as ``R1_IoU0.5`` (:func:`mlflow_key`).

A run that raises ends FAILED (the ``with`` block of :func:`start_run`); tables read FINISHED runs only.
Runs are never deleted or overwritten: every ``bench run`` makes new ones.

Under ``torchrun`` only rank 0 talks to the store; other ranks get a :class:`RunLogger` that does
nothing, so the same method code runs on one process or many.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

EXPERIMENT = "wsvg-bench"
_PACKAGES = ("torch", "torchaudio", "transformers", "mlflow", "jiwer", "numpy", "wsvg-bench")


def runs_home() -> Path:
    """The suite's run directory: ``$WSVG_HOME``, else ``./runs``; always absolute."""
    return Path(os.environ.get("WSVG_HOME", "runs")).expanduser().resolve()


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{runs_home() / 'mlflow.db'}"


def artifact_root() -> str:
    return str(runs_home() / "mlartifacts")


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a ``torchrun`` launch."""
    return int(os.environ.get("RANK", "0")) == 0


def mlflow_key(metric: str) -> str:
    """``R1@0.5`` -> ``R1_IoU0.5``: MLflow allows only ``[A-Za-z0-9_-. :/]`` in metric names."""
    return metric.replace("@", "_IoU")


def metric_name(key: str) -> str:
    """Inverse of :func:`mlflow_key`."""
    return key.replace("_IoU", "@")


def _mlflow():
    import logging

    import mlflow

    # MLflow's sqlite store logs its schema migrations at INFO on first use; keep the CLI quiet.
    for name in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    user_uri = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri())
    if user_uri is None:
        # set_tracking_uri also writes MLFLOW_TRACKING_URI into the environment; left there, it would pin
        # this process to one run directory and read as a user override (artifacts would go to ./mlruns).
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    return mlflow


def _experiment_id(mlflow: Any) -> str:
    if tracking_uri().startswith("sqlite:///"):
        runs_home().mkdir(parents=True, exist_ok=True)
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    location = artifact_root() if not os.environ.get("MLFLOW_TRACKING_URI") else None
    return mlflow.create_experiment(EXPERIMENT, artifact_location=location)


def git_state(repo: Path | None = None) -> dict[str, str]:
    """Commit, dirty flag and diff of the source tree the suite runs from ("unknown" outside git)."""
    repo = repo or Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=no").strip()
        diff = git("diff", "HEAD") if status else ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": "unknown", "diff": ""}
    return {"commit": commit, "dirty": str(bool(status)).lower(), "diff": diff}


def environment() -> dict[str, str]:
    env = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in _PACKAGES:
        try:
            env[f"version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            env[f"version.{pkg}"] = "absent"
    return env


class RunLogger:
    """What a method and the training loop see of tracking: per-epoch metrics, final metrics, files."""

    def __init__(self, mlflow: Any | None, run_id: str | None) -> None:
        self._mlflow = mlflow
        self.run_id = run_id

    @property
    def active(self) -> bool:
        return self._mlflow is not None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None, prefix: str = "") -> None:
        if self._mlflow is None:
            return
        clean = {prefix + mlflow_key(k): float(v) for k, v in metrics.items()}
        self._mlflow.log_metrics(clean, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        if self._mlflow is not None:
            self._mlflow.log_params({k: str(v) for k, v in params.items()})

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self._mlflow is not None:
            self._mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        if self._mlflow is not None:
            self._mlflow.log_text(json.dumps(data, indent=2, sort_keys=True, default=str), artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self._mlflow is not None:
            self._mlflow.log_text(text, artifact_file)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self._mlflow is not None:
            self._mlflow.log_artifact(str(path), artifact_path)


@contextmanager
def start_run(run_name: str, params: dict[str, Any], tags: dict[str, Any] | None = None) -> Iterator[RunLogger]:
    """Open a run, log its provenance, yield a :class:`RunLogger`; an exception ends the run FAILED."""
    if not is_main_process():
        yield RunLogger(None, None)
        return
    mlflow = _mlflow()
    exp_id = _experiment_id(mlflow)
    git = git_state()
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name) as run:
        logger = RunLogger(mlflow, run.info.run_id)
        logger.log_params({**params, "commit": git["commit"], "dirty": git["dirty"], **environment()})
        logger.set_tags({"wsvg.commit": git["commit"], "wsvg.dirty": git["dirty"], **(tags or {})})
        if git["diff"]:
            logger.log_text(git["diff"], "source/uncommitted.diff")
        yield logger


def finished_runs(filters: dict[str, str] | None = None):
    """FINISHED runs of the suite's experiment as a pandas DataFrame (params come back as strings).

    ``filters`` maps param names to required values. Returns an empty DataFrame when no store exists
    yet, so that tables render "missing" rather than failing on a fresh checkout.
    """
    import pandas as pd

    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return pd.DataFrame()
    mlflow = _mlflow()
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return pd.DataFrame()
    clauses = ["attributes.status = 'FINISHED'"]
    for key, value in (filters or {}).items():
        escaped = str(value).replace("'", "\\'")
        clauses.append(f"params.`{key}` = '{escaped}'")
    return mlflow.search_runs(experiment_ids=[exp.experiment_id], filter_string=" and ".join(clauses))


def ui_command(port: int = 5000) -> list[str]:
    """The ``mlflow ui`` command line over the suite's store, bound to 127.0.0.1."""
    import sys

    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        cmd += ["--artifacts-destination", artifact_root()]
    return cmd


STOP_GRACE_S = 10.0
"""Seconds the UI server's processes get to exit after SIGTERM before they are killed."""


class _Stop(Exception):
    """Raised by the signal handler of :func:`serve` so that the wait for the server ends."""


def serve(command: list[str]) -> int:
    """Run a server ``command`` until it exits, and take all of its processes down with this one.

    ``mlflow ui`` serves from children it starts (uvicorn workers, job runners). Killing only the process that
    started them leaves them serving, and ``subprocess.call`` passes no signal on. So the server gets a session
    (and process group) of its own, and SIGTERM, SIGINT or SIGHUP to this process stops that whole group:
    SIGTERM, then SIGKILL for what is left after :data:`STOP_GRACE_S`. Ctrl-C reaches the server this way too,
    since its group is no longer the terminal's. A stop asked for by a signal is the normal end of a UI, so it
    returns 0; otherwise the server's exit status. SIGKILL cannot be caught: the group then outlives this process.
    """
    import signal

    def stop(signum: int, _frame: object) -> None:
        raise _Stop(signum)

    signals = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
    previous = {s: signal.signal(s, stop) for s in signals}
    server: subprocess.Popen | None = None
    try:
        server = subprocess.Popen(command, start_new_session=True)
        return server.wait()
    except _Stop:
        return 0
    finally:
        for s in signals:  # a second Ctrl-C must not cut the shutdown short
            signal.signal(s, signal.SIG_IGN)
        if server is not None:
            _stop_group(server)
        for s, handler in previous.items():
            signal.signal(s, handler)


def _stop_group(leader: subprocess.Popen) -> None:
    """SIGTERM the process group that ``leader`` leads, wait until it is empty, SIGKILL what is left."""
    import signal
    import time

    def signal_group(signum: int) -> bool:
        """Send ``signum`` to the group; False when no process of it is left."""
        try:
            os.killpg(leader.pid, signum)
        except ProcessLookupError:
            return False
        return True

    if not signal_group(signal.SIGTERM):
        leader.wait()
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        leader.poll()  # reap the leader, or the group never empties
        if not signal_group(0):
            return
        time.sleep(0.1)
    signal_group(signal.SIGKILL)
    leader.wait()
