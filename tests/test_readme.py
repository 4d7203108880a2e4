"""The README's set-up commands are the ones CI runs, and its command table matches the CLI."""

from __future__ import annotations

import re
from pathlib import Path

from bench import cli

REPO = Path(__file__).resolve().parents[1]


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    blocks = _bash_blocks()
    assert len(blocks) == 2, "the README gives exactly two set-up commands"
    test_command = blocks[1].strip()
    ci_lines = [ln for ln in (REPO / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert test_command in ci_lines


def test_main_command_runs_bench_on_the_default_dataset():
    main_command = _bash_blocks()[0].strip()
    assert main_command.startswith("python3 -m venv .venv")
    assert "bench run --method sil --table 1" in main_command and "--dataset" not in main_command


def test_readme_lists_every_verb():
    text = (REPO / "README.md").read_text()
    for verb in cli.VERBS:
        assert f"`bench {verb}" in text, verb
