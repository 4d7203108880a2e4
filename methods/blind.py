"""The blind rows shown under every results table: ``random``, ``prior`` and ``whole-video``.

They read only the annotations (durations and the train moments), never a video feature or a spoken query. Their
numbers say how much of a method's score the dataset's moment statistics alone give: ActivityNet moments are long
(many cover a third of the video or more), so a span that ignores the query already reaches a high R@1,IoU=0.1 and
0.3 and a fair mIoU. A grounding method is only as good as its margin over these rows.

- ``random``: a uniformly random ranking of the grounding methods' candidate set (Base's: 153 candidates at the
  paper's N = 64 clips, 80 at the small profile's 32; always 64 on the annotations-only real data), or
  (``space="continuous"``) uniformly random spans; the metrics are the mean over ``draws`` independent draws.
- ``prior``: the single span ``[a, b]`` (fractions of the duration) that maximises a chosen metric on the train
  split, found on a grid of step ``1 / grid``; it never sees val_1 or val_2. On ActivityNet-CD, which has no
  training split, the dataset's ``train`` is its val file (``bench/data/captions.py``): the span is tuned on val,
  and the run says so in its params (``prior_tuned_on = val``, ``train_file = anet_val.json``).
- ``whole-video``: ``[0, duration]`` for every query.

Variants, registered as methods of their own so that each has its own rows in the tracking store (``--set`` on
``prior`` would mix configurations under one name): ``random-continuous`` (``space="continuous"``) and one prior per
metric it can be tuned for, ``prior-r1-0.1``, ``prior-r1-0.3``, ``prior-r1-0.7`` and ``prior-miou`` (``prior`` itself
is tuned for R@1,IoU=0.5). The tables show ``random``, ``prior`` and ``whole-video``; ``bench report`` shows them all.

Reading: every split is read with ``SkipPolicy(skip=True)``, and its file and the moments kept, skipped and
clipped are logged as params (``train_file``, ``train_moments``, ``train_skipped``, ...). The real ``train.json``
holds four empty or reversed spans; dropping them leaves the paper's 37,417 training pairs (ActivityNet-CD's
``anet_test_ood.json`` holds the same four, and 13,574 of its 13,578 pairs are scored). Nothing is dropped silently.

All metrics come from :func:`bench.evaluate.evaluate`; the test predictions (draw 0 for ``random``) are written to
``<workdir>/test_predictions.jsonl``. Validation is ActivityNet's ``val_1`` (reported as ``val_best``), test is
``val_2``; a dataset with the extra test split ``test_ood`` (synth, ActivityNet-CD) has it scored too, into
``test_ood_predictions.jsonl``. ``random`` also writes ``<split>_query_means.jsonl``: each query's metric values
averaged over its draws, which ``bench compare`` pairs with the other method query by query (one draw's 0/1 hits
would add that draw's luck to the interval). Everything runs on the CPU. On the real ActivityNet Captions splits
(measured on 2 cores, one thread) the prior's grid search takes about 15 s and ``random``'s 100 draws over the 153
candidates about 80 s per seed (the evaluator's NMS for R@5 dominates); on synth/small every blind run takes seconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from bench import config as cfg
from bench import datasets, evaluate
from bench.context import MethodSpec, RunContext, RunResult, register
from bench.data.activitynet import Moment
from methods.parts.proposals import N_CLIPS, candidate_spans

TRAIN, VAL, TEST = "train", "val_1", "val_2"
EXTRA_TESTS = ("test_ood",)  # further test splits, scored where the dataset has them (bench.data.grounding)
CONTINUOUS_SPANS = 5
"""Spans per query and draw in the continuous space: enough for R@5 to be defined."""
PRIOR_METRICS: tuple[str, ...] = ("R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU")
PRIOR_DEFAULT = "R1@0.5"
"""The metric the plain ``prior`` (the one in the tables) is tuned for; R@1,IoU=0.5 is the paper's headline."""
_CHUNK_ELEMENTS = 2**23
"""Grid spans x train moments per chunk of the prior search: a few float64 temporaries of 64 MiB each."""


# --- configs ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomConfig:
    """``draws`` independent draws, averaged; ``space`` is the 2D-TAN candidate set or all continuous spans."""

    draws: int = 100
    space: Literal["candidates", "continuous"] = "candidates"
    n_clips: int = 64  # the candidate set of the profile's grounding methods (bench.config.GROUNDING_CLIPS)

    def __post_init__(self) -> None:
        if self.draws < 1:
            raise ValueError(f"random: draws must be >= 1, got {self.draws}")
        if self.space not in ("candidates", "continuous"):
            raise ValueError(f"random: space {self.space!r} is not 'candidates' or 'continuous'")


@dataclass(frozen=True)
class PriorConfig:
    """The prior maximises ``tune_for`` on train over all spans ``0 <= a < b <= 1`` on a grid of step ``1/grid``."""

    tune_for: Literal["R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU"] = "R1@0.5"
    grid: int = 100

    def __post_init__(self) -> None:
        if self.tune_for not in PRIOR_METRICS:
            raise ValueError(f"prior: tune_for {self.tune_for!r} is not one of {PRIOR_METRICS}")
        if self.grid < 1:
            raise ValueError(f"prior: grid must be >= 1, got {self.grid}")


@dataclass(frozen=True)
class WholeVideoConfig:
    """Nothing to configure: the prediction is always the whole video."""


def random_config(profile: str, space: str = "candidates") -> RandomConfig:
    """The profile's candidate set (the grounding methods' clip count); the blind rows cost seconds to minutes even
    on the paper's data."""
    return RandomConfig(space=space, n_clips=cfg.GROUNDING_CLIPS[cfg.check_profile(profile)])  # type: ignore[arg-type]


def prior_config(profile: str, tune_for: str = PRIOR_DEFAULT) -> PriorConfig:
    cfg.check_profile(profile)
    return PriorConfig(tune_for=tune_for)  # type: ignore[arg-type]


def prior_method(metric: str) -> str:
    """The registry name of the prior tuned for ``metric``: ``prior`` for R1@0.5, else e.g. ``prior-r1-0.3``."""
    if metric not in PRIOR_METRICS:
        raise ValueError(f"prior: metric {metric!r} is not one of {PRIOR_METRICS}")
    return "prior" if metric == PRIOR_DEFAULT else "prior-" + metric.lower().replace("@", "-")


def whole_video_config(profile: str) -> WholeVideoConfig:
    cfg.check_profile(profile)
    return WholeVideoConfig()


# --- helpers ------------------------------------------------------------------------------------------------------


@dataclass
class Split:
    """One split's queries as the evaluator wants them: ids, durations ``[Q]`` and true spans ``[Q, 2]`` (float64)."""

    qids: list[str]
    duration: Tensor
    gt: Tensor


def as_split(moments: Sequence[Moment]) -> Split:
    if len(moments) == 0:
        raise ValueError("the split holds no moments; the blind methods need at least one")
    return Split(
        qids=[m.qid for m in moments],
        duration=torch.tensor([m.duration for m in moments], dtype=torch.float64),
        gt=torch.tensor([[m.start, m.end] for m in moments], dtype=torch.float64),
    )


def read_split(ctx: RunContext, split: str) -> list[Moment]:
    """The moments of ``split``, bad entries dropped and counted; the file and the counts go into the run's params."""
    from bench.data.grounding import read_annotations

    path = ctx.data.annotation_path(split)
    ann = read_annotations(ctx.data, split)  # the grounding methods' reader: the same queries, the same skip rule
    counts = {f"{split}_moments": len(ann), f"{split}_skipped": ann.skipped, f"{split}_clipped": ann.clipped}
    ctx.log.log_params({f"{split}_file": Path(path).name, **counts})
    return ann.moments


def load_split(ctx: RunContext, split: str) -> Split:
    return as_split(read_split(ctx, split))


def fixed_span(split: Split, start: float, end: float) -> Tensor:
    """The span ``[start * D, end * D]`` (fractions of each video's duration ``D``) for every query, ``[Q, 1, 2]``."""
    fractions = torch.tensor([start, end], dtype=torch.float64)
    return (fractions[None, :] * split.duration[:, None])[:, None, :]


def mean_metrics(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """The mean of every key over several evaluations (counts such as ``n`` included)."""
    return {key: sum(float(r[key]) for r in runs) / len(runs) for key in runs[0]}


def scored_result(ctx: RunContext, predict: Callable[[Split], tuple[dict[str, float], Tensor]],
                  validate: Callable[[], dict[str, float]]) -> RunResult:  # fmt: skip
    """Score val_2 (``test``), then ``validate()`` (val_1), then each further test split the dataset has (the
    debiased ``test_ood``); write every test split's predictions. ``predict(split)`` gives metrics and the spans."""
    has = getattr(ctx.data, "has_split", lambda split: False)
    scores: dict[str, tuple[dict[str, float], Path]] = {}
    val: dict[str, float] = {}
    for name, split_file in {"test": TEST, **{s: s for s in EXTRA_TESTS if has(s)}}.items():
        split = load_split(ctx, split_file)
        metrics, pred = predict(split)
        path = Path(ctx.workdir) / f"{name}_predictions.jsonl"
        evaluate.write_predictions(path, split.qids, split.duration, split.gt, pred)
        scores[name] = (metrics, path)
        if name == "test":
            val = validate()
    (test, path), extra = scores.pop("test"), scores
    return RunResult(test=test, val_best=val, predictions=path, dataset_hash=ctx.data.content_hash,
                     extra_tests={k: m for k, (m, _) in extra.items()},
                     extra_predictions={k: p for k, (_, p) in extra.items()})  # fmt: skip


def fixed(start: float, end: float) -> Callable[[Split], tuple[dict[str, float], Tensor]]:
    """The metrics and predictions of one fixed span on a split."""

    def predict(split: Split) -> tuple[dict[str, float], Tensor]:
        pred = fixed_span(split, start, end)
        return evaluate.evaluate(pred, split.gt, split.duration), pred

    return predict


# --- random -------------------------------------------------------------------------------------------------------


def random_draw(split: Split, space: str, generator: torch.Generator, n_clips: int = 64,
                depth: int | None = None) -> Tensor:  # fmt: skip
    """One draw of ranked predictions ``[Q, K, 2]`` in seconds.

    ``candidates``: an independent uniform permutation of the candidates of each query (153 at 64 clips; the
    argsort of i.i.d. uniforms). ``continuous``: :data:`CONTINUOUS_SPANS` spans per query, each the sorted pair of
    two independent U(0, 1) fractions of the duration. ``depth``: only the first ``depth`` ranks of the same draw
    (the generator advances as for the whole list).
    """
    n_query = len(split.qids)
    if space == "candidates":
        spans = candidate_spans(split.duration, n_clips)  # [Q, n_cand, 2]
        order = torch.rand(spans.shape[:2], generator=generator, dtype=torch.float64).argsort(dim=1)[:, :depth]
        return spans.gather(1, order[..., None].expand(-1, -1, 2))
    if space == "continuous":
        ends = torch.rand(n_query, CONTINUOUS_SPANS, 2, generator=generator, dtype=torch.float64).sort(dim=2).values
        return (ends * split.duration[:, None, None])[:, :depth]
    raise ValueError(f"random: space {space!r} is not 'candidates' or 'continuous'")


DRAW_DEPTH = 48
"""How deep :func:`random_metrics` reads a draw's ranked list: the evaluator's NMS keeps its five spans within the
first few dozen ranks of a random permutation (measured: 8 on average, at most 33 over 17,000 queries), and a
ranked list cut below its fifth NMS survivor scores exactly as the whole one, so a draw whose every query fills its
five there is scored on that prefix (the whole draw again, from the same generator state, otherwise)."""


def random_metrics(split: Split, config: RandomConfig,
                   generator: torch.Generator) -> tuple[dict[str, float], Tensor, dict[str, Tensor]]:  # fmt: skip
    """The evaluator's metrics averaged over ``config.draws`` draws, the predictions of draw 0 (whole lists), and
    each query's values averaged over the draws (what ``bench compare`` pairs; ``evaluate.write_query_means``)."""
    top_k = max(evaluate.RECALL_AT)
    first = random_draw(split, config.space, generator, config.n_clips)
    scored = evaluate.score_queries(first, split.gt, split.duration)
    runs, sums = [scored.means()], dict(scored.values)
    for _ in range(config.draws - 1):
        state = generator.get_state()
        pred = random_draw(split, config.space, generator, config.n_clips, DRAW_DEPTH)
        if pred.shape[1] == DRAW_DEPTH and not bool(evaluate.nms(pred, top_k=top_k)[1][:, -1].all()):
            generator.set_state(state)  # some query needs more ranks: the same draw, whole
            pred = random_draw(split, config.space, generator, config.n_clips)
        scored = evaluate.score_queries(pred, split.gt, split.duration)
        runs.append(scored.means())
        sums = {key: total + scored.values[key] for key, total in sums.items()}
    return mean_metrics(runs), first, {key: total / config.draws for key, total in sums.items()}


def run_random(ctx: RunContext) -> RunResult:
    """Random ranking, averaged over draws. One generator seeded with ``ctx.seed`` draws the test split first, then
    val_1, so the test numbers and predictions depend only on the seed."""
    config: RandomConfig = ctx.config
    known = datasets.all_datasets().get(ctx.dataset_name)  # None: a data set the caller built (tests' stand-ins)
    if known is not None and known.annotations_only:  # real annotations: the paper's 64 clips, 153 candidates
        config = dataclasses.replace(config, n_clips=N_CLIPS)
    ctx.log.log_params({"draws": config.draws, "space": config.space, "n_clips": config.n_clips})
    generator = torch.Generator().manual_seed(ctx.seed)
    means: list[tuple[list[str], dict[str, Tensor]]] = []  # per test split, in the order scored_result scores them

    def predict(split: Split) -> tuple[dict[str, float], Tensor]:
        metrics, first, per_query = random_metrics(split, config, generator)
        means.append((split.qids, per_query))
        return metrics, first

    result = scored_result(ctx, predict, lambda: random_metrics(load_split(ctx, VAL), config, generator)[0])
    for name, (qids, per_query) in zip(["test", *result.extra_predictions], means, strict=True):
        path = Path(ctx.workdir) / f"{name}{evaluate.QUERY_MEANS_SUFFIX}"
        evaluate.write_query_means(path, qids, per_query, config.draws)
        ctx.log.log_artifact(path, "predictions")
    return result


# --- prior --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriorFit:
    """The chosen span (fractions of the duration) and the tuned metric's value on train (a fraction)."""

    start: float
    end: float
    metric: str
    value: float


def grid_spans(grid: int) -> Tensor:
    """Every span ``[i / grid, j / grid]`` with ``0 <= i < j <= grid``, ``[grid (grid + 1) / 2, 2]`` float64.

    Ordered by start, then end: the order in which ties are broken (the first maximum wins).
    """
    i, j = torch.triu_indices(grid + 1, grid + 1, offset=1)
    return torch.stack([i, j], dim=1).double() / grid


def fit_prior(moments: Sequence[Moment], metric: str = "R1@0.5", grid: int = 100) -> PriorFit:
    """The grid span that maximises ``metric`` over ``moments`` (the train split).

    ``R1@m`` is the share of moments whose IoU with the span is strictly greater than ``m``; ``mIoU`` the mean IoU.
    IoU is the evaluator's, on fractions of each moment's duration (equal to the IoU in seconds). Ties go to the
    smallest start, then the smallest end (:func:`grid_spans`); R1 ties are exact (hit counts are integers).
    Vectorised in chunks of grid spans so that memory stays at a few hundred MiB for 37k moments and grid 100.
    """
    if metric not in PRIOR_METRICS:
        raise ValueError(f"prior: metric {metric!r} is not one of {PRIOR_METRICS}")
    split = as_split(moments)
    truth = split.gt / split.duration[:, None]  # [M, 2] fractions
    spans = grid_spans(grid)
    threshold = None if metric == "mIoU" else float(metric.removeprefix("R1@"))
    chunk = max(1, _CHUNK_ELEMENTS // len(truth))
    scores = []
    for part in spans.split(chunk):
        iou = evaluate.temporal_iou(part[:, None, :], truth[None, :, :])  # [chunk, M]
        scores.append(iou.sum(dim=1) if threshold is None else (iou > threshold).sum(dim=1).double())
    score = torch.cat(scores)
    best = int(score.argmax())  # the first maximum, in grid_spans order
    start, end = spans[best].tolist()
    return PriorFit(start=start, end=end, metric=metric, value=float(score[best]) / len(truth))


def run_prior(ctx: RunContext) -> RunResult:
    """Choose the span on train (ActivityNet-CD: on val), then predict it (scaled to each video) on every other split.

    ``prior_tuned_on`` names the split the span was tuned on in the dataset's own words (``train``, or ``val`` on
    ActivityNet-CD), so a run's params say what its table caption says.
    """
    config: PriorConfig = ctx.config
    fit = fit_prior(read_split(ctx, TRAIN), config.tune_for, config.grid)
    label = getattr(ctx.data, "split_label", lambda split: split)
    ctx.log.log_params(
        {
            "prior_tuned_on": label(TRAIN),
            "prior_start": fit.start,
            "prior_end": fit.end,
            "tuned_for": fit.metric,
            "prior_train_value": fit.value,
            "prior_grid": config.grid,
        }
    )
    predict = fixed(fit.start, fit.end)
    return scored_result(ctx, predict, lambda: predict(load_split(ctx, VAL))[0])


# --- whole video --------------------------------------------------------------------------------------------------


def run_whole_video(ctx: RunContext) -> RunResult:
    """Predict ``[0, duration]`` for every query: its IoU is the moment's share of the video."""
    predict = fixed(0.0, 1.0)
    return scored_result(ctx, predict, lambda: predict(load_split(ctx, VAL))[0])


# --- registration -------------------------------------------------------------------------------------------------


def specs() -> tuple[MethodSpec, ...]:
    """The blind methods and their variants, in the order the report lists them; the variants say what they change."""
    priors = [
        blind_spec(
            prior_method(metric),
            f"Fixed-moment prior (tuned for {metric})",
            f"the single span (fractions of the duration) that maximises {metric} on train",
            run_prior,
            partial(prior_config, tune_for=metric),
        )
        for metric in PRIOR_METRICS
        if metric != PRIOR_DEFAULT
    ]
    continuous = blind_spec(
        "random-continuous",
        "Random span (continuous)",
        f"{CONTINUOUS_SPANS} uniformly random spans per query (sorted pairs of U(0, 1) fractions), averaged over draws",
        run_random,
        partial(random_config, space="continuous"),
    )
    return (
        blind_spec("random", "Random proposal", "uniform over the 2D-TAN candidate set, averaged over many draws",
                   run_random, random_config),  # fmt: skip
        continuous,
        blind_spec("prior", "Fixed-moment prior",
                   "the single span (fractions of the duration) that maximises a metric on train", run_prior,
                   prior_config),  # fmt: skip
        *priors,
        blind_spec("whole-video", "Whole video", "predicts [0, duration] for every query", run_whole_video,
                   whole_video_config),  # fmt: skip
    )


def blind_spec(
    name: str, title: str, description: str, run: Callable[[RunContext], RunResult], config: Callable[[str], object]
) -> MethodSpec:
    """A method that sees neither video nor query and is trained on nothing: no stages, no supervision.

    Every prior (a deterministic grid search on train) and the whole video give the same predictions whatever the
    seed, so they are ``seed_free``: ``bench run`` runs one seed of them, and ``bench compare`` pairs that one run
    with every seed of the other method. ``random`` draws with its seed.
    """
    return MethodSpec(
        name=name,
        title=title,
        stages=(),
        query="none",
        supervision="none",
        description=description,
        run=run,
        config=config,
        seed_free=run in (run_prior, run_whole_video),
    )


def register_all() -> None:
    """Register the blind methods; called once, at import (a second call raises, as the registry does)."""
    for spec in specs():
        register(spec)


register_all()
