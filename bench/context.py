"""The method contract, at the bottom of the harness: what a method declares, receives and returns.

A method module registers its entry once (:class:`MethodSpec`, :func:`register`: its stages, query input and
supervision, and its ``run``); :mod:`methods.registry` loads every method module and answers ``get``.

A method's ``run(ctx: RunContext) -> RunResult`` is called by the orchestrator (:mod:`bench.run`), which builds the
context once per (method, seed): it opens the tracked run, picks the device and seeds every generator
(:func:`set_seed`). Methods, the training loop (:mod:`bench.train`) and the stages (:mod:`bench.stages`) import this
module and never the orchestrator, so the import graph runs one way: orchestrator -> methods -> contract.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench import datasets, tracking


@dataclass
class RunContext:
    """Everything a method's run function may use; built by the harness for one (method, seed).

    ``spec`` is the method's registry entry (:class:`MethodSpec`). ``preloaded`` is a dataset opened already (a
    test's toy data, the calibration script's world); when it is None, :attr:`data` opens ``dataset_name`` at
    ``profile`` on first use.
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
    # also score the swap test's test_swapped split (:mod:`bench.swap`); ``bench run`` sets it where the data
    # knows its queries' concepts (synth)
    swap_test: bool = False

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


# ---------------------------------------------------------------------------------------------------------------
# What a method declares: its registry entry

Stage = Literal["pretrain", "asr", "ground"]
Query = Literal["speech", "asr-text", "gold-text", "concept", "none"]
Supervision = Literal["weak", "full", "none"]

STAGES: tuple[str, ...] = ("pretrain", "asr", "ground")
QUERIES: tuple[str, ...] = ("speech", "asr-text", "gold-text", "concept", "none")  # concept: the oracle's hidden label
SUPERVISIONS: tuple[str, ...] = ("weak", "full", "none")


@dataclass(frozen=True)
class MethodSpec:
    """What the harness needs to know about a method, without building it.

    ``run`` is the method's entry point: ``run(ctx) -> RunResult`` (see :mod:`bench.run`); it is
    ``None`` for planned methods. ``config`` maps a profile name to the method's typed configuration. The rows a
    method fills are not a field: :attr:`rows` reads them from the tables, the one place that says so (issue 16).
    """

    name: str
    title: str
    stages: tuple[str, ...]
    query: str
    supervision: str
    description: str = ""
    run: Callable[..., Any] | None = None
    config: Callable[[str], Any] | None = None
    issue: int | None = None
    # its predictions do not depend on the seed (a fixed span, a deterministic fit): ``bench run`` runs one seed
    seed_free: bool = False

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip().lower() or " " in self.name:
            raise ValueError(f"method name {self.name!r} must be lower-case with no spaces")
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise ValueError(f"method {self.name}: unknown stage(s) {bad}; choose from {STAGES}")
        if self.query not in QUERIES:
            raise ValueError(f"method {self.name}: query {self.query!r} not in {QUERIES}")
        if self.supervision not in SUPERVISIONS:
            raise ValueError(f"method {self.name}: supervision {self.supervision!r} not in {SUPERVISIONS}")

    @property
    def blind(self) -> bool:
        """Reads only the annotations: no query input, no supervision (random, prior, whole video and variants)."""
        return self.query == "none" and self.supervision == "none"

    @property
    def implemented(self) -> bool:
        return self.run is not None

    @property
    def source(self) -> str:
        """Where ``run`` is defined, e.g. ``methods/base.py:run``: the file a reader opens to follow the method from
        ``bench run`` (``bench methods`` lists it); ``-`` for a planned method."""
        fn = self.run
        while isinstance(fn, functools.partial):
            fn = fn.func
        if fn is None:
            return "-"
        return f"{fn.__module__.replace('.', '/')}.py:{fn.__qualname__}"

    @property
    def rows(self) -> tuple[str, ...]:
        """The table rows this method fills, ``tableN:row-id`` in table order, as ``tables/*.toml`` name them."""
        from bench import tables  # on use: registering a method reads no table

        return tuple(f"table{number}:{row}" for number, row in tables.rows_by_method().get(self.name, ()))


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a runnable method. Registering a name twice is an error, never a silent override."""
    if spec.run is None:
        raise ValueError(f"method {spec.name}: a registered method needs a run function")
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


FINETUNE_SUFFIX = "-ft"


def finetuned(spec: MethodSpec, issue: int = 17) -> MethodSpec:
    """``<name>-ft``: ``spec`` with its pre-trained speech encoder fine-tuned in grounding (``finetune = True`` in
    its configuration), the run that fills the row's "mIoU (finetune)" cell in Table 1 (``tables/table01.toml``
    names it as the row's ``finetune`` method). ``bench run --method <name> --set finetune=true`` is the same run."""
    assert spec.config is not None, f"method {spec.name}: a fine-tuned variant needs a configuration"
    config = spec.config

    def tuned(profile: str) -> Any:
        return dataclasses.replace(config(profile), finetune=True)

    desc = f"{spec.description}; the pre-trained speech encoder fine-tuned with the grounding network (Table 1)"
    return dataclasses.replace(spec, name=spec.name + FINETUNE_SUFFIX, title=f"{spec.title} (fine-tuned encoder)",
                               description=desc, config=tuned, issue=issue)  # fmt: skip
