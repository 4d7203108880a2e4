"""``bench calibrate``: the ladder that says whether the benchmark can tell methods apart (issue 14).

A benchmark on which full supervision does not beat a blind span measures nothing about a method. The ladder puts
every row that calibrates the world beside the paper's methods, from tracked runs (this module reads runs; with
``--run`` it first runs the rows that have none, through ``bench run``'s own path):

- **blind** rows below (random, the fixed span chosen on train, the whole video): what moment statistics alone give;
- **references** above, which are not under test: the supervised ceilings VSLNet and 2D-TAN on the gold text,
  VSLNet on speech (the paper's own supervised row), and on synth the oracle that knows the planted concept (what
  the clip features allow);
- **the paper's methods** that run: every implemented row of Table 1.

Each line is mean ± sample std over seeds (n) of R@1 IoU=0.5, mIoU, dR@1 IoU=0.5, the share of top-1 centres
inside the moment and the mean predicted length, on the chosen test split. The calibration targets (issue 14) are
checked and printed with their margins: the gold-text ceilings at least :data:`CEILING_MARGIN` points above the
prior and below :data:`CEILING_MAX`, and VSLNet on speech above the prior.

``--by-length`` adds where each rung wins and loses: R@1 IoU=0.5 by the ground-truth moment's length (span /
duration, :data:`LENGTH_EDGES`), recomputed query by query from each run's predictions artifact with the one
evaluator (:func:`bench.compare.scores`), mean ± std over seeds of the recall within each bin. A number averaged
over the whole split hides that a blind span wins the long moments and none of the short ones; the breakdown shows
whether a reference beats it where a blind span cannot (measured on synth/small, README "Data").

``--swap`` adds what each rung's query carries (the swap test, :mod:`bench.swap`; synth only): R@1 IoU=0.5 on val_2
beside the same runs on ``test_swapped``, where each query holds its video's other query, and the difference paired
by query (:func:`bench.compare.compare` of ``M`` against ``M@swapped``, its bootstrap interval over the queries and,
with two seeds or more, the Student-t interval over seeds). A rung whose difference is inside noise predicts the
same moment whatever it is asked: its score is a guess of where a moment lies, not grounding.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench import tables

if TYPE_CHECKING:  # imported where used: bench.compare reads the tracking store
    from bench.compare import Comparison

BLIND = tables.BLIND_METHODS
REFERENCES = ("vslnet-text", "2dtan-text", "vslnet", "oracle-concept")
CEILINGS = ("vslnet-text", "2dtan-text")  # must clear the prior by CEILING_MARGIN and stay under CEILING_MAX
CEILING_MARGIN = 20.0  # points of R@1 IoU=0.5
CEILING_MAX = 90.0
COLUMNS = ("R1@0.5", "mIoU", "dR1@0.5", "centre_in", "pred_len")
TARGET_METRIC = "R1@0.5"
LENGTH_EDGES = (0.0, 0.1, 0.2, 0.35, 0.6, 1.0)
"""Bins of the moment length (span / duration) for ``--by-length``, each ``(lo, hi]``, the first from 0 included.
0.35 and 0.6 bound ActivityNet-CD's test-ood moments (none above 0.6) and the long moments a blind span wins."""


@dataclass(frozen=True)
class Rung:
    method: str
    kind: str  # blind, reference, paper
    mean: dict[str, float]
    std: dict[str, float | None]
    n: int


def ladder_methods(dataset: str) -> list[tuple[str, str]]:
    """``(method, kind)`` in ladder order: blind rows, references, then Table 1's implemented rows."""
    from methods import registry

    refs = [m for m in REFERENCES if m != "oracle-concept" or dataset == "synth"]
    paper = [r.method for r in tables.load_table(1).rows if r.method and r.method not in refs]
    paper = [m for m in dict.fromkeys(paper) if registry.get(m).implemented]
    return [(m, "blind") for m in BLIND] + [(m, "reference") for m in refs] + [(m, "paper") for m in paper]


def ladder(dataset: str, profile: str, split: str = tables.DEFAULT_SPLIT, runs=None) -> list[Rung | tuple[str, str]]:
    """Every rung with its numbers, or ``(method, kind)`` where no finished run exists."""
    from bench import tracking

    if runs is None:
        runs = tracking.finished_runs({"dataset": dataset, "profile": profile})
    out: list[Rung | tuple[str, str]] = []
    for method, kind in ladder_methods(dataset):
        repro = tables.collect(runs, method, split)
        if repro is None:
            out.append((method, kind))
            continue
        std = {k: (repro.std.get(k) if repro.n > 1 else None) for k in repro.mean}
        out.append(Rung(method, kind, repro.mean, std, repro.n))
    return out


def targets(rungs: list[Rung | tuple[str, str]]) -> list[tuple[str, bool | None, str]]:
    """The issue's calibration targets: ``(what, met (None = cannot tell yet), the numbers)``."""
    got = {r.method: r for r in rungs if isinstance(r, Rung)}

    def value(method: str) -> float | None:
        r = got.get(method)
        return None if r is None or TARGET_METRIC not in r.mean else 100 * r.mean[TARGET_METRIC]

    prior = value("prior")
    out: list[tuple[str, bool | None, str]] = []
    for ceiling in CEILINGS:
        v = value(ceiling)
        what = f"{ceiling} >= prior + {CEILING_MARGIN:g} and < {CEILING_MAX:g} at R@1 IoU=0.5"
        if v is None or prior is None:
            out.append((what, None, "needs runs of both"))
            continue
        margin = v - prior
        out.append((what, margin >= CEILING_MARGIN and v < CEILING_MAX, f"{v:.2f} vs prior {prior:.2f}: {margin:+.2f}"))
    v = value("vslnet")
    what = "vslnet (speech) > prior at R@1 IoU=0.5"
    out.append((what, None, "needs runs of both") if v is None or prior is None else
               (what, v > prior, f"{v:.2f} vs prior {prior:.2f}: {v - prior:+.2f}"))  # fmt: skip
    return out


def _cell(rung: Rung, metric: str) -> str:
    if metric not in rung.mean:
        return "missing"
    scale = 1.0 if metric == "pred_len" else 100.0
    mean = f"{scale * rung.mean[metric]:.2f}"
    std = rung.std.get(metric)
    return mean if std is None else f"{mean} ± {scale * std:.2f}"


def render(dataset: str, profile: str, split: str = tables.DEFAULT_SPLIT, runs=None) -> str:
    """The ladder as a Markdown table, then the targets, then a caption naming dataset, profile and split."""
    rungs = ladder(dataset, profile, split, runs)
    header = ["rung", "method", "n", *[tables.METRIC_LABELS[m] for m in COLUMNS]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rungs:
        if isinstance(r, Rung):
            lines.append("| " + " | ".join([r.kind, r.method, str(r.n), *[_cell(r, m) for m in COLUMNS]]) + " |")
        else:
            method, kind = r
            lines.append("| " + " | ".join([kind, method, "0", *["missing"] * len(COLUMNS)]) + " |")
    lines.append("")
    for what, met, numbers in targets(rungs):
        mark = "cannot tell yet" if met is None else ("met" if met else "NOT met")
        lines.append(f"- target {what}: {mark} ({numbers})")
    lines.append("")
    lines.append(
        f"Dataset {dataset}, profile {profile}, test split {tables.test_split(split).description}; mean ± sample std "
        "over the n seeds of finished runs (a single seed shows its value); percentages except the predicted length "
        "(a share of the video). Blind rows see neither video nor query; references are not rows of the paper."
    )
    return "\n".join(lines)


@dataclass(frozen=True)
class LengthRung:
    """One rung's R@1 IoU=0.5 per moment-length bin: mean and sample std over its n seeds (fractions; None where a
    bin holds no query, or for the std of a single seed)."""

    method: str
    kind: str
    n: int
    mean: list[float | None]
    std: list[float | None]


def length_bins(lengths: np.ndarray) -> np.ndarray:
    """The :data:`LENGTH_EDGES` bin index of each length (span / duration in [0, 1]): ``(lo, hi]``, 0 in the first."""
    return np.searchsorted(np.asarray(LENGTH_EDGES[1:-1]), np.asarray(lengths, dtype=float), side="left")


def bin_recall(lengths: dict[str, float], hits: dict[str, float]) -> list[float | None]:
    """The mean of ``hits`` (per query, 0/1 or a mean over draws) within each length bin; None for an empty bin. A
    query of ``hits`` without a length is an error: the runs were scored on other queries."""
    missing = [q for q in hits if q not in lengths]
    if missing:
        raise ValueError(f"{len(missing)} queries (e.g. {missing[0]!r}) have no ground-truth length: the runs were "
                         "not scored on one test split")  # fmt: skip
    qids = list(hits)
    bins = length_bins(np.array([lengths[q] for q in qids]))
    values = np.array([hits[q] for q in qids], dtype=float)
    return [float(values[bins == b].mean()) if (bins == b).any() else None for b in range(len(LENGTH_EDGES) - 1)]


def query_lengths(run, split: str) -> dict[str, float]:
    """qid -> ground-truth span / duration, from the run's predictions artifact (clipped into the video, as the
    evaluator clips it)."""
    from bench import compare, evaluate

    with tempfile.TemporaryDirectory(prefix="bench-calibrate-") as tmp:
        p = evaluate.read_predictions(compare.download(run, tables.test_split(split).artifact, Path(tmp)))
    gt = p.gt.clamp(min=0.0).minimum(p.duration[:, None])
    return dict(zip(p.qids, ((gt[:, 1] - gt[:, 0]).clamp(min=0.0) / p.duration).tolist(), strict=True))


def by_length(dataset: str, profile: str, split: str = tables.DEFAULT_SPLIT,
              runs=None) -> tuple[list[int], list[LengthRung]]:  # fmt: skip
    """The queries per length bin and every rung with finished runs (the runs :func:`ladder` aggregates: the newest
    per seed of the method's own configuration), R@1 IoU=0.5 per bin over its seeds."""
    from bench import compare, tracking

    if runs is None:
        runs = tracking.finished_runs({"dataset": dataset, "profile": profile})
    counts: list[int] = []
    out: list[LengthRung] = []
    for method, kind in ladder_methods(dataset):
        found = list(compare.newest_runs(runs, method).values())
        if not found:
            continue
        lengths = query_lengths(found[0], split)
        if not counts:
            bins = length_bins(np.array(list(lengths.values())))
            counts = [int((bins == b).sum()) for b in range(len(LENGTH_EDGES) - 1)]
        per_seed = [bin_recall(lengths, v) for v in compare.scores(found, split, TARGET_METRIC).values()]
        mean, std = [], []
        for b in range(len(LENGTH_EDGES) - 1):
            xs = [r[b] for r in per_seed if r[b] is not None]
            mean.append(float(np.mean(xs)) if xs else None)
            std.append(float(np.std(xs, ddof=1)) if len(xs) > 1 else None)
        out.append(LengthRung(method, kind, len(per_seed), mean, std))
    return counts, out


def render_by_length(dataset: str, profile: str, split: str = tables.DEFAULT_SPLIT, runs=None) -> str:
    """:func:`by_length` as a Markdown table: a row of query counts, then one row per rung, then its caption."""
    counts, rungs = by_length(dataset, profile, split, runs)
    labels = [f"({lo:g}, {hi:g}]" for lo, hi in zip(LENGTH_EDGES[:-1], LENGTH_EDGES[1:], strict=True)]
    lines = ["| rung | method | n | " + " | ".join(labels) + " |", "|" + "---|" * (3 + len(labels))]
    if counts:
        lines.append("| queries | | | " + " | ".join(f"{c:,}" for c in counts) + " |")

    def cell(mean: float | None, std: float | None) -> str:
        if mean is None:
            return "-"
        return f"{100 * mean:.2f}" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f}"

    for r in rungs:
        cells = [cell(m, s) for m, s in zip(r.mean, r.std, strict=True)]
        lines.append(f"| {r.kind} | {r.method} | {r.n} | " + " | ".join(cells) + " |")
    lines += ["", (
        f"R@1 IoU=0.5 by the ground-truth moment's length (span / duration, bins (lo, hi]); dataset {dataset}, "
        f"profile {profile}, test split {tables.test_split(split).description}; per-query hits recomputed from each "
        "run's predictions with the one evaluator, mean ± sample std over the n seeds of each bin's recall (random: "
        "its per-query means over draws). Rungs without a finished run are left out."
    )]  # fmt: skip
    return "\n".join(lines)


@dataclass(frozen=True)
class SwapRung:
    """One rung's swap test: its runs on val_2 and on test_swapped, paired by seed and query (fractions)."""

    method: str
    kind: str
    comparison: Comparison  # of method against method@swapped


def swap_rungs(dataset: str, profile: str, runs=None) -> tuple[list[SwapRung], list[str]]:
    """Every rung whose runs scored the swap test, on the seeds whose newest run did, and the names of those that
    did not (the blind rows, the oracle, runs older than the swap test)."""
    from bench import compare, tracking

    if runs is None:
        runs = tracking.finished_runs({"dataset": dataset, "profile": profile})
    out, without = [], []
    column = f"metrics.{tables.SWAPPED_TEST.prefix}{tracking.mlflow_key('R1@0.5')}"
    scored = set(runs[runs[column].notna()]["run_id"]) if column in runs else set()  # no blind row, nor the oracle
    for method, kind in ladder_methods(dataset):
        found = compare.newest_runs(runs, method)
        seeds = [s for s, r in found.items() if r.run_id in scored]  # the newest run of each seed that scored it
        if not seeds:
            without.append(method)
            continue
        c = compare.compare(method, f"{method}{compare.AUGMENTED}{compare.SWAPPED}", dataset=dataset,
                            profile=profile, runs=runs, seeds=seeds)  # fmt: skip
        out.append(SwapRung(method, kind, c))
    return out, without


def render_swap(dataset: str, profile: str, runs=None) -> str:
    """:func:`swap_rungs` as a Markdown table and its caption."""
    rungs, without = swap_rungs(dataset, profile, runs)

    def summary(s) -> str:
        return f"{100 * s.mean:.2f}" if s.std is None else f"{100 * s.mean:.2f} ± {100 * s.std:.2f}"

    header = ["rung", "method", "n", "own query", "other query of the video", "own − other (95 %, queries)",
              "over seeds (95 %)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rungs:
        c = r.comparison
        d = c.difference
        inside = " inside noise" if d.low <= 0 <= d.high else ""
        seeds = "-" if c.seeds is None else f"[{100 * c.seeds.low:+.2f}, {100 * c.seeds.high:+.2f}]"
        lines.append(f"| {r.kind} | {r.method} | {c.a.summary.n} | {summary(c.a.summary)} | {summary(c.b.summary)} | "
                     f"{100 * d.mean:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]{inside} | {seeds} |")  # fmt: skip
    lines += ["", (
        f"The swap test (bench/swap.py): R@1 IoU=0.5 on dataset {dataset}, profile {profile}, val_2, beside the same "
        "runs scored with every query's input replaced by its video's next query that names another concept "
        "(test_swapped; moment, video and duration kept); mean ± sample std over the n seeds; the difference paired "
        "by seed and query, its bootstrap interval over the queries (bench compare M M@swapped) and the Student-t "
        "interval over seed pairs. A method that ignores its query scores the same on both."
        + (f" No swap test in the runs of: {', '.join(without)}." if without else "")
    )]  # fmt: skip
    return "\n".join(lines)
