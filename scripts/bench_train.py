"""Training and inference speed of a Base-family method, measured (never asserted): run it, read the numbers.

Prints, for ``--method`` (base, base-text or sbase) on ``--dataset``/``--profile``:
- training samples/s over ``--steps`` updates (after ``--warmup`` unmeasured ones);
- the share of step time spent waiting for data (the index gather of the next batch), target under 5 %;
- inference latency per query at batch 1 over ``--queries`` test queries (data preparation excluded, as in the
  paper's Table 2: the query's features are already on the device).

Usage: ``.venv/bin/python scripts/bench_train.py --method base --profile small``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench import datasets
from bench.data import grounding
from bench.tracking import runs_home
from methods import base, registry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="base", choices=("base", "base-text", "sbase"))
    p.add_argument("--dataset", default="synth")
    p.add_argument("--profile", default="small")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--queries", type=int, default=50)
    args = p.parse_args()

    torch.manual_seed(0)
    device = torch.device("cpu")
    c = registry.get(args.method).config(args.profile)
    data = grounding.load(datasets.open_dataset(args.dataset, args.profile, device), runs_home() / "cache", device)
    model = base.BaseNet(c, data.train.videos.shape[-1], data.word_vectors)
    loss_fn = base.weak_loss if c.supervision == "weak" else base.full_loss
    optimizer = torch.optim.Adam(model.parameters(), lr=c.train.lr)
    batches = data.train.batches(c.train.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))

    wait = compute = 0.0
    samples = 0
    model.train()
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        loss, _ = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        t2 = time.perf_counter()
        if step >= args.warmup:
            wait, compute, samples = wait + t1 - t0, compute + t2 - t1, samples + batch["video"].shape[0]
    total = wait + compute
    print(
        f"{args.method} on {args.dataset}/{args.profile}, {torch.get_num_threads()} threads, batch {c.train.batch_size}"
    )
    print(f"  training: {samples / total:.1f} samples/s ({1000 * total / args.steps:.0f} ms per update)")
    print(f"  waiting for data: {100 * wait / total:.2f} % of step time")

    model.eval()
    times = []
    with torch.no_grad():
        for i, batch in enumerate(data.test.batches(1)):
            if i >= args.queries:
                break
            t0 = time.perf_counter()
            model(batch).argmax()
            times.append(time.perf_counter() - t0)
    print(f"  inference, batch 1: median {1000 * statistics.median(times):.1f} ms per query over {len(times)} queries")


if __name__ == "__main__":
    main()
