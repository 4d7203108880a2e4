"""The training loop every method reuses: Adam, warm-up then inverse square root, clipping, checkpoints, resume.

A method describes one training problem as a :class:`Task` (model, loss of a batch, the epoch's batches, how to
score val and test) and calls :func:`fit`. The loop is the same for all methods:

- Adam (App. B.2) with fairseq's ``inverse_sqrt`` schedule, as the original code runs it: the learning rate rises
  linearly from ``warmup_init_lr`` to ``lr`` over ``warmup_updates`` updates, then decays as
  ``lr * sqrt(warmup_updates / update)``; gradient norm clipped to ``grad_clip``; weight decay ``weight_decay``.
- Seeds: the harness seeds torch, numpy and ``random``; the batch order comes from a ``torch.Generator`` seeded
  with the run's seed. On the CPU the same seed gives the same metrics (tested).
- After every epoch: validate, log, and write a checkpoint atomically (temporary file + ``os.replace``) holding
  the model, optimizer, update count, every random state, the history and the best epoch so far. A killed run
  started again with the same configuration resumes after its last finished epoch and ends with the same metrics
  as an uninterrupted one (tested); the earlier epochs' metrics are logged again into the new MLflow run, so each
  run's curves are whole.
- The best epoch is chosen on the validation split only (``select_on``, ties keep the earlier epoch); the test
  split is scored once, with the selected weights, at the end.
- Under ``torchrun`` (:mod:`bench.dist`): the global batch is split over the processes, gradients are averaged
  after each backward, every rank validates and selects alike, and rank 0 alone writes checkpoints and
  predictions.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bench import dist
from bench.atomic import save_atomic
from bench.config import TrainConfig
from bench.data.errors import DataError
from bench.dist import Shard

CHECKPOINT = "checkpoint.pt"
FORMAT = "wsvg-checkpoint-v1"


@dataclass
class Task:
    """One training problem, as a method hands it to :func:`fit`."""

    model: nn.Module
    loss: Callable[[dict[str, Tensor]], tuple[Tensor, dict[str, float]]]  # batch -> (loss, scalars to log)
    # one shuffled training epoch of this process's shard, batches of ``shard.batch_size(global batch)``
    batches: Callable[[torch.Generator, Shard], Iterable[dict[str, Tensor]]]
    n_batches: int
    validate: Callable[[], dict[str, float]]  # metrics on the validation split (fractions)
    test: Callable[[Path | None], dict[str, float]]  # writes test predictions to the path (if any), returns metrics
    # further test splits by name (``test_ood``), each scored once like ``test`` into ``<name>_predictions.jsonl``
    extra_tests: dict[str, Callable[[Path | None], dict[str, float]]] = field(default_factory=dict)


@dataclass
class FitResult:
    test: dict[str, float]
    val_best: dict[str, float]
    selected_epoch: int
    predictions: Path
    resumed_from: int  # epochs already done when this process started (0 = a fresh run)
    extra_tests: dict[str, dict[str, float]] = field(default_factory=dict)
    extra_predictions: dict[str, Path] = field(default_factory=dict)


def learning_rate(update: int, cfg: TrainConfig) -> float:
    """The rate for update ``update`` (1-based): linear warm-up, then inverse square root (fairseq ``inverse_sqrt``)."""
    if cfg.warmup_updates > 0 and update <= cfg.warmup_updates:
        return cfg.warmup_init_lr + (cfg.lr - cfg.warmup_init_lr) * update / cfg.warmup_updates
    return cfg.lr * math.sqrt(max(cfg.warmup_updates, 1) / update)


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "batches": generator.get_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["batches"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file means the same thing
        raise DataError(
            path, f"checkpoint is unreadable ({type(err).__name__})", "delete it to train from scratch"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DataError(path, "not a checkpoint of this suite", "delete it to train from scratch")
    return state


def fit(task: Task, cfg: TrainConfig, ctx: Any, select_on: str = "R1@0.5",
        on_epoch_end: Callable[[int], None] | None = None) -> FitResult:  # fmt: skip
    """Train ``task`` for ``cfg.epochs`` epochs (resuming from ``ctx.workdir``), select on val, test once.

    ``ctx`` is the harness's :class:`bench.context.RunContext` (seed, logger, workdir). ``on_epoch_end(epoch)`` runs
    after each epoch's checkpoint is on disk (the tests use it to kill a run at a known point).
    """
    from tqdm import tqdm

    if getattr(ctx, "evaluate_from", None) is not None:
        return evaluate_checkpoint(task, cfg, ctx)
    model = task.model
    shard = dist.init(ctx.device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(ctx.seed)
    path = Path(ctx.workdir) / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(path)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": 0, "score": -math.inf, "val": {}, "model": None}
    update, start = 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"], generator)
        update, start, history, best = state["update"], state["epoch"], state["history"], state["best"]
        for record in history:  # the new run's curves start where the killed one's did
            ctx.log.log_metrics(record["train"], step=record["epoch"], prefix="train/")
            ctx.log.log_metrics(record["val"], step=record["epoch"], prefix="val/")
    dist.broadcast_model(model)  # identical weights on every rank, whatever each one's initialisation drew
    resumed_from = start
    ctx.log.log_params({"resumed_from_epoch": resumed_from, "select_on": select_on})

    for epoch in range(start + 1, cfg.epochs + 1):
        model.train()
        sums: dict[str, float] = {}
        count, t0 = 0, time.perf_counter()
        bar = tqdm(task.batches(generator, shard), total=task.n_batches, desc=f"epoch {epoch}/{cfg.epochs}",
                   leave=False, disable=None if shard.main else True)  # fmt: skip
        for batch in bar:
            update += 1
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(update, cfg)
            loss, scalars = task.loss(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch}, update {update}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            dist.average_gradients(params, shard.world)
            grad_norm = nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            for k, v in {"loss": loss.item(), "grad_norm": float(grad_norm), **scalars}.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            bar.set_postfix(loss=f"{sums['loss'] / count:.4f}")
        train = {k: v / max(count, 1) for k, v in sums.items()}
        train.update(lr=learning_rate(max(update, 1), cfg), seconds=time.perf_counter() - t0)
        model.eval()
        with torch.no_grad():
            val = task.validate()
        history.append({"epoch": epoch, "train": train, "val": val})
        ctx.log.log_metrics(train, step=epoch, prefix="train/")
        ctx.log.log_metrics(val, step=epoch, prefix="val/")
        if select_on not in val:
            raise KeyError(f"select_on={select_on!r} is not among the validation metrics {sorted(val)}")
        if val[select_on] > best["score"]:
            best = {"epoch": epoch, "score": val[select_on], "val": val, "model": copy.deepcopy(model.state_dict())}
        if shard.main:
            _print_epoch(epoch, cfg.epochs, train, val, select_on)
        checkpoint = {
            "format": FORMAT,
            "epoch": epoch,
            "update": update,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": _rng_state(generator),
            "history": history,
            "best": best,
        }
        if shard.main:
            save_atomic(checkpoint, path)
        dist.barrier()  # no rank runs ahead of a checkpoint that a resume would read
        if on_epoch_end is not None:
            on_epoch_end(epoch)

    if best["model"] is None:
        raise RuntimeError(f"no epoch was trained (epochs = {cfg.epochs})")
    model.load_state_dict(best["model"])
    model.eval()
    predictions = Path(ctx.workdir) / "test_predictions.jsonl"
    extra_paths = {name: Path(ctx.workdir) / f"{name}_predictions.jsonl" for name in task.extra_tests}
    with torch.no_grad():
        test = task.test(predictions if shard.main else None)
        extra = {name: fn(extra_paths[name] if shard.main else None) for name, fn in task.extra_tests.items()}
    dist.barrier()
    return FitResult(test, best["val"], best["epoch"], predictions, resumed_from, extra, extra_paths)


def evaluate_checkpoint(task: Task, cfg: TrainConfig, ctx: Any) -> FitResult:
    """Score the weights a finished run selected (``ctx.evaluate_from``, its checkpoint) on the test splits; no
    training.

    ``bench robustness`` evaluates a trained model on other test speech this way. Only a checkpoint whose training
    reached ``cfg.epochs`` is accepted: the weights are the ones its run selected on val and tested, so nothing is
    chosen here, and val is not scored again. Predictions go to ``ctx.workdir``, never the source run's folder.
    """
    path = Path(ctx.evaluate_from)
    state = load_checkpoint(path)
    if state is None:
        raise DataError(path, "no checkpoint of the source run", "run `bench run` of this method and seed first")
    if state["epoch"] < cfg.epochs or state["best"]["model"] is None:
        raise DataError(path, f"training stopped at epoch {state['epoch']} of {cfg.epochs}",
                        "finish the source run with the same `bench run` command (it resumes)")  # fmt: skip
    shard = dist.init(ctx.device)
    task.model.load_state_dict(state["best"]["model"])
    task.model.eval()
    predictions = Path(ctx.workdir) / "test_predictions.jsonl"
    extra_paths = {name: Path(ctx.workdir) / f"{name}_predictions.jsonl" for name in task.extra_tests}
    with torch.no_grad():
        test = task.test(predictions if shard.main else None)
        extra = {name: fn(extra_paths[name] if shard.main else None) for name, fn in task.extra_tests.items()}
    best = state["best"]
    return FitResult(test, best["val"], best["epoch"], predictions, state["epoch"], extra, extra_paths)


def _print_epoch(epoch: int, epochs: int, train: dict[str, float], val: dict[str, float], select_on: str) -> None:
    if os.environ.get("WSVG_QUIET"):
        return
    extra = "".join(f" {k} {train[k]:.4f}" for k in ("mil", "div", "avcl", "bce") if k in train)
    head = f"  epoch {epoch}/{epochs}: loss {train['loss']:.4f}{extra} ({train['seconds']:.0f} s) | val "
    if "mIoU" not in val:  # not a grounding task (pre-training, ASR): its own validation numbers, unscaled
        print(head + " ".join(f"{k} {v:.4f}" for k, v in val.items()), flush=True)
        return
    print(
        head + f"{select_on} {100 * val[select_on]:.2f} mIoU {100 * val['mIoU']:.2f} "
        f"centre-in {100 * val.get('centre_in', float('nan')):.0f}% length {val.get('pred_len', float('nan')):.2f}",
        flush=True,
    )


def fit_grounding(ctx: Any, model: nn.Module, loss: Callable[[dict[str, Tensor]], tuple[Tensor, dict[str, float]]],
                  data: Any, cfg: TrainConfig, select_on: str,
                  score: Callable[[Any, Path | None], dict[str, float]]) -> Any:  # fmt: skip
    """The grounding methods' :func:`fit`: shuffled batches of ``data.train`` (this rank's shard), ``score(split,
    predictions path or None)`` on ``data.val`` after each epoch and once on ``data.test`` (and on each further test
    split of the data, ``data.extra_tests``: the debiased ``test_ood``; with ``ctx.swap_test`` on data that knows
    its queries' concepts, also the swap test's ``test_swapped``, :mod:`bench.swap`); a :class:`RunResult`."""
    from bench import swap
    from bench.context import RunResult

    if getattr(ctx, "swap_test", False) and swap.available(ctx.data):
        data, n_swapped = swap.with_swapped_test(data, ctx.data)
        if ctx.log is not None:
            ctx.log.log_params({"swap_test.n_swapped": n_swapped, "swap_test.n_test": len(data.test)})
    train = data.train
    task = Task(
        model=model,
        loss=loss,
        batches=lambda gen, shard: train.batches(
            shard.batch_size(cfg.batch_size), shuffle=True, generator=gen, rank=shard.rank, world_size=shard.world
        ),
        n_batches=-(-len(train) // cfg.batch_size),
        validate=lambda: score(data.val, None),
        test=lambda path: score(data.test, path),
        extra_tests={name: partial(score, split) for name, split in data.extra_tests.items()},
    )
    out = fit(task, cfg, ctx, select_on)
    return RunResult(out.test, out.val_best, out.selected_epoch, out.predictions, data.content_hash,
                     out.extra_tests, out.extra_predictions)  # fmt: skip
