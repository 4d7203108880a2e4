"""The method contract, at the bottom of the harness: what a method's run function receives and returns.

A method's ``run(ctx: RunContext) -> RunResult`` is called by the orchestrator (:mod:`bench.run`), which builds the
context once per (method, seed): it opens the tracked run, picks the device and seeds every generator
(:func:`set_seed`). Methods, the training loop (:mod:`bench.train`) and the stages (:mod:`bench.stages`) import this
module and never the orchestrator, so the import graph runs one way: orchestrator -> methods -> contract.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import datasets, tracking


@dataclass
class RunContext:
    """Everything a method's run function may use; built by the harness for one (method, seed).

    ``spec`` is the method's registry entry (``methods.registry.MethodSpec``; typed loosely here so that the
    contract does not import the methods). ``preloaded`` is a dataset opened already (a test's toy data, the
    calibration script's world); when it is None, :attr:`data` opens ``dataset_name`` at ``profile`` on first use.
    """

    spec: Any
    config: Any
    dataset_name: str
    profile: str
    seed: int
    device: Any
    log: tracking.RunLogger
    workdir: Path  # checkpoints of this (method, dataset, profile, seed, config) live here; resume reads them
    cache_dir: Path  # stage cache shared by all runs (pre-trained encoders, ASR models)
    preloaded: Any = None
    # a finished run's checkpoint: the loop scores its selected weights on the test splits and trains nothing
    # (``bench robustness``, :func:`bench.train.fit`); None for a run that trains
    evaluate_from: Path | None = None

    @property
    def data(self) -> Any:
        """The dataset, opened once per process and shared by every method in it."""
        if self.preloaded is None:
            self.preloaded = datasets.open_dataset(self.dataset_name, self.profile, self.device)
        return self.preloaded


@dataclass
class RunResult:
    """What a method hands back: test metrics from :mod:`bench.evaluate` (fractions), and how it chose them."""

    test: dict[str, float]
    val_best: dict[str, float] = field(default_factory=dict)
    selected_epoch: int | None = None
    predictions: Path | None = None  # the test predictions file in the evaluator's JSON-lines format
    dataset_hash: str | None = None
    # further test splits scored once with the same weights (the debiased ``test_ood``): metrics and predictions
    extra_tests: dict[str, dict[str, float]] = field(default_factory=dict)
    extra_predictions: dict[str, Path] = field(default_factory=dict)


def set_seed(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (the harness does it before every run and stage)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
