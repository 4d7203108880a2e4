"""Training speed of the grounding networks, the fast paths beside the straightforward ones: measured, never asserted.

For each ``--methods`` entry (base, base-text, sbase, sil: SIL's grounding network with AVCL) on ``--dataset`` /
``--profile`` this builds the network once, copies it with every part switched to its reference path (the code
before issue 15's speed work: the proposal map over every valid cell, the full ``[B, N, L, d]`` attention tensor),
and times training updates of the two **interleaved** on the same batches in one process, so that load from
other processes hits both alike. It prints, per method and path: ms per update (median), samples/s, the ratio
reference / fast, and the share of step time spent waiting for data (the index gather of the next batch).

SIL's grounding trains on its frozen encoder's features; here they are random features of the encoder's width,
two per transcript word (the two domains' CIF segments), which is what an update costs, without pre-training.
Losses and gradients of the two paths agree (``tests/test_speed_paths.py``); this script only times them.

``--before`` times a third network beside the two, interleaved as well: the small profile as it was before issue 15,
that is the same network on its reference paths at 64 clips per video and batch 64 (SIL also with T = 12 clips, the
paper's), on batches of its own (its clips are other tensors). Its ratios to the fast path are printed per update and
per training sample, since the batch differs: the first is what an update costs then and now, the second what the
same amount of training costs. The same-shape ratio above it is what the code paths alone gave.

Usage: ``.venv/bin/python scripts/bench_train.py --methods base,sil --profile small [--threads 2] [--before]``; the
old shapes on both paths: ``--set n_clips=64 --batch 64`` (SIL: ``--set ground.n_clips=64``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from dataclasses import dataclass

import torch

from bench import config as cfg
from bench import datasets
from bench.data import grounding, loader
from bench.tracking import runs_home
from methods import base, registry, sil


def use_reference(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose every part with a reference path runs it."""
    ref = copy.deepcopy(model)
    for module in ref.modules():
        if hasattr(type(module), "reference"):
            module.reference = True
    return ref


def with_sem(split: grounding.GroundingSplit, width: int, generator: torch.Generator) -> grounding.GroundingSplit:
    """The split with random ``sem`` features of two steps per transcript word (SIL's frozen-encoder output)."""
    lengths = 2 * split.queries["words_len"]
    sem = torch.randn(len(split), int(lengths.max()), width, generator=generator)
    sem = sem * (torch.arange(sem.shape[1])[None, :, None] < lengths[:, None, None])
    tensors = {**split.queries.tensors, "sem": sem, "sem_len": lengths}
    queries = loader.PaddedSplit(tensors, split.qids, split.queries.meta)
    return grounding.GroundingSplit(split.name, queries, split.videos)


def method_config(method: str, profile: str, overrides: dict[str, str]):
    """The method's profile configuration with ``--set`` overrides (SIL's grounding fields under ``ground.``)."""
    return cfg.apply_overrides(registry.get(method).config(profile), overrides)


# The small profile before issue 15: 64 clips (the paper's count, App. B.2) and batch 64, on the reference paths.
BEFORE_BATCH = 64


def before_overrides(method: str) -> dict[str, str]:
    """``--set`` keys that give the small profile's clip count before issue 15 (SIL: its grounding's, and T)."""
    return {"ground.n_clips": "64", "T": "12"} if method == "sil" else {"n_clips": "64"}


def build(method: str, c, data: grounding.GroundingData, generator: torch.Generator):
    """``(model, loss(model, batch), train split)`` of a method at configuration ``c``."""
    if method == "sil":
        model = sil.SILNet(c, data.train.videos.shape[-1], c.asp.d)
        return model, sil.sil_loss, with_sem(data.train, c.asp.d, generator)
    model = base.BaseNet(c, data.train.videos.shape[-1], data.word_vectors)
    return model, (base.weak_loss if c.supervision == "weak" else base.full_loss), data.train


@dataclass
class TimedPath:
    """One timed network: the model, the split its batches come from and their size."""

    model: torch.nn.Module
    split: grounding.GroundingSplit
    batch_size: int


def build_paths(method: str, ds, profile: str, overrides: dict[str, str], batch: int | None, before: bool,
                generator: torch.Generator) -> tuple[dict[str, TimedPath], object]:  # fmt: skip
    """The networks to time, ``reference`` and ``fast`` (the same weights and batches) and with ``before`` the small
    profile before issue 15 (reference paths, 64 clips, batch 64); and the method's loss."""
    device = torch.device("cpu")
    c = method_config(method, profile, overrides)
    ground = c.ground if method == "sil" else c  # SIL's grounding network is Base's, configured under .ground
    data = grounding.load(ds, runs_home() / "cache", device, ground.n_clips, progress=False)
    fast, loss_fn, split = build(method, c, data, generator)
    batch_size = batch or ground.train.batch_size
    paths = {"reference": TimedPath(use_reference(fast), split, batch_size), "fast": TimedPath(fast, split, batch_size)}
    if before:
        old = method_config(method, profile, {**overrides, **before_overrides(method)})
        old_data = grounding.load(ds, runs_home() / "cache", device, 64, progress=False)
        old_model, _, old_split = build(method, old, old_data, generator)
        paths["before"] = TimedPath(use_reference(old_model), old_split, BEFORE_BATCH)
    return paths, loss_fn


def ratio_text(name: str, medians: dict[str, float], paths: dict[str, TimedPath]) -> str:
    """The ratio column: reference / fast on the fast line; on the before line before / fast per update, then per
    training sample (its batch differs)."""
    if name == "fast":
        return f"{medians['reference'] / medians['fast']:.2f}x"
    if name == "before":
        per_sample = (medians["before"] / paths["before"].batch_size) / (medians["fast"] / paths["fast"].batch_size)
        return f"{medians['before'] / medians['fast']:.2f}x per update, {per_sample:.2f}x per sample"
    return ""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="base,base-text,sbase,sil")
    p.add_argument("--dataset", default="synth")
    p.add_argument("--profile", default="small")
    p.add_argument("--steps", type=int, default=8, help="timed updates per path and method")
    p.add_argument("--warmup", type=int, default=2, help="untimed updates per path first")
    p.add_argument("--batch", type=int, default=None, help="default: the profile's batch size")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, here the cores)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for both paths, e.g. --set n_clips=64 (SIL: --set ground.n_clips=64)",
    )
    p.add_argument(
        "--before",
        action="store_true",
        help="also time the small profile before issue 15 (reference paths, 64 clips, batch 64)",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = datasets.open_dataset(args.dataset, args.profile, torch.device("cpu"))
    print(f"{args.dataset}/{args.profile}, {torch.get_num_threads()} threads; medians over {args.steps} updates")
    print(f"{'method':10} {'path':9} {'ms/update':>10} {'samples/s':>10} {'data wait':>10} {'ratio':>7}")
    for method in args.methods.split(","):
        generator = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        overrides = cfg.parse_overrides(args.set)
        paths, loss_fn = build_paths(method, ds, args.profile, overrides, args.batch, args.before, generator)
        optimizers = {name: torch.optim.Adam(path.model.parameters(), lr=1e-4) for name, path in paths.items()}
        times: dict[str, list[float]] = {name: [] for name in paths}
        waits: dict[str, list[float]] = {name: [] for name in paths}
        streams = {name: _Stream(path.split, path.batch_size, generator) for name, path in paths.items()
                   if name != "reference"}  # fmt: skip
        for step in range(args.warmup + args.steps):
            drawn = {name: stream.next() for name, stream in streams.items()}
            drawn["reference"] = drawn["fast"]  # the same batch for the two paths of one network
            state = torch.get_rng_state()
            for name, path in paths.items():  # the same random draws for every path
                torch.set_rng_state(state)
                batch, wait = drawn[name]
                path.model.train()
                t1 = time.perf_counter()
                loss, _ = loss_fn(path.model, batch)
                optimizers[name].zero_grad(set_to_none=True)
                loss.backward()
                optimizers[name].step()
                if step >= args.warmup:
                    times[name].append(time.perf_counter() - t1)
                    waits[name].append(wait)
        medians = {name: statistics.median(t) for name, t in times.items()}
        for name, path in paths.items():
            share = 100 * statistics.median(waits[name]) / (medians[name] + statistics.median(waits[name]))
            print(f"{method:10} {name:9} {1000 * medians[name]:10.0f} {path.batch_size / medians[name]:10.1f} "
                  f"{share:9.2f}% {ratio_text(name, medians, paths):>7}")  # fmt: skip
        if args.before:
            print(f"{'':10} (before: reference paths at 64 clips, batch {BEFORE_BATCH}; ratios against fast)")


class _Stream:
    """Shuffled batches of one split, epoch after epoch; ``next()`` gives a batch and the seconds spent getting it."""

    def __init__(self, split: grounding.GroundingSplit, batch_size: int, generator: torch.Generator) -> None:
        self.split, self.batch_size, self.generator = split, batch_size, generator
        self.batches = split.batches(batch_size, shuffle=True, generator=generator)

    def next(self) -> tuple[dict, float]:
        t0 = time.perf_counter()
        batch = next(self.batches, None)
        if batch is None:  # a new epoch
            self.batches = self.split.batches(self.batch_size, shuffle=True, generator=self.generator)
            batch = next(self.batches)
        return batch, time.perf_counter() - t0


if __name__ == "__main__":
    main()
