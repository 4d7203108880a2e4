"""``bench ui`` in a real browser: Table 1's runs and their metrics on the rendered page (issue 18, item 4).

The test logs a ``bench run --table 1`` (the stand-in method of ``conftest.py`` as Table 1's Base row, three seeds)
into a fresh SQLite store, starts ``bench ui`` over it on 127.0.0.1, and opens the address it prints for Table 1's
view in headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright; the README's test command installs
both). The MLflow UI is a JavaScript app: the page is read only once it has rendered the runs. The test fails if the
runs were not logged, the view did not apply (no metric column), or the page did not render; it saves a screenshot.

The metric it looks for is seed 2's mIoU, 50/70 = 0.7142857 (the stand-in predicts [0, 50 + 10 * seed] for the
moment [0, 50]): a number that only this run has, shown in the view's ``test/mIoU`` column.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench import run

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SERVER_START_S = 180.0  # mlflow's server took 20 to 40 s to answer on a loaded 2-core machine
RENDER_S = 120.0  # the UI's scripts load and query the store; a minute on a loaded machine
CHROMIUM_FLAGS = [  # without these Chromium waits on the network it cannot reach (the session is offline)
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (the README's test command installs it)"
)


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


@contextlib.contextmanager
def _bench_ui(home: Path, log_path: Path):
    """``bench ui`` over ``home``'s store on a free port; yields (port, the address of Table 1's view)."""
    port = _free_port()
    env = {**os.environ, "WSVG_HOME": str(home), "PYTHONPATH": str(REPO), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log_path.open("w") as log:
        ui = subprocess.Popen(
            [sys.executable, "-m", "bench.cli", "ui", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + SERVER_START_S
            while not _answers(port):
                assert ui.poll() is None, f"bench ui exited: {log_path.read_text()[-2000:]}"
                assert time.monotonic() < deadline, (
                    f"no answer within {SERVER_START_S:g} s: {log_path.read_text()[-2000:]}"
                )
                time.sleep(0.5)
            found = re.search(r"http://127\.0\.0\.1:\d+/\S+viewStateShareKey=table-1", log_path.read_text())
            assert found, f"bench ui printed no address of Table 1's view: {log_path.read_text()[:2000]}"
            yield port, found.group(0)
        finally:
            os.kill(ui.pid, signal.SIGTERM)  # bench ui takes the server's processes down with it (tests/test_ui.py)
            try:
                ui.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(ui.pid, signal.SIGKILL)
                ui.wait()


def test_bench_ui_shows_a_tables_runs_and_their_metrics_in_chromium(home, toy_method, tmp_path):
    from playwright.sync_api import sync_playwright

    outcomes = run.run([toy_method], dataset="synth", profile="tiny", seeds=[0, 1, 2], device="cpu", table=1)
    assert [o.status for o in outcomes] == ["FINISHED"] * 3
    assert abs(outcomes[2].test["mIoU"] - 50 / 70) < 1e-9
    screenshot = tmp_path / "table1-view.png"

    with _bench_ui(home, tmp_path / "ui.log") as (_, address), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)  # a fresh profile each time
        try:
            page = browser.new_page(viewport={"width": 3400, "height": 900})  # wide: the grid draws visible columns
            page.goto(address)
            page.get_by_text("3 matching runs").wait_for(timeout=RENDER_S * 1000)
            for seed in (0, 1, 2):
                page.get_by_text(f"base/synth/tiny/seed{seed}", exact=True).wait_for(timeout=RENDER_S * 1000)
            page.get_by_text(re.compile(r"^0\.714")).first.wait_for(timeout=RENDER_S * 1000)  # seed 2's test/mIoU
            page.get_by_text("test/mIoU", exact=True).first.wait_for(timeout=RENDER_S * 1000)  # the view's column
            page.get_by_text("paper.R1_IoU0.5", exact=True).first.wait_for(timeout=RENDER_S * 1000)
            body = page.inner_text("body")
            page.screenshot(path=str(screenshot))
        finally:
            browser.close()
    assert "table1/synth/tiny" not in body  # the parent run is not a row of the table's view
    assert "0.2844" in body  # the paper's mIoU for Base (28.44), as a fraction beside ours
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")
