"""Data parallelism under torchrun, on the CPU with gloo: the loop's arithmetic and an end-to-end launch.

Two processes with half the batch each must take the optimizer steps that one process takes with the whole batch:
the gradient is a mean over the batch, so the mean of the two halves' gradients is the full batch's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as td
import torch.multiprocessing as mp
from torch import nn

from bench import dist, evaluate, tracking
from bench.config import TrainConfig
from bench.data.loader import PaddedSplit
from bench.train import Task, fit

REPO = Path(__file__).resolve().parents[1]
N, GLOBAL_BATCH = 64, 16
CFG = TrainConfig(epochs=3, batch_size=GLOBAL_BATCH, lr=1e-2, warmup_updates=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shard_splits_the_global_batch_or_says_how_to_launch():
    assert dist.Shard().batch_size(64) == 64 and dist.Shard(1, 4).batch_size(64) == 16
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        dist.Shard(0, 3).batch_size(64)


class _Ctx:
    def __init__(self, workdir: Path) -> None:
        self.seed, self.workdir, self.device = 0, workdir, torch.device("cpu")
        self.log = tracking.RunLogger(None, None)


def _regression_fit(workdir: Path) -> dict[str, torch.Tensor]:
    """Fit y = W x on fixed data with the shared loop; returns the final weights."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 5, generator=g)
    y = x @ torch.randn(5, 2, generator=g) + 0.1 * torch.randn(N, 2, generator=g)
    split = PaddedSplit({"x": x, "y": y}, [str(i) for i in range(N)])
    torch.manual_seed(10 + int(os.environ.get("RANK", "0")))  # ranks start from different weights on purpose
    model = nn.Linear(5, 2)

    def loss(batch):
        mse = ((model(batch["x"]) - batch["y"]) ** 2).mean()
        return mse, {}

    def score() -> dict[str, float]:
        with torch.no_grad():
            return {"R1@0.5": -float(((model(x) - y) ** 2).mean())}

    from bench.data.loader import BatchIterator

    task = Task(
        model=model,
        loss=loss,
        batches=lambda gen, shard: BatchIterator(
            split, shard.batch_size(GLOBAL_BATCH), shuffle=True, generator=gen, rank=shard.rank, world_size=shard.world
        ),
        n_batches=N // GLOBAL_BATCH,
        validate=score,
        test=lambda path: score(),
    )
    fit(task, CFG, _Ctx(workdir))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _worker(rank: int, world: int, port: int, workdir: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), WSVG_QUIET="1")  # fmt: skip
    torch.set_num_threads(1)
    weights = _regression_fit(Path(workdir))
    torch.save(weights, Path(out) / f"rank{rank}.pt")
    td.destroy_process_group()


def test_two_processes_with_half_batches_train_like_one_process_with_the_whole_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("WSVG_QUIET", "1")
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    single = _regression_fit(tmp_path / "single")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for key, value in single.items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # the ranks never drift apart
        torch.testing.assert_close(ranks[0][key], value, atol=1e-6, rtol=1e-5)  # and they match one process
    assert not torch.allclose(single["weight"], nn.Linear(5, 2).weight)  # it did train
    assert (tmp_path / "ddp" / "checkpoint.pt").exists()  # written by rank 0


def test_bench_run_under_torchrun_logs_one_run_from_rank_0(tmp_path, monkeypatch):
    """`torchrun --nproc_per_node 2 -m bench.cli run --method sbase --profile tiny` on the CPU, end to end."""
    env = {**os.environ, "WSVG_HOME": str(tmp_path / "runs"), "WSVG_QUIET": "1", "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MLFLOW_TRACKING_URI"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "bench.cli", "run", "--method", "sbase", "--profile", "tiny", "--seeds", "0",
           "--device", "cpu"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("FINISHED sbase seed=0") == 1  # rank 0 alone reports
    monkeypatch.setenv("WSVG_HOME", str(tmp_path / "runs"))  # the store the child wrote, whatever an earlier test of
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # this process pointed mlflow at
    runs = tracking.finished_runs({"method": "sbase", "profile": "tiny"})
    assert len(runs) == 1
    preds = next((tmp_path / "runs" / "work" / "sbase").rglob("test_predictions.jsonl"))
    rescored = evaluate.evaluate_file(preds)
    assert rescored["R1@0.5"] == pytest.approx(runs.iloc[0][f"metrics.test/{tracking.mlflow_key('R1@0.5')}"])
