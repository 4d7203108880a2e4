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

Usage: ``.venv/bin/python scripts/bench_train.py --methods base,sil --profile small [--threads 2]``; the small
profile before issue 15 (64 clips, batch 64): ``--set n_clips=64 --batch 64`` (SIL: ``--set ground.n_clips=64``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

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


def build(method: str, c, data: grounding.GroundingData, generator: torch.Generator):
    """``(model, loss(model, batch), train split)`` of a method at configuration ``c``."""
    if method == "sil":
        model = sil.SILNet(c, data.train.videos.shape[-1], c.asp.d)
        return model, sil.sil_loss, with_sem(data.train, c.asp.d, generator)
    model = base.BaseNet(c, data.train.videos.shape[-1], data.word_vectors)
    return model, (base.weak_loss if c.supervision == "weak" else base.full_loss), data.train


def main() -> None:
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
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    ds = datasets.open_dataset(args.dataset, args.profile, device)
    print(f"{args.dataset}/{args.profile}, {torch.get_num_threads()} threads; medians over {args.steps} updates")
    print(f"{'method':10} {'path':9} {'ms/update':>10} {'samples/s':>10} {'data wait':>10} {'ratio':>7}")
    for method in args.methods.split(","):
        generator = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        c = method_config(method, args.profile, cfg.parse_overrides(args.set))
        ground = c.ground if method == "sil" else c  # SIL's grounding network is Base's, configured under .ground
        data = grounding.load(ds, runs_home() / "cache", device, ground.n_clips, progress=False)
        fast, loss_fn, split = build(method, c, data, generator)
        ref = use_reference(fast)
        batch_size = args.batch or ground.train.batch_size
        paths = {"reference": ref, "fast": fast}
        optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in paths.items()}
        times: dict[str, list[float]] = {name: [] for name in paths}
        waits: dict[str, list[float]] = {name: [] for name in paths}
        batches = split.batches(batch_size, shuffle=True, generator=generator)
        for step in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            batch = next(batches, None)
            if batch is None:  # a new epoch
                batches = split.batches(batch_size, shuffle=True, generator=generator)
                batch = next(batches)
            wait = time.perf_counter() - t0
            state = torch.get_rng_state()
            for name, model in paths.items():  # the same batch and the same random draws for both paths
                torch.set_rng_state(state)
                model.train()
                t1 = time.perf_counter()
                loss, _ = loss_fn(model, batch)
                optimizers[name].zero_grad(set_to_none=True)
                loss.backward()
                optimizers[name].step()
                if step >= args.warmup:
                    times[name].append(time.perf_counter() - t1)
                    waits[name].append(wait)
        medians = {name: statistics.median(t) for name, t in times.items()}
        for name in paths:
            share = 100 * statistics.median(waits[name]) / (medians[name] + statistics.median(waits[name]))
            ratio = f"{medians['reference'] / medians['fast']:.2f}x" if name == "fast" else ""
            print(f"{method:10} {name:9} {1000 * medians[name]:10.0f} {batch_size / medians[name]:10.1f} "
                  f"{share:9.2f}% {ratio:>7}")  # fmt: skip


if __name__ == "__main__":
    main()
