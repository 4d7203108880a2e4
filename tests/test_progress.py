"""Progress bars draw on a terminal only: redirected to a log file, stderr gets no bar and no carriage return.

``bench data synth --force`` builds the tiny benchmark in a subprocess twice, once with stderr a file and once with
stderr a pseudo-terminal (``pty``), where tqdm's bars do show: so the test sees both branches of the same code.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

BENCH = [sys.executable, "-m", "bench.cli", "data", "synth", "--profile", "tiny", "--force"]


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "WSVG_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("WSVG_QUIET", None)
    return env


def test_no_progress_bar_in_a_log_file(tmp_path):
    log = tmp_path / "build.log"
    with log.open("wb") as err:
        done = subprocess.run(BENCH, env=_env(tmp_path / "runs"), stdout=subprocess.PIPE, stderr=err, timeout=600)
    assert done.returncode == 0, log.read_text()
    text = log.read_bytes()
    assert b"\r" not in text and b"\x1b[" not in text and b"synth features" not in text
    assert b"content hash" in done.stdout  # the build did run


def test_progress_bars_on_a_terminal(tmp_path):
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns: room for a bar
    try:
        proc = subprocess.Popen(BENCH, env=_env(tmp_path / "runs"), stdout=subprocess.DEVNULL, stderr=follower)
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(timeout=600) == 0
    finally:
        os.close(leader)
    assert b"synth features" in seen and b"\r" in seen
