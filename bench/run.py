"""``bench run``: resolve the rows to run, then for each method and seed open one tracked run.

One query's path through the suite: ``bench run`` (cli) -> :func:`run` -> the method's ``run(ctx)``
(data from :mod:`bench.datasets`, training in ``bench.train``, scoring in :mod:`bench.evaluate`) ->
:class:`bench.context.RunResult` -> logged by :mod:`bench.tracking` -> read back by :mod:`bench.tables`.

A method's run function receives a :class:`bench.context.RunContext` and returns a :class:`bench.context.RunResult`
(the contract, re-exported here for the orchestrator's callers). It never opens
MLflow runs, picks seeds or devices itself: the harness does that once, the same way for every method.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import config as cfg
from bench import datasets, tracking
from bench.atomic import DiskFull
from bench.context import RunContext, RunResult, set_seed
from methods import registry
from methods.registry import MethodSpec


@dataclass
class Outcome:
    method: str
    seed: int
    status: str  # FINISHED or FAILED
    run_id: str | None
    test: dict[str, float] = field(default_factory=dict)
    error: str = ""


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` -> a list of distinct seeds, in order."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ValueError(f"seeds {text!r}: write them as 0,1,2 or 0-4") from None
    if not seeds:
        raise ValueError("no seeds given; write them as 0,1,2 or 0-4")
    return list(dict.fromkeys(seeds))


def pick_device(name: str) -> Any:
    """``auto`` -> the local rank's GPU when CUDA is there, else the CPU; ``cuda`` without CUDA is an error."""
    import torch

    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device {name!r}: choose auto, cpu or cuda")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def methods_to_run(method: str | None, table: int | None, dataset: str | None = None, profile: str | None = None,
                   finetune: bool = False) -> list[MethodSpec]:  # fmt: skip
    """The methods a ``bench run`` invocation means, in table order; errors say what to do instead.

    ``--table N`` alone: every implemented row of the table, then (grounding tables) its blind rows and the
    suite's reference rows (``bench.tables.REFERENCE_METHODS``); Table 1's fine-tuned variants (a second training
    of nine rows) only with ``finetune`` (``--finetune``), each after its row, or one by one with
    ``--method <row>-ft --table 1``. ``--method M --table N``: M, and the blind rows
    that have no finished run on this dataset and profile yet (seconds each), so the printed table shows them;
    ``--method A,B``: each named method in turn, as if named alone.
    On an annotations-only dataset (``activitynet-captions``) only blind methods can run: ``--table N`` keeps just
    the table's blind rows, and naming another method is an error that says where it can run.
    """
    from bench import tables

    if method is None and table is None:
        raise ValueError("say what to run: --method NAME, --table N, or both (`bench methods` lists names)")
    if method is not None:  # one name or several comma-separated, each checked alone; then the blind rows, each once
        found = [_named_method(m.strip(), table, dataset, profile) for m in method.split(",")]
        specs = [named for named, *_ in found] + [blind for _, *extra in found for blind in extra]
        return list({s.name: s for s in specs}.values())
    annotations_only = dataset is not None and datasets.spec(dataset).annotations_only
    spec_table = tables.load_table(table)
    if finetune and not any(r.finetune for r in spec_table.rows):
        raise ValueError(f"--finetune: table {table} has no fine-tune column (Table 1 has)")
    names = [m for r in spec_table.rows if r.method and not annotations_only
             for m in (r.method, *([r.finetune] if finetune and r.finetune else []))]  # fmt: skip
    if spec_table.is_grounding:
        names += list(tables.BLIND_METHODS)
        if not annotations_only:
            names += [m for m in tables.REFERENCE_METHODS if m != "oracle-concept" or dataset in (None, "synth")]
    registered = registry.registered()  # the implemented ones: the others are planned
    return [registered[n] for n in dict.fromkeys(names) if n in registered]


def _named_method(method: str, table: int | None, dataset: str | None, profile: str | None) -> list[MethodSpec]:
    """``--method M [--table N]``: M, and with a grounding table the blind rows not yet run (:func:`methods_to_run`)."""
    from bench import tables

    annotations_only = dataset is not None and datasets.spec(dataset).annotations_only
    spec = registry.get(method)
    if table is not None:
        rows = [r for r in tables.load_table(table).rows if method in (r.method, r.finetune)]
        if not rows and not spec.blind and method not in tables.REFERENCE_METHODS:
            raise ValueError(
                f"method {method!r} has no row in table {table}; its rows: {', '.join(spec.rows) or 'none listed'}"
            )
    if not spec.implemented:
        when = f"issue {spec.issue} adds it" if spec.issue else "no issue has been filed for it yet"
        raise NotImplementedError(
            f"method {method!r} ({spec.title}) is not implemented in this version "
            f"of the suite: {when}. `bench methods` shows what runs today."
        )
    if annotations_only and not spec.blind:
        raise ValueError(
            f"dataset {dataset!r} holds annotations only (no video features, no speech), and method {method!r} "
            f"needs its {spec.query} query: run it on --dataset synth, or run a blind method here "
            f"({', '.join(tables.BLIND_METHODS)}; `bench methods` lists their variants)"
        )
    if table is None or not tables.load_table(table).is_grounding or dataset is None or profile is None:
        return [spec]
    done = tracking.finished_runs({"dataset": dataset, "profile": profile})
    have = set(done["params.method"]) if len(done) else set()
    registered = registry.registered()
    return [spec, *[registered[m] for m in tables.BLIND_METHODS if m in registered and m not in have | {method}]]


def run(
    specs: Sequence[MethodSpec],
    *,
    dataset: str,
    profile: str,
    seeds: Sequence[int],
    device: str = "auto",
    overrides: dict[str, str] | None = None,
    table: int | None = None,
    progress: bool = True,
    processes: int = 1,
) -> list[Outcome]:
    """Run every (method, seed); a failure is logged FAILED and reported, and the others still run.

    ``processes > 1`` (``bench run --jobs N``) runs the jobs in that many worker processes (:func:`_run_parallel`).

    A seed-free method (``MethodSpec.seed_free``: its predictions do not depend on the seed) runs the first seed
    only, and stderr says so: three runs of it would be three copies of one number, shown as n = 3 with std 0.
    """
    from tqdm import tqdm

    from bench import dist  # imports torch: kept out of this module's import, as pick_device does

    cfg.check_profile(profile)
    if processes < 1:
        raise ValueError(f"--jobs {processes}: give 1 (one run after another) or more worker processes")
    datasets.check_available(dataset)  # missing data is one clear error before any run, not a FAILED run per seed
    dev = pick_device(device)
    shard = dist.init(dev)
    if shard.world > 1:  # under torchrun rank 0 builds (or opens) the dataset first; the others then find it cached
        if shard.main:
            datasets.open_dataset(dataset, profile, dev)
        dist.barrier()
    jobs = [(s, seed) for s in specs for seed in (seeds[:1] if s.seed_free else seeds)]
    once = [s.name for s in specs if s.seed_free and len(seeds) > 1]
    if once and shard.main:
        print(
            f"bench run: {', '.join(once)} {'does' if len(once) == 1 else 'do'} not depend on the seed; running seed "
            f"{seeds[0]} only (of {', '.join(map(str, seeds))})",
            file=sys.stderr,
        )
    outcomes: list[Outcome] = []
    quiet = not progress or len(jobs) < 2 or not shard.main
    with _table_run(table, dataset, profile, seeds, specs) as parent:
        if processes > 1 and len(jobs) > 1:
            if shard.world > 1:
                raise ValueError("--jobs runs several processes on one machine; under torchrun leave it at 1")
            datasets.open_dataset(dataset, profile, dev)  # built (or found) once, before the workers open it
            outcomes = _run_parallel(jobs, processes, dataset, profile, str(dev), overrides or {}, table,
                                     parent.run_id)  # fmt: skip
            parent.failed = any(o.status != "FINISHED" for o in outcomes)
            return outcomes
        for spec, seed in tqdm(jobs, desc="bench run", unit="run", disable=True if quiet else None):  # None: a TTY
            outcomes.append(_run_one(spec, seed, dataset, profile, dev, overrides or {}, table, parent.run_id))
            parent.failed = parent.failed or outcomes[-1].status != "FINISHED"
    return outcomes


def _run_parallel(
    jobs: list[tuple[MethodSpec, int]],
    processes: int,
    dataset: str,
    profile: str,
    device: str,
    overrides: dict[str, str],
    table: int | None,
    parent_run_id: str | None,
) -> list[Outcome]:
    """The (method, seed) jobs on ``processes`` CPU slots, the outcomes in the jobs' order.

    Each worker runs whole jobs through :func:`_run_one`, as the sequential path does, with the parent's torch
    threads shared out (``max(1, threads // processes)``), so the machine is not oversubscribed. Jobs start seed by
    seed across the methods (every method's seed 0 first), so that two methods' pre-training stages can build side by
    side; two runs that need the same stage (two seeds of one method, or the three cascades' one ASR stage) take
    turns on its lock (:mod:`bench.stages`). A worker computes only while it holds one of the ``processes`` slots
    (:class:`_CpuSlot`) and gives it back while it waits for such a lock, to one of ``processes - 1`` spare workers:
    on Table 1, two cascades' workers otherwise sat idle while the third built their one ASR stage. Each waiting
    worker keeps the memory it has loaded (2-3 GB on synth/small). A run's numbers do not depend on the
    process it ran in: each run seeds itself (:func:`bench.context.set_seed`). Ctrl-C or SIGTERM ends every open run
    KILLED, and the same command resumes each from its last checkpoint.
    """
    import concurrent.futures as cf
    import multiprocessing as mp

    import torch

    order = sorted(range(len(jobs)), key=lambda i: (jobs[i][1], i))  # seed-major, the command's order within a seed
    threads = max(1, torch.get_num_threads() // processes)
    context = mp.get_context("spawn")
    slots = context.BoundedSemaphore(processes)
    workers = min(len(jobs), 2 * processes - 1)  # every slot's worker but one may wait on a lock
    pool = cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                                  initargs=(threads, slots))  # fmt: skip
    try:
        futures = {i: pool.submit(_run_job, jobs[i][0].name, jobs[i][1], dataset, profile, device, overrides, table,
                                  parent_run_id) for i in order}  # fmt: skip
        for done in cf.as_completed(futures.values()):
            o = done.result()
            print(f"bench run: {o.method} seed {o.seed} {o.status}", file=sys.stderr, flush=True)
        return [futures[i].result() for i in range(len(jobs))]
    except BaseException:
        for proc in list(getattr(pool, "_processes", {}).values()):  # the workers end their runs KILLED (SIGTERM)
            proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _CpuSlot:
    """This worker's share of ``bench run --jobs N``'s N slots (a semaphore the workers share): taken for a job,
    given back while the job waits for a lock another process holds (:func:`bench.atomic.exclusive`), and taken
    again before it goes on."""

    def __init__(self, semaphore: Any) -> None:
        self.semaphore, self.held = semaphore, False

    def take(self) -> None:
        self.semaphore.acquire()
        self.held = True

    def give(self) -> None:
        if self.held:
            self.held = False
            self.semaphore.release()

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        self.take()
        try:
            yield
        finally:
            self.give()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        self.give()
        yield  # interrupted while waiting (SIGTERM, Ctrl-C), the job ends without taking a slot again
        self.take()


_slot: _CpuSlot | None = None  # a worker's, set by _worker_init


def _worker_init(threads: int, slots: Any) -> None:
    """A worker process: ``threads`` torch threads, one of ``slots`` held while it computes (:class:`_CpuSlot`),
    and SIGTERM raised as KeyboardInterrupt, as ``bench run`` does, so that an interrupted run is closed KILLED
    rather than left RUNNING."""
    import signal

    import torch

    from bench import atomic

    global _slot
    torch.set_num_threads(threads)
    _slot = _CpuSlot(slots)
    atomic.while_waiting(_slot.waiting)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _run_job(method: str, seed: int, dataset: str, profile: str, device: str, overrides: dict[str, str],
             table: int | None, parent_run_id: str | None) -> Outcome:  # fmt: skip
    """One job in a worker: the method looked up by name (specs hold functions), then :func:`_run_one`."""
    import torch

    assert _slot is not None, "a job runs in a worker that _worker_init set up"
    with _slot.job():
        return _run_one(registry.get(method), seed, dataset, profile, torch.device(device), overrides, table,
                        parent_run_id)  # fmt: skip


def work_dir(method: str, dataset: str, profile: str, seed: int, config_hash: str) -> Path:
    """Where the run of (method, dataset, profile, seed, config) keeps its checkpoint, which a resume (and ``bench
    robustness``) reads: one folder per :data:`bench.tracking.IDENTITY`."""
    return tracking.runs_home() / "work" / method / dataset / profile / f"seed{seed}" / config_hash


@contextlib.contextmanager
def _table_run(table: int | None, dataset: str, profile: str, seeds: Sequence[int],
               specs: Sequence[MethodSpec]) -> Iterator[tracking.TableRun]:  # fmt: skip
    """With ``--table N``, the invocation's parent run (:func:`bench.tracking.start_table_run`); else none.

    The parent is what makes the UI line up a table: its children are the table's rows and seeds, each tagged with
    its row and the paper's numbers (:func:`bench.tables.row_tags`), and the table's saved view
    (:mod:`bench.views`) lists them in the table's order. A parent a killed invocation left RUNNING is closed first.
    """
    if table is None or not specs:
        yield tracking.TableRun(None)
        return
    from bench import tables, views

    tracking.close_stale_table_runs()
    if tracking.is_main_process():
        views.save([table])  # a UI already open shows the table's view (bench ui writes every view when it starts)
    tags = {
        "wsvg.dataset": dataset,
        "wsvg.profile": profile,
        "wsvg.seeds": ",".join(map(str, seeds)),
        "wsvg.methods": ",".join(s.name for s in specs),
    }
    with tracking.start_table_run(table, tables.load_table(table).title, tags) as parent:
        yield parent


def _run_one(
    spec: MethodSpec,
    seed: int,
    dataset: str,
    profile: str,
    device: Any,
    overrides: dict[str, str],
    table: int | None,
    parent_run_id: str | None = None,
) -> Outcome:
    from bench import evaluate, tables

    assert spec.run is not None and spec.config is not None
    method_cfg = cfg.apply_overrides(spec.config(profile), overrides)
    chash = cfg.config_hash(method_cfg)
    home = tracking.runs_home()
    workdir = work_dir(spec.name, dataset, profile, seed, chash)
    workdir.mkdir(parents=True, exist_ok=True)
    params = {
        "method": spec.name,
        "dataset": dataset,
        "profile": profile,
        "seed": seed,
        "device": str(device),
        "table": table if table is not None else "-",
        "config_hash": chash,
        "overrides": cfg.overrides_param(overrides, method_cfg, spec.config(profile)),
        "evaluator": evaluate.DEFINITION,
    }
    run_id = None
    try:
        replaces = tracking.close_stale_runs(params)  # a killed earlier run of this seed ends KILLED, not RUNNING
        tags = {"wsvg.rows": ",".join(spec.rows), **({"wsvg.replaces": ",".join(replaces)} if replaces else {})}
        if table is not None:
            tags.update(tables.row_tags(table, spec.name, dataset))
        name = f"{spec.name}/{dataset}/{profile}/seed{seed}"
        with tracking.start_run(name, params, tags=tags, parent_run_id=parent_run_id) as log:
            run_id = log.run_id
            log.log_dict(
                {"method": spec.name, "profile": profile, "overrides": overrides, "config": cfg.to_dict(method_cfg)},
                "config/resolved.json",
            )
            set_seed(seed)
            ctx = RunContext(spec, method_cfg, dataset, profile, seed, device, log, workdir, home / "cache",
                             swap_test=True)  # on synth, also test_swapped (bench/swap.py)
            result = spec.run(ctx)  # the method's run(ctx): its file is spec.source (`bench methods` lists it)
            if not isinstance(result, RunResult) or not result.test:
                raise RuntimeError(f"method {spec.name} returned no test metrics")
            log.log_params(
                {
                    "dataset_hash": result.dataset_hash or getattr(ctx.preloaded, "content_hash", "none"),
                    "selected_epoch": result.selected_epoch if result.selected_epoch is not None else "-",
                    **getattr(ctx.preloaded, "run_params", {}),  # a real root: its path, the counts of its rules
                }
            )
            log.log_metrics(result.val_best, prefix="val_best/")
            log.log_metrics(result.test, prefix="test/")
            for name, metrics in result.extra_tests.items():
                log.log_metrics(metrics, prefix=f"{name}/")
            for path in [result.predictions, *result.extra_predictions.values()]:
                if path is not None:
                    log.log_artifact(path, "predictions")
    except (KeyboardInterrupt, DiskFull):  # a full disk fails every later run too: one error, and the sweep stops
        raise
    except Exception as err:  # noqa: BLE001 - every failure is reported, logged FAILED, and the sweep goes on
        detail = "".join(traceback.format_exception_only(err)).strip()
        print(f"bench run: {spec.name} seed {seed} FAILED: {detail}", file=sys.stderr)
        return Outcome(spec.name, seed, "FAILED", run_id, error=detail)
    return Outcome(spec.name, seed, "FINISHED", run_id, test=result.test)


def run_wer(
    *,
    dataset: str = "synth",
    profile: str = "small",
    checkpoint: str | None = None,
    device: str = "auto",
    overrides: dict[str, str] | None = None,
    n_worst: int = 10,
) -> dict[str, Any]:
    """``bench wer``: score the ASR of ``profile`` (or a local ``checkpoint``) on the grounding test split's speech.

    Opens one tracked run named like a ``bench run`` of ``asr-wav2vec2`` (params method, dataset, profile, seed =
    the ASR config's seed, table 8), so :mod:`bench.tables` puts its WER in Table 8's row. Without ``checkpoint``
    the ASR stage is trained (or found cached) and the cached test transcripts are scored; with one, only the test
    split is decoded. Returns totals, rows and the paths written.
    """
    import dataclasses

    from bench import wer
    from methods import asr

    cfg.check_profile(profile)
    spec = datasets.spec(dataset)
    if spec.annotations_only:
        raise ValueError(f"dataset {dataset!r} holds no speech; bench wer needs one with query wavs (e.g. synth)")
    c = cfg.apply_overrides(asr.asr_config(profile), overrides or {})
    if checkpoint:
        c = dataclasses.replace(c, checkpoint=str(Path(checkpoint).expanduser().resolve()))
    dev = pick_device(device)
    data = datasets.open_dataset(dataset, profile, dev)
    c = asr.with_dataset_checkpoint(c, data)  # a real root's wav2vec2/ when neither --checkpoint nor --set names one
    home = tracking.runs_home()
    params = {
        "method": asr.METHOD,
        "dataset": dataset,
        "profile": profile,
        "seed": c.seed,
        "device": str(dev),
        "table": 8,
        "config_hash": cfg.config_hash(c),
        "evaluator": "bench wer: " + wer.NORMALISATION_TEXT,
        "dataset_hash": data.content_hash,
        "asr.checkpoint": c.checkpoint or "trained (stage asr)",
    }
    with tracking.start_run(f"wer/{dataset}/{profile}", params, tags={"wsvg.rows": "table8:asr-wav2vec2"}) as log:
        log.log_dict({"method": asr.METHOD, "profile": profile, "config": cfg.to_dict(c)}, "config/resolved.json")
        ctx = RunContext(registry.get(asr.METHOD), c, dataset, profile, c.seed, dev, log, home / "work" / "wer",
                         home / "cache", preloaded=data)  # fmt: skip
        refs = asr.references(data, "test")
        hyps = asr.decode_test(ctx, c) if c.checkpoint else asr.transcripts(ctx, c)["test"]
        totals, rows = wer.score(refs, hyps)
        out_dir = home / "wer" / f"{dataset}-{profile}-{asr.model_tag(ctx, c)}"
        paths = wer.write_errors(rows, out_dir)
        for path in paths:
            log.log_artifact(path, "wer")
        log.log_metrics(totals, prefix="test/")
    return {"totals": totals, "rows": rows, "paths": paths, "worst": wer.worst(rows, n_worst), "run_id": log.run_id}
