"""MLflow tracking: the only module of the suite that imports mlflow.

Where runs go. The suite's run directory is ``$WSVG_HOME`` or, by default, ``./runs`` resolved to an
absolute path. The tracking store is ``sqlite:///<run dir>/mlflow.db`` with artifacts in
``<run dir>/mlartifacts``; ``MLFLOW_TRACKING_URI`` overrides the store: for several users or machines, an
``http://`` MLflow tracking server backed by PostgreSQL that keeps the artifacts too (``--serve-artifacts``;
README, "More than one process"; tested in ``tests/test_server_store.py``). The URI is always set explicitly:
MLflow's own default depends on the current directory and silently switches to a file store when ``./mlruns`` exists
(``shared/research/suites.md`` §3).

What a run records. Params: method, dataset and its content hash, profile, seed, git commit and whether
the tree was dirty, config hash, package versions and the evaluator's definition. Metrics: per-epoch
values with ``step=epoch``, then the selected epoch's validation metrics under ``val_best/`` and the one
test evaluation under ``test/``. Artifacts: the resolved config and the predictions file. MLflow rejects
``@`` in metric names, so ``R1@0.5`` is logged as ``R1_IoU0.5`` (:func:`mlflow_key`).

A run that raises ends FAILED (the ``with`` block of :func:`start_run`), one interrupted (Ctrl-C, ``kill``) ends
KILLED; tables read FINISHED runs only. Runs are never deleted or overwritten: every ``bench run`` makes new ones.

A killed process (``kill -9``, a lost machine) cannot close its run, which MLflow would show RUNNING forever. Each
run records the host and process id that own it (tags ``wsvg.host``, ``wsvg.pid``), and before a (method, dataset,
profile, seed, config) is run again, :func:`close_stale_runs` ends as KILLED every RUNNING run of it whose process is
gone from this host. The new run is a new MLflow run, not the old one continued: a run's params are immutable in
MLflow and describe one process (its commit, dirty flag, device, package versions), which a resume after a fix may
change; the training loop logs the finished epochs' curves again into the new run, so it is whole, and its tag
``wsvg.replaces`` names the run it replaces. So the store holds one FINISHED and one KILLED run, and a table, which
reads the newest FINISHED run per seed, counts that seed once.

Several ``bench run`` processes may share one SQLite store. The first use of a fresh store creates its schema and the
experiment; two processes doing that at once collide (MLflow's migrations are not safe to run concurrently), so it
happens under a file lock beside the database (:func:`_store_lock`). After that, SQLite's own locking serialises
the short writes.

A ``bench run --table N`` invocation opens one parent run (tag ``wsvg.kind = table``, :func:`start_table_run`) and
logs each row and seed as its child (MLflow's tag ``mlflow.parentRunId``), so that the UI shows one entry per
invocation that unfolds into the table's runs. The parent holds no params and no metrics, and :func:`finished_runs`
never returns it: tables, ``bench compare`` and ``bench claims`` read the child runs exactly as they read runs
without a parent. A parent left RUNNING by a killed process is closed like any other stale run.

Under ``torchrun`` only rank 0 talks to the store; other ranks get a :class:`RunLogger` that does
nothing, so the same method code runs on one process or many.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
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


@contextlib.contextmanager
def _store_lock() -> Iterator[None]:
    """Hold an exclusive lock on ``<database>.lock`` while a SQLite store is created or its experiment looked up.

    Two processes opening a fresh store at once both run MLflow's schema migrations, and one fails (seen as
    ``alembic ... CommandError: Online migration expected to match one row``); both may also create the
    experiment. Other stores need no lock: a tracking server migrates its database once, when it starts, and
    :func:`_experiment_id` takes a second create of the experiment in its stride.
    """
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _experiment_id(mlflow: Any) -> str:
    """The suite's experiment, created on first use.

    Two processes may both find no experiment and both create it: the file lock prevents that on SQLite, a tracking
    server answers the second create with ``RESOURCE_ALREADY_EXISTS``, and the experiment is then looked up again.
    """
    with _store_lock():
        exp = mlflow.get_experiment_by_name(EXPERIMENT)
        if exp is not None:
            return exp.experiment_id
        location = artifact_root() if not os.environ.get("MLFLOW_TRACKING_URI") else None
        try:
            return mlflow.create_experiment(EXPERIMENT, artifact_location=location)
        except mlflow.exceptions.MlflowException as err:
            exp = mlflow.get_experiment_by_name(EXPERIMENT)  # another process created it since the lookup
            if err.error_code != "RESOURCE_ALREADY_EXISTS" or exp is None:
                raise
            return exp.experiment_id


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


IDENTITY = ("method", "dataset", "profile", "seed", "config_hash")
"""The params that name one (method, dataset, profile, seed, config): its checkpoints' directory, and the runs that a
later ``bench run`` of the same thing resumes and replaces."""


@contextlib.contextmanager
def start_run(
    run_name: str, params: dict[str, Any], tags: dict[str, Any] | None = None, parent_run_id: str | None = None
) -> Iterator[RunLogger]:
    """Open a run, log its provenance and owner process, yield a :class:`RunLogger`.

    The run ends FINISHED, FAILED when the block raises, or KILLED when it is interrupted (``KeyboardInterrupt``,
    which ``bench run`` also raises on SIGTERM). With ``parent_run_id`` (a :func:`start_table_run`'s) it is filed
    under that run in the UI; nothing else about it changes.
    """
    if not is_main_process():
        yield RunLogger(None, None)
        return
    mlflow = _mlflow()
    exp_id = _experiment_id(mlflow)
    git = git_state()
    run = mlflow.start_run(experiment_id=exp_id, run_name=run_name, parent_run_id=parent_run_id)
    try:
        logger = RunLogger(mlflow, run.info.run_id)
        logger.log_params({**params, "commit": git["commit"], "dirty": git["dirty"], **environment()})
        logger.set_tags({"wsvg.commit": git["commit"], "wsvg.dirty": git["dirty"], **_owner(), **(tags or {})})
        if git["diff"]:
            logger.log_text(git["diff"], "source/uncommitted.diff")
        yield logger
    except BaseException as err:
        # a store that cannot be written (a full disk) must not hide the run's own error; the run then stays
        # RUNNING, and the next bench run of it marks it KILLED
        with contextlib.suppress(Exception):
            mlflow.end_run("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    mlflow.end_run("FINISHED")


KIND_TAG = "wsvg.kind"
TABLE_KIND = "table"
"""``wsvg.kind = table`` marks the parent run of a ``bench run --table N`` invocation: a folder in the UI, not a row."""


def _owner() -> dict[str, Any]:
    """The tags that name the process owning a run, by which :func:`close_stale_runs` finds the ones it left open."""
    return {"wsvg.host": socket.gethostname(), "wsvg.pid": os.getpid()}


@dataclass
class TableRun:
    """The parent run of one ``bench run --table N`` invocation (``run_id`` None where nothing is logged).

    ``failed`` is set by the caller when a child run failed; the parent then ends FAILED, as the command's exit
    status says, so that the UI shows an invocation with a failed row at a glance.
    """

    run_id: str | None
    failed: bool = False


@contextlib.contextmanager
def start_table_run(table: int, title: str, tags: dict[str, Any]) -> Iterator[TableRun]:
    """Open the parent run of a ``bench run --table N`` invocation; yield it, end it with the invocation.

    It is made with the client rather than ``mlflow.start_run``, so that it is not the process's active run: each
    child is then the active run while it logs, as a run without a parent is. It carries tags only (the table, its
    title, dataset, profile, seeds, commit, owner process), no params or metrics. It ends FINISHED, FAILED (a child
    failed, or the block raised) or KILLED (interrupted).
    """
    if not is_main_process():
        yield TableRun(None)
        return
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    git = git_state()
    all_tags = {
        KIND_TAG: TABLE_KIND,
        "wsvg.table": table,
        "wsvg.table_title": title,
        "wsvg.commit": git["commit"],
        "wsvg.dirty": git["dirty"],
        **_owner(),
        **tags,
    }
    run = client.create_run(
        _experiment_id(mlflow), run_name=f"table{table}/{tags.get('wsvg.dataset', '')}/{tags.get('wsvg.profile', '')}",
        tags={k: str(v) for k, v in all_tags.items()},
    )  # fmt: skip
    parent = TableRun(run.info.run_id)
    try:
        yield parent
    except BaseException as err:
        with contextlib.suppress(Exception):
            client.set_terminated(parent.run_id, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    client.set_terminated(parent.run_id, "FAILED" if parent.failed else "FINISHED")


def _process_gone(pid: str | None) -> bool:
    """True when no process ``pid`` runs on this host (a reused pid reads as alive: the run is then left alone)."""
    try:
        os.kill(int(pid or ""), 0)
    except ValueError:
        return True  # no pid recorded: a run of an older version of the suite, which recorded none
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def close_stale_runs(params: dict[str, Any]) -> list[str]:
    """End as KILLED the RUNNING runs with these :data:`IDENTITY` params whose process is gone; their ids.

    A run is stale when its ``wsvg.host`` is this host and its ``wsvg.pid`` no longer runs, or when it records no
    owner (a run of an older version). A RUNNING run of another host, or of a live process here (a second ``bench
    run`` of the same seed), is left as it is. Should a live process be taken for a dead one (a run without an owner
    of an older version still going), its own end overwrites KILLED with FINISHED or FAILED.
    """
    if not is_main_process():
        return []
    mlflow = _mlflow()
    exp_id = _experiment_id(mlflow)
    clauses = ["attributes.status = 'RUNNING'", *(_param_clause(k, params[k]) for k in IDENTITY)]
    running = mlflow.search_runs(experiment_ids=[exp_id], filter_string=" and ".join(clauses), output_format="list")
    return _close_if_gone(mlflow, running, "the run starting now replaces it, from its last checkpoint if it wrote one")


def close_stale_table_runs() -> list[str]:
    """End as KILLED every RUNNING parent run (:func:`start_table_run`) whose process is gone from this host.

    A parent belongs to no (method, seed), so it is not matched by :data:`IDENTITY`: every ``bench run --table``
    closes whichever invocation a ``kill -9`` left open, of any table. Returns their ids.
    """
    if not is_main_process():
        return []
    mlflow = _mlflow()
    clause = f"attributes.status = 'RUNNING' and tags.`{KIND_TAG}` = '{TABLE_KIND}'"
    running = mlflow.search_runs(experiment_ids=[_experiment_id(mlflow)], filter_string=clause, output_format="list")
    return _close_if_gone(
        mlflow, running, "an invocation's parent: each child it left open closes when its seed runs again"
    )


def _close_if_gone(mlflow: Any, running: list, what_next: str) -> list[str]:
    """End as KILLED, and name on stderr, the ``running`` runs of this host whose owner process is gone."""
    client = mlflow.MlflowClient()
    host = socket.gethostname()
    closed = []
    for stale in running:
        tags = stale.data.tags
        if tags.get("wsvg.host", host) != host or not _process_gone(tags.get("wsvg.pid")):
            continue
        owner = f"process {tags.get('wsvg.pid', '?')} on {host}"
        client.set_tag(stale.info.run_id, "wsvg.ended", f"KILLED: {owner} had ended without closing the run")
        client.set_terminated(stale.info.run_id, "KILLED")
        closed.append(stale.info.run_id)
        print(
            f"bench run: run {stale.info.run_id} ({stale.info.run_name}) was left RUNNING by {owner}, which is "
            f"gone; marked KILLED ({what_next})",
            file=sys.stderr,
        )
    return closed


def _param_clause(key: str, value: Any) -> str:
    escaped = str(value).replace("'", "\\'")
    return f"params.`{key}` = '{escaped}'"


def finished_runs(filters: dict[str, str] | None = None):
    """FINISHED runs of the suite's experiment as a pandas DataFrame (params come back as strings).

    ``filters`` maps param names to required values. Returns an empty DataFrame when no store exists
    yet, so that tables render "missing" rather than failing on a fresh checkout. The parent runs of ``bench run
    --table`` invocations (:data:`TABLE_KIND`) are never returned: they are not rows, and hold no numbers.
    """
    import pandas as pd

    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return pd.DataFrame()
    mlflow = _mlflow()
    with _store_lock():
        exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return pd.DataFrame()
    clauses = ["attributes.status = 'FINISHED'", *(_param_clause(k, v) for k, v in (filters or {}).items())]
    runs = mlflow.search_runs(experiment_ids=[exp.experiment_id], filter_string=" and ".join(clauses))
    kind = f"tags.{KIND_TAG}"
    if kind in runs:  # MLflow's filter cannot say "tag absent or different", so the parents are dropped here
        runs = runs[runs[kind] != TABLE_KIND].reset_index(drop=True)
    return runs


def set_experiment_tags(tags: dict[str, str]) -> str:
    """Set tags on the suite's experiment (created if need be); its id. The UI's saved views live there."""
    mlflow = _mlflow()
    exp_id = _experiment_id(mlflow)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_experiment_tag(exp_id, key, value)
    return exp_id


def metric_history(run_id: str, key: str) -> dict[int, float]:
    """``{step: value}`` of one run's metric (a per-epoch curve, ``key`` as logged: ``train/loss``); a step logged
    twice keeps its last value. Empty when the run never logged ``key``."""
    client = _mlflow().tracking.MlflowClient()
    history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
    return {int(m.step): float(m.value) for m in history}


@contextlib.contextmanager
def no_progress_bar() -> Iterator[None]:
    """MLflow draws a progress bar on stderr for every artifact it fetches; the suite's readers fetch one per run."""
    quiet = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    saved = os.environ.get(quiet)
    os.environ[quiet] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(quiet, None)
        else:
            os.environ[quiet] = saved


def load_run_json(run_id: str, artifact_file: str) -> dict[str, Any]:
    """A JSON artifact of a run (``config/resolved.json``) as a dict."""
    with no_progress_bar():
        return _mlflow().artifacts.load_dict(f"runs:/{run_id}/{artifact_file}")


def ui_command(port: int = 5000) -> list[str]:
    """The ``mlflow ui`` command line over the suite's store, bound to 127.0.0.1."""
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
