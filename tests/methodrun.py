"""One method run outside the CLI, the way the tiny end-to-end tests run every method: its registered
configuration for ``profile`` with ``--set``-style overrides, the global seed set, a tracked run, and the data
handed in already built (``ctx.preloaded``), so a test module builds its benchmark once and each run only trains."""

from __future__ import annotations

from pathlib import Path

import torch

from bench import config, tracking
from bench.context import RunContext, RunResult, set_seed
from methods import registry


def run_method(name: str, data, workdir: Path, cache: Path, seed: int = 0, profile: str = "tiny",
               swap_test: bool = False, **overrides) -> tuple[RunResult, str]:  # fmt: skip
    """``(result, tracked run id)`` of method ``name`` on the synthetic ``data``; ``workdir`` holds its checkpoints
    (give each run its own, so a checkpoint never leaks into another run), ``cache`` its stages and features;
    ``swap_test`` also scores the swap test's ``test_swapped`` (as ``bench run`` does on synth)."""
    spec = registry.get(name)
    c = config.apply_overrides(spec.config(profile), {k: str(v) for k, v in overrides.items()})
    set_seed(seed)
    with tracking.start_run(f"test/{name}", {"method": name}) as log:
        ctx = RunContext(spec, c, "synth", profile, seed, torch.device("cpu"), log, workdir, cache, swap_test=swap_test)
        ctx.preloaded = data
        return spec.run(ctx), log.run_id
