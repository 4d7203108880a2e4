"""Benchmark: the device-resident BatchIterator against a plain torch DataLoader over the same data.

Builds a synthetic split of realistic size in memory (default 4,000 queries: video [64, 500] float32,
log-mel [50..300, 80], words [3..20] int64, span, duration) and measures, side by side in one run,
batches per second of

- ``BatchIterator`` over a ``PaddedSplit`` held on the device (a batch is an index gather + trim), and
- ``torch.utils.data.DataLoader`` over a map-style Dataset returning per-sample tensors, with a
  ``collate_fn`` that pads (``pad_sequence``), each batch then moved to the device,

batch size 64, shuffled, 2 epochs each, a few repetitions interleaved (A B A B ...). It prints the median
rate of each and their ratio. This is a measurement, not a test: nothing is asserted.

    .venv/bin/python scripts/bench_loader.py [--n 4000] [--device auto|cpu|cuda] [--workers 0] [--repeats 3]
        [--threads N]

On a CPU shared with other busy processes, torch's multi-threaded copies (index_select, stack) can stall
on their thread barriers and both rates collapse; ``--threads 1`` then gives the steadier comparison.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from bench.data.loader import BatchIterator, PaddedSplit


def synthetic_items(n: int, seed: int) -> tuple[list[str], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    mel_len = torch.randint(50, 301, (n,), generator=g).tolist()
    words_len = torch.randint(3, 21, (n,), generator=g).tolist()
    items = []
    for i in range(n):
        start = float(torch.rand((), generator=g)) * 100
        items.append(
            {
                "video": torch.randn(64, 500, generator=g),
                "mel": torch.randn(mel_len[i], 80, generator=g),
                "words": torch.randint(1, 10_000, (words_len[i],), generator=g),
                "span": torch.tensor([start, start + 20.0]),
                "duration": torch.tensor(150.0),
            }
        )
    return [f"v{i}#0" for i in range(n)], items


class ItemDataset(Dataset):
    """The baseline's map-style dataset: one dict of per-sample tensors per query."""

    def __init__(self, items: list[dict[str, torch.Tensor]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.items[i]


def pad_collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("mel", "words"):
        seqs = [s[name] for s in samples]
        out[name] = pad_sequence(seqs, batch_first=True)
        out[name + "_len"] = torch.tensor([x.shape[0] for x in seqs])
    for name in ("video", "span", "duration"):
        out[name] = torch.stack([s[name] for s in samples])
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batch_iterator(split: PaddedSplit, batch_size: int, epochs: int, seed: int, device: torch.device) -> float:
    it = BatchIterator(split, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    sync(device)
    start, batches = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in it:
            batches += 1
            last = batch
    sync(device)
    assert last["video"].device.type == device.type
    return batches / (time.perf_counter() - start)


def time_dataloader(
    items: list[dict[str, torch.Tensor]], batch_size: int, epochs: int, seed: int, device: torch.device, workers: int
) -> float:
    loader = DataLoader(
        ItemDataset(items),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=pad_collate,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    sync(device)
    start, batches = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            batches += 1
    sync(device)
    return batches / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000, help="queries (default 4000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=0, help="DataLoader num_workers (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's own choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)

    t0 = time.perf_counter()
    ids, items = synthetic_items(args.n, args.seed)
    t1 = time.perf_counter()
    split = PaddedSplit.from_items(ids, items, ragged=("mel", "words"))
    t2 = time.perf_counter()
    split = split.to(device)
    sync(device)
    t3 = time.perf_counter()
    print(
        f"torch {torch.__version__}, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f", {torch.get_num_threads()} CPU threads"
    )
    print(
        f"split: {len(split)} queries, {split.nbytes() / 2**20:.0f} MiB padded "
        f"(video {tuple(split['video'].shape)}, mel {tuple(split['mel'].shape)}, words {tuple(split['words'].shape)})"
    )
    print(f"one-time: generate {t1 - t0:.2f} s, pad into PaddedSplit {t2 - t1:.2f} s, move to {device} {t3 - t2:.2f} s")
    print(
        f"batch size {args.batch_size}, {args.epochs} epochs per measurement, {args.repeats} repetitions, "
        f"DataLoader num_workers={args.workers}"
    )

    # warm-up (allocator, kernels, page faults), not measured
    time_batch_iterator(split, args.batch_size, 1, args.seed, device)
    time_dataloader(items, args.batch_size, 1, args.seed, device, args.workers)

    ours, theirs = [], []
    for r in range(args.repeats):
        ours.append(time_batch_iterator(split, args.batch_size, args.epochs, args.seed + r, device))
        theirs.append(time_dataloader(items, args.batch_size, args.epochs, args.seed + r, device, args.workers))
        print(f"  rep {r}: BatchIterator {ours[-1]:9.1f} batches/s   DataLoader {theirs[-1]:9.1f} batches/s")
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"median: BatchIterator {a:.1f} batches/s, DataLoader {b:.1f} batches/s, ratio {a / b:.2f}x")
    a, b = max(ours), max(theirs)
    print(f"best:   BatchIterator {a:.1f} batches/s, DataLoader {b:.1f} batches/s, ratio {a / b:.2f}x")


if __name__ == "__main__":
    main()
