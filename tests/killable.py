"""``bench run`` in a process of its own, with a test-only method that trains with the real loop and can be killed.

``python killable.py [--kill-after-epoch N [--signal TERM]] [--start-at UNIX_TIME] -- BENCH RUN ARGS...`` registers
the stand-in method ``base`` (a Table 1 row, so ``bench table 1`` shows it) on a stand-in ``synth`` dataset, then runs
``bench run ARGS``. The method trains a one-weight model for three epochs with :func:`bench.train.fit`, so its
checkpoints and its resume are the suite's own; ``--kill-after-epoch N`` sends the process SIGKILL once epoch N's
checkpoint is on disk, which no Python code survives (the run is left RUNNING, as a real ``kill -9`` leaves it);
``--signal TERM`` sends SIGTERM instead, as a plain ``kill PID`` does.
``--start-at`` waits until that time after the imports, so that two processes open the store at the same moment.

The environment (``WSVG_HOME``, ``PYTHONPATH``) comes from the test that starts it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from bench import cli, datasets, evaluate, train
from bench.config import TrainConfig
from bench.context import RunContext, RunResult
from methods import registry

EPOCHS = 3
KILL_AFTER: int | None = None
SIGNAL = signal.SIGKILL


@dataclass(frozen=True)
class ToyConfig:
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=EPOCHS, batch_size=2, lr=0.1, warmup_updates=0)
    )


@dataclass
class ToyData:
    name: str = "toy"
    content_hash: str = "toyhash00002"


def toy_run(ctx: RunContext) -> RunResult:
    """Fit ``w`` so that ``w * x`` predicts the end of the moment [0, 50] of 100 s videos; test scores it."""
    model = nn.Linear(1, 1, bias=False)
    x = torch.ones(4, 1)

    def loss(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return ((model(batch["x"]) - 0.5) ** 2).mean(), {}

    def predict(path: Path | None) -> dict[str, float]:
        end = float(model(x[:1]).clamp(0.01, 1.0)) * 100.0
        pred = torch.tensor([[[0.0, end]]] * 4)
        gt = torch.tensor([[0.0, 50.0]] * 4)
        out = path or ctx.workdir / "val_predictions.jsonl"
        evaluate.write_predictions(out, [f"q{i}" for i in range(4)], torch.full((4,), 100.0), gt, pred)
        return evaluate.evaluate_file(out)

    def on_epoch_end(epoch: int) -> None:
        if epoch == KILL_AFTER:
            os.kill(os.getpid(), SIGNAL)

    task = train.Task(model, loss, lambda gen, shard: iter([{"x": x}]), 1, lambda: predict(None), predict)
    out = train.fit(task, ctx.config.train, ctx, on_epoch_end=on_epoch_end)
    return RunResult(out.test, out.val_best, out.selected_epoch, out.predictions, "toyhash00002")


def register() -> None:
    """The stand-ins, as ``tests/conftest.py``'s ``toy_method`` installs them, for a process of its own."""
    registry._REGISTRY.clear()  # the real methods stay out: only the stand-in is registered
    registry.register(registry.MethodSpec(
        name="base",
        title="Base (killable test stand-in)",
        stages=("ground",),
        query="speech",
        supervision="weak",
        run=toy_run,
        config=lambda profile: ToyConfig(),
    ))
    registry._loaded = True
    datasets.register(datasets.DatasetSpec("synth", "toy stand-in", open=lambda profile, device: ToyData()))


def main(argv: list[str]) -> int:
    global KILL_AFTER, SIGNAL
    parser = argparse.ArgumentParser()
    parser.add_argument("--kill-after-epoch", type=int)
    parser.add_argument("--signal", choices=("KILL", "TERM"), default="KILL")
    parser.add_argument("--start-at", type=float)
    parser.add_argument("bench", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    KILL_AFTER, SIGNAL = args.kill_after_epoch, getattr(signal, f"SIG{args.signal}")
    register()
    if args.start_at is not None:
        time.sleep(max(0.0, args.start_at - time.time()))
    bench_args = args.bench[1:] if args.bench[:1] == ["--"] else args.bench
    return cli.main(["run", *bench_args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
