"""scripts/bench_train.py on the tiny synthetic benchmark: what it builds and how it derives its ratios, never how fast.

Wall-clock values depend on the machine, so nothing here asserts on them: the checks are that the paths it times are
the networks it names (the reference copy with every reference path switched on and the fast one's weights, the
``--before`` network at 64 clips with SIL's T of 12) and that the printed ratios are the ratios of the printed times.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_train.py"
_spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
bench_train = importlib.util.module_from_spec(_spec)
sys.modules["bench_train"] = bench_train  # dataclasses resolve the module's annotations through sys.modules
_spec.loader.exec_module(bench_train)


@pytest.mark.parametrize("method", ["base", "sil"])
def test_the_timed_paths_are_the_networks_it_names(tiny, method):
    _, ds = tiny
    paths, _ = bench_train.build_paths(method, ds, "tiny", {}, None, True, torch.Generator().manual_seed(0))
    assert set(paths) == {"reference", "fast", "before"}
    ref, fast, before = paths["reference"].model, paths["fast"].model, paths["before"].model
    flagged = [m for m in ref.modules() if hasattr(type(m), "reference")]
    assert flagged and all(m.reference for m in flagged)
    assert not any(m.reference for m in fast.modules() if hasattr(type(m), "reference"))
    assert all(m.reference for m in before.modules() if hasattr(type(m), "reference"))
    for (name, a), (_, b) in zip(ref.state_dict().items(), fast.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # the same weights: only the code path differs
    ground = before.c.ground if method == "sil" else before.c
    assert ground.n_clips == 64 and paths["before"].split.videos.shape[1] == 64
    assert paths["before"].batch_size == 64 and paths["fast"].batch_size == paths["reference"].batch_size
    if method == "sil":
        assert before.c.T == 12


def test_it_prints_ratios_of_the_times_it_prints(tiny):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bench_train.main(["--methods", "base", "--profile", "tiny", "--steps", "1", "--warmup", "0", "--threads", "1",
                          "--before"])  # fmt: skip
    rows = {}
    for line in out.getvalue().splitlines():
        m = re.match(r"base\s+(reference|fast|before)\s+(\d+)\s+([\d.]+)\s+([\d.]+)%\s*(.*)$", line)
        if m:
            rows[m[1]] = (int(m[2]), float(m[3]), m[5])
    assert set(rows) == {"reference", "fast", "before"}
    (ref_ms, _, _), (fast_ms, fast_rate, fast_ratio), (before_ms, before_rate, before_ratio) = (
        rows["reference"], rows["fast"], rows["before"])  # fmt: skip
    assert float(fast_ratio.rstrip("x")) == pytest.approx(ref_ms / fast_ms, rel=0.02, abs=0.01)
    per_update, per_sample = re.match(r"([\d.]+)x per update, ([\d.]+)x per sample", before_ratio).groups()
    assert float(per_update) == pytest.approx(before_ms / fast_ms, rel=0.02, abs=0.01)
    assert float(per_sample) == pytest.approx(fast_rate / before_rate, rel=0.02, abs=0.01)  # samples/s, inverted
