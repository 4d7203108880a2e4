"""Shared fixtures: an isolated run directory, and a test-only method + dataset for the harness tests.

The harness (tracking, tables, ``bench run``) is tested with a tiny method whose predictions are known by
hand, so every number a test asserts can be derived on paper. It is registered only inside the tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # under `pytest -n 2` each worker has one core: a second torch thread per
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # worker spins against the other worker (measured: 7x slower
    # training tests); set before torch is imported, and inherited by the subprocesses the tests start

import pytest
import torch

from bench import context as spec_store
from bench import datasets, evaluate
from bench.context import RunContext, RunResult
from methods import registry

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WSVG_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny synthetic benchmark, built once per test module in its own run directory: ``(home, dataset)``.

    Module-scoped (a test module's end-to-end runs share one build and one tracking store), so the environment is
    set and restored by hand rather than with ``monkeypatch``, which is function-scoped.
    """
    home = tmp_path_factory.mktemp("runs")
    saved = {k: os.environ.get(k) for k in ("WSVG_HOME", "MLFLOW_TRACKING_URI", "RANK", "WSVG_QUIET")}
    os.environ.update(WSVG_HOME=str(home), WSVG_QUIET="1")
    for k in ("MLFLOW_TRACKING_URI", "RANK"):
        os.environ.pop(k, None)
    data = datasets.open_dataset("synth", "tiny", torch.device("cpu"))
    yield home, data
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh suite run directory with its own sqlite store."""
    monkeypatch.setenv("WSVG_HOME", str(tmp_path / "runs"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    return tmp_path / "runs"


@dataclass(frozen=True)
class ShiftConfig:
    """The test method's config: it predicts the true span with its end pushed ``shift`` s per seed."""

    shift: float = 10.0
    fail: bool = False


@dataclass
class ToyData:
    """Four queries of 100 s videos, each with the true moment [0, 50]."""

    name: str = "toy"
    content_hash: str = "toyhash00001"
    gt: torch.Tensor = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.gt = torch.tensor([[0.0, 50.0]] * 4)


def shift_run(ctx: RunContext) -> RunResult:
    """Predict [0, 50 + shift * seed]: seed 0 is exact (IoU 1), seed 1 IoU 50/60, seed 2 IoU 50/70."""
    if ctx.config.fail:
        raise RuntimeError("planned failure")
    data = ctx.data
    end = 50.0 + ctx.config.shift * ctx.seed
    pred = torch.tensor([[[0.0, end], [60.0, 90.0]]] * 4)
    for epoch in range(2):
        ctx.log.log_metrics({"R1@0.5": 0.5 * epoch}, step=epoch, prefix="val/")
    path = ctx.workdir / "test_predictions.jsonl"
    duration = torch.full((4,), 100.0)
    evaluate.write_predictions(path, [f"q{i}" for i in range(4)], duration, data.gt, pred)
    return RunResult(
        test=evaluate.evaluate_file(path),
        val_best={"R1@0.5": 0.5},
        selected_epoch=1,
        predictions=path,
        dataset_hash=data.content_hash,
    )


@pytest.fixture
def toy_method(monkeypatch):
    """Register the test method under the name ``base`` (a Table 1/3 row) and the dataset ``synth``."""
    spec = registry.MethodSpec(
        name="base",
        title="Base (test stand-in)",
        stages=("ground",),
        query="speech",
        supervision="weak",
        run=shift_run,
        config=lambda profile: ShiftConfig(),
    )
    monkeypatch.setattr(spec_store, "_REGISTRY", {"base": spec})
    monkeypatch.setattr(registry, "_loaded", True)  # keep the real methods out: only the stand-in is registered
    monkeypatch.setattr(
        datasets,
        "_DATASETS",
        {
            **datasets._DATASETS,
            "synth": datasets.DatasetSpec("synth", "toy stand-in", open=lambda profile, device: ToyData()),
        },
    )
    monkeypatch.setattr(datasets, "_OPENED", {})
    return spec
