"""``bench compare A B``: are two methods apart, on the same test queries and seeds, beyond the noise?

A table shows each method's mean ± std over seeds; whether two such numbers differ is a question of the
difference, with the test queries they share. For methods ``A`` and ``B`` this module

1. takes the newest FINISHED run per seed of each (as the tables do; latency runs left out) on the chosen dataset
   and profile, optionally only some seeds;
2. downloads each run's predictions artifact of the chosen test split (``predictions/test_predictions.jsonl`` for
   val_2, ``predictions/test_ood_predictions.jsonl`` for test-ood; :data:`bench.tables.TEST_SPLITS`);
3. scores it query by query with the one evaluator (:func:`bench.evaluate.score_file`, exact ties): a 0/1 hit for
   R@n, the top-1 IoU for mIoU, the discounted hit for dR@1;
4. pairs the two methods by seed (the seeds both have) and by query id (the queries every run has). A method whose
   predictions do not depend on the seed (:func:`seed_free`: the fixed-span priors and the whole video) and that
   has a single run is paired with every seed of the other;
5. prints each method's mean ± std over its paired runs (n), the mean paired difference A - B, and the 95 %
   bootstrap interval of :func:`bench.stats.paired_bootstrap` (10,000 resamples of the queries, seeds kept paired,
   bootstrap seed 0), saying "inside noise" when it contains 0;
6. ``M@swapped`` is M's own runs scored on the swap test (:data:`bench.tables.SWAPPED_TEST`: each val_2 query given
   its video's other query, :mod:`bench.swap`; :func:`side_split`): ``bench compare M M@swapped`` is what M's query
   carries, paired by query;
7. with two seed pairs or more, the Student-t interval of the per-pair differences (:func:`bench.stats.seed_interval`),
   the noise of training seeds that the query bootstrap holds fixed. The two can disagree: three seeds of methods
   whose runs differ by 5 points on 2,000 queries but by as much from seed to seed are apart on these queries and
   not over seeds.

The numbers are recomputed from the predictions files, so they follow the current evaluator even for runs logged
by an older one. A method whose metric averages random draws (``random``: 100 draws; its predictions file holds
the first) is paired on each query's values averaged over its draws (``<split>_query_means.jsonl``, logged beside
its predictions), so the interval carries the other method's query noise, not one draw's luck; a run logged before
it wrote that file is scored from its first draw, and says so.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import evaluate, stats, tables, tracking

METRICS: tuple[str, ...] = evaluate.METRIC_KEYS + evaluate.DIAGNOSTIC_KEYS


def seed_free(method: str) -> bool:
    """Whether ``method``'s predictions do not depend on the seed (its registry entry's ``seed_free``: every
    ``prior`` variant and the whole video, ``methods/blind.py``); an unknown name is not."""
    from methods import registry

    try:
        return registry.get(method).seed_free
    except KeyError:
        return False


def metric_key(name: str) -> str:
    """``R1@0.5`` (or its MLflow spelling ``R1_IoU0.5``) -> ``R1@0.5``; an unknown metric is a clear error."""
    key = tracking.metric_name(name)
    if key not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")
    return key


@dataclass(frozen=True)
class Run:
    method: str
    seed: int
    run_id: str
    source: str | None = None  # a robustness run's source run: the training run whose weights it scored


@dataclass(frozen=True)
class Side:
    """One method of a comparison: its paired runs and their values (fractions), one per distinct run."""

    method: str
    runs: list[Run]
    summary: stats.Summary


@dataclass(frozen=True)
class Comparison:
    a: Side
    b: Side
    pairs: list[tuple[int, int]]  # (seed of A, seed of B)
    difference: stats.PairedDifference
    metric: str
    dataset: str
    profile: str
    split: str
    dropped_queries: int
    seeds: stats.SeedInterval | None = None  # the per-seed-pair differences' t interval (two pairs or more)


AUGMENTED = "@"  # sil@all-high: SIL's weights scored on test speech augmented at a level of Table 7
SWAPPED = "swapped"  # sil@swapped: SIL's own runs scored on the swap test (tables.SWAPPED_TEST, bench/swap.py)


def split_side(name: str) -> tuple[str, tuple[str, str] | None]:
    """``sil`` -> ``("sil", None)``; ``sil@all-high`` -> ``("sil", ("all", "high"))``: the same trained runs scored on
    test speech augmented at a level of Table 7 (``bench robustness``'s runs, kind and level as it names them), so
    that a method's drop under augmentation is a paired comparison like any other (``bench compare sil@all-high
    sil``). An unknown kind or level is an error naming the valid ones. ``sil@swapped`` -> ``("sil", None)``: SIL's
    own runs, scored on another split (:func:`side_split`)."""
    method, sep, view = name.partition(AUGMENTED)
    if not sep:
        return name, None
    if view == SWAPPED:
        return method, None
    from bench import robustness

    kind, _, level = view.rpartition("-")
    if kind not in robustness.KINDS or level not in robustness.LEVELS:
        raise ValueError(f"{name!r}: after {AUGMENTED!r} comes KIND-LEVEL, KIND one of {', '.join(robustness.KINDS)} "
                         f"and LEVEL one of {', '.join(robustness.LEVELS)} (e.g. {method}@all-high)")  # fmt: skip
    return method, (kind, level)


def side_split(name: str, split: str) -> tables.TestSplit:
    """The test split side ``name`` is scored on: ``split``; for ``M@swapped``, the swap test of val_2
    (:data:`bench.tables.SWAPPED_TEST`: every query given its video's other query, :mod:`bench.swap`), so that
    ``bench compare sil sil@swapped`` is what SIL's query carries, paired by query."""
    if name.partition(AUGMENTED)[2] != SWAPPED:
        return tables.test_split(split)
    if split != tables.DEFAULT_SPLIT:
        raise ValueError(f"{name} is the swap test of {tables.DEFAULT_SPLIT}: leave out --split {split}")
    return tables.SWAPPED_TEST


def newest_runs(runs, method: str, seeds: Sequence[int] | None = None,
                config_hash: str | None = None) -> dict[int, Run]:  # fmt: skip
    """The newest FINISHED run per seed of ``method`` in the ``runs`` DataFrame (runs with a ``measure``, latency and
    robustness, excluded: their test metrics are not the method's clean accuracy): of the method's own configuration
    (:func:`bench.tables.default_runs`), or with ``config_hash`` of the configuration that hash names. For
    ``method@KIND-LEVEL`` (:func:`split_side`), the robustness runs of that augmentation instead."""
    if runs is None or len(runs) == 0 or "params.method" not in runs:
        return {}
    name, (method, augmented) = method, split_side(method)
    mine = runs[runs["params.method"] == method]
    if config_hash is None:
        mine = tables.default_runs(mine)
    elif "params.config_hash" in mine:
        mine = mine[mine["params.config_hash"] == config_hash]
    else:
        return {}
    measure = mine.get("params.measure")
    if augmented is None:
        mine = mine[measure.isna()] if measure is not None else mine
    elif measure is None or "params.augment.kind" not in mine:
        return {}
    else:
        kind, level = augmented
        mine = mine[(measure == "robustness") & (mine["params.augment.kind"] == kind)
                    & (mine["params.augment.level"] == level)]  # fmt: skip
    mine = mine.sort_values("start_time", ascending=False).drop_duplicates("params.seed")
    sources = mine["params.source_run"] if augmented else [None] * len(mine)
    rows = zip(mine["params.seed"], mine["run_id"], sources, strict=True)
    found = {int(seed): Run(name, int(seed), run_id, source) for seed, run_id, source in rows}
    if seeds is not None and not (seed_free(method) and len(found) == 1):
        found = {s: r for s, r in found.items() if s in set(seeds)}
    return dict(sorted(found.items()))


def same_weights(a: dict[int, Run], b: dict[int, Run]) -> tuple[dict[int, Run], dict[int, Run]]:
    """One method on augmented against clean speech (``sil@all-high`` vs ``sil``): the clean side of each seed is
    the training run whose weights the robustness run scored (its ``source_run``), not merely the newest one, so
    that the difference is the augmentation's alone."""

    def clean(augmented: dict[int, Run], plain: dict[int, Run]) -> dict[int, Run]:
        shared = (s for s in augmented if s in plain)
        return {s: Run(plain[s].method, s, augmented[s].source) if augmented[s].source else plain[s] for s in shared}

    if any(r.source for r in a.values()) and not any(r.source for r in b.values()):
        return a, clean(a, b)
    if any(r.source for r in b.values()) and not any(r.source for r in a.values()):
        return clean(b, a), b
    return a, b


def pair_seeds(a: dict[int, Run], b: dict[int, Run], method_a: str, method_b: str) -> list[tuple[int, int]]:
    """Seed pairs ``(seed of A, seed of B)``: the seeds both have, or every seed of one method against the single
    run of a seed-free one (:func:`seed_free`)."""
    for runs, method in ((a, method_a), (b, method_b)):
        if not runs:
            name, augmented = split_side(method)
            how = (f"bench robustness --method {name} --kinds {augmented[0]} --levels {augmented[1]}"
                   if augmented else f"bench run --method {name}")  # fmt: skip
            raise ValueError(f"no finished run of {method!r} found; `{how}` makes them")
    if len(a) == 1 and seed_free(method_a):
        (only,) = a
        return [(only, s) for s in b]
    if len(b) == 1 and seed_free(method_b):
        (only,) = b
        return [(s, only) for s in a]
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError(
            f"{method_a} has seeds {sorted(a)} and {method_b} seeds {sorted(b)}: no seed in common to pair; run the "
            "missing seeds (`bench run --method M --seeds ...`)"
        )
    return [(s, s) for s in common]


def download(run: Run, artifact: str, into: Path, remedy: str = tables.TestSplit.remedy) -> Path:
    """The run's artifact as a local file; a run without it is a clear error, ending with ``remedy`` (its
    ``{method}`` the run's method, :attr:`bench.tables.TestSplit.remedy`)."""
    mlflow = tracking._mlflow()  # the store's client comes from tracking, the one module that configures mlflow
    try:
        with tracking.no_progress_bar():
            return Path(mlflow.artifacts.download_artifacts(run_id=run.run_id, artifact_path=artifact,
                                                            dst_path=str(into)))  # fmt: skip
    except Exception as err:  # noqa: BLE001 - mlflow raises several types for a missing artifact
        raise FileNotFoundError(
            f"run {run.run_id} ({run.method}, seed {run.seed}) has no artifact {artifact} ({type(err).__name__}); "
            + remedy.format(method=split_side(run.method)[0])
        ) from None


def _values(path: Path, metric: str) -> dict[str, float]:
    qids, scored = evaluate.score_file(path)
    return dict(zip(qids, scored.values[metric].tolist(), strict=True))


def _mean_values(path: Path, metric: str) -> dict[str, float]:
    qids, values = evaluate.read_query_means(path)
    if metric not in values:
        raise ValueError(f"{path} has no {metric}; re-run the method that wrote it")
    return dict(zip(qids, values[metric], strict=True))


def averages_draws(method: str) -> bool:
    """Whether ``method``'s metrics average random draws (``random``, ``random-continuous``): its registry
    configuration has ``draws``."""
    from methods import registry

    try:
        spec = registry.get(method)
    except KeyError:
        return False
    return spec.config is not None and hasattr(spec.config("tiny"), "draws")


def scores(runs: Sequence[Run], split: str, metric: str) -> dict[tuple[str, int], dict[str, float]]:
    """Per-query values of ``metric`` (fractions) on test split ``split`` for each run, keyed by (method, seed):
    each run's predictions artifact downloaded and scored with the one evaluator (steps 2 and 3 above); for a
    method that averages draws, its per-query means over the draws (the module docstring)."""
    metric = metric_key(metric)
    values: dict[tuple[str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        for i, run in enumerate(runs):
            into = Path(tmp) / str(i)
            test_split = side_split(run.method, split)
            if averages_draws(run.method):
                try:
                    path = download(run, test_split.means_artifact, into)
                except FileNotFoundError:
                    print(f"bench compare: run {run.run_id} ({run.method}, seed {run.seed}) has no "
                          f"{test_split.means_artifact} (logged before it was written): scored on its first draw "
                          "alone; re-run it to pair on the mean over its draws", file=sys.stderr)  # fmt: skip
                else:
                    values[(run.method, run.seed)] = _mean_values(path, metric)
                    continue
            path = download(run, test_split.artifact, into, test_split.remedy)
            values[(run.method, run.seed)] = _values(path, metric)
    return values


def compare(
    method_a: str,
    method_b: str,
    *,
    dataset: str = "synth",
    profile: str = "small",
    split: str = tables.DEFAULT_SPLIT,
    metric: str = "R1@0.5",
    seeds: Sequence[int] | None = None,
    resamples: int = stats.RESAMPLES,
    bootstrap_seed: int = stats.BOOTSTRAP_SEED,
    runs=None,
    overrides_a: dict[str, str] | None = None,
    overrides_b: dict[str, str] | None = None,
) -> Comparison:
    """Compare ``method_a`` and ``method_b`` on ``metric`` (module docstring); ``runs`` defaults to the store's.

    Each side is the method's own configuration, or with ``overrides_a`` / ``overrides_b`` (``--set-a`` / ``--set-b``)
    the runs of the configuration those options make (by config hash): one method against itself with one option
    changed, such as Base with and without the cross gate, is a comparison like any other."""
    metric = metric_key(metric)
    tables.test_split(split)
    if runs is None:
        runs = tracking.finished_runs({"dataset": dataset, "profile": profile})
    label_a, label_b = side_label(method_a, overrides_a), side_label(method_b, overrides_b)
    runs_a = newest_runs(runs, method_a, seeds, config_hash_of(method_a, profile, overrides_a))
    runs_b = newest_runs(runs, method_b, seeds, config_hash_of(method_b, profile, overrides_b))
    if (split_side(method_a)[0], overrides_a or {}) == (split_side(method_b)[0], overrides_b or {}):
        runs_a, runs_b = same_weights(runs_a, runs_b)
    pairs = pair_seeds(runs_a, runs_b, label_a, label_b)
    values_a = scores([runs_a[s] for s in sorted({s for s, _ in pairs})], split, metric)
    values_b = scores([runs_b[s] for s in sorted({s for _, s in pairs})], split, metric)
    every = [*values_a.values(), *values_b.values()]
    shared = set.intersection(*(set(v) for v in every))
    if not shared:
        raise ValueError(f"the predictions of {label_a} and {label_b} share no query id: are they of one dataset?")
    qids = sorted(shared)
    dropped = max(len(v) for v in every) - len(qids)

    def matrix(values: dict[tuple[str, int], dict[str, float]], method: str, seeds_: list[int]) -> np.ndarray:
        return np.array([[values[(method, s)][q] for q in qids] for s in seeds_], dtype=np.float64)

    a, b = matrix(values_a, method_a, [s for s, _ in pairs]), matrix(values_b, method_b, [s for _, s in pairs])
    difference = stats.paired_bootstrap(a, b, resamples=resamples, seed=bootstrap_seed)
    seed_level = stats.seed_interval((a - b).mean(axis=1)) if len(set(pairs)) > 1 else None

    def side(label: str, values: dict, method: str, seeds_: list[int], found: dict[int, Run]) -> Side:
        distinct = sorted(set(seeds_))
        per_run = [float(np.mean([values[(method, s)][q] for q in qids])) for s in distinct]
        return Side(label, [found[s] for s in distinct], stats.summarise(per_run))

    return Comparison(
        a=side(label_a, values_a, method_a, [s for s, _ in pairs], runs_a),
        b=side(label_b, values_b, method_b, [s for _, s in pairs], runs_b),
        pairs=pairs,
        difference=difference,
        metric=metric,
        dataset=dataset,
        profile=profile,
        split=split,
        dropped_queries=dropped,
        seeds=seed_level,
    )


def side_label(method: str, overrides: dict[str, str] | None) -> str:
    """``method``, or ``method [key=value,...]`` for a side read with ``--set`` options."""
    from bench import config as cfg

    return f"{method} [{cfg.format_overrides(overrides)}]" if overrides else method


def config_hash_of(method: str, profile: str, overrides: dict[str, str] | None) -> str | None:
    """The config hash ``bench run --method M --set ...`` logs for these options; None without options (the
    method's own runs, :func:`bench.tables.default_runs`). An option the method does not have is an error."""
    if not overrides:
        return None
    from bench import config as cfg
    from methods import registry

    spec = registry.get(split_side(method)[0])
    return cfg.config_hash(cfg.apply_overrides(spec.config(profile), overrides))


def _points(value: float, signed: bool = False) -> str:
    return f"{value * 100:+.2f}" if signed else f"{value * 100:.2f}"


def format_comparison(c: Comparison) -> str:
    """The report ``bench compare`` prints (values in percent points)."""
    d = c.difference
    label = tables.METRIC_LABELS.get(c.metric, c.metric)
    width = max(len(c.a.method), len(c.b.method))
    lines = [
        f"{c.a.method} vs {c.b.method} on {c.dataset}/{c.profile}, test split {c.split}, {label} in percent, recomputed"
        f" query by query from each run's predictions ({evaluate.DEFINITION.split(':')[0]}, exact ties)",
    ]
    for s in (c.a, c.b):
        spread = f" ± {_points(s.summary.std)}" if s.summary.std is not None else ""
        seeds = ", ".join(str(r.seed) for r in s.runs)
        ids = ", ".join(r.run_id[:8] for r in s.runs)
        lines.append(
            f"  {s.method:{width}s}  {_points(s.summary.mean)}{spread} (n={s.summary.n}; seeds {seeds}; runs {ids})"
        )
    pairing = ", ".join(f"{x}-{y}" for x, y in c.pairs)
    lines.append(
        f"  paired difference {c.a.method} − {c.b.method}: {_points(d.mean, True)} points over {d.n_queries} queries"
        f" x {d.n_pairs} seed pair{'s' * (d.n_pairs != 1)} ({pairing})"
        + (f"; {c.dropped_queries} queries not in every run left out" if c.dropped_queries else "")
    )
    verdict = (
        "inside noise: the interval contains 0"
        if d.inside_noise
        else f"outside noise: {c.a.method} {'>' if d.mean > 0 else '<'} {c.b.method}"
    )
    lines.append(
        f"  {d.level:.0%} bootstrap interval [{_points(d.low, True)}, {_points(d.high, True)}] ({d.resamples:,} "
        f"resamples of the queries, seeds kept paired, bootstrap seed {d.seed}): {verdict}"
    )
    s = c.seeds
    if s is not None:
        per_pair = ", ".join(_points(x, True) for x in s.differences)
        seed_verdict = "the seeds cannot tell them apart (contains 0)" if s.inside_noise else "apart over seeds too"
        lines.append(
            f"  over seeds: per-pair differences {per_pair}; {s.level:.0%} Student-t interval [{_points(s.low, True)}, "
            f"{_points(s.high, True)}] (n={len(s.differences)} pairs): {seed_verdict}"
        )
    return "\n".join(lines)
