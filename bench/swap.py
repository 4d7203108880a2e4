"""The swap test: how much of a run's score its query carries (the synthetic benchmark, issue 14).

A grounding method can score above the blind rows without reading its query: a video alone says where its moments
are likely to lie. To see what the query adds, every grounding run on ``synth`` also scores ``test_swapped``: the
test split with each query's input replaced by that of its **partner**, the next query of the same video (in split
order, cyclically) that names another planted concept, while its video, duration and moment stay
(:data:`TARGET_FIELDS`). A prediction is then scored against the moment that the query it was given does *not*
describe. So:

- a method that ignores its query scores the same on both splits (its predictions do not change);
- a method that follows its query exactly predicts the partner's moment, and scores what that moment scores against
  the original: on synth/small's val_2 14.87 at R@1 IoU=0.5 (a video's moments overlap; the README's "Data");
- the difference own − swapped, paired by query (``bench compare M M@swapped``), is what the query carries.

The swap is made on the data a method hands :func:`bench.train.fit_grounding`, as one more test split beside
``test_ood``: whatever the method computed from the query (log-mel, frozen encoder features, an ASR transcript, the
gold words) moves with it, and training and the selection on val are the run's own. One training, two scores. A
query whose video has no query of another concept keeps its own input; their number is logged as the run's param
``swap_test.n_swapped`` (of ``swap_test.n_test``).

The partner rule needs the planted concepts, so only ``synth`` has the split; on real data "another moment" is not
known to be another meaning (two captions of one video can describe one event in other words).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

SWAPPED = "test_swapped"
TARGET_FIELDS = ("video_idx", "span", "duration")  # what a query is scored against: kept by the swap


def swap_partners(video: list[int], concepts: list[int]) -> list[int]:
    """For each query, the index of the next query of the same video (in split order, cyclically) whose concept
    differs, or its own index when there is none."""
    by_video: dict[int, list[int]] = {}
    for i, v in enumerate(video):
        by_video.setdefault(v, []).append(i)
    partner = list(range(len(video)))
    for rows in by_video.values():
        for k, i in enumerate(rows):
            partner[i] = next((j for j in rows[k + 1 :] + rows[:k] if concepts[j] != concepts[i]), i)
    return partner


def available(dataset: Any) -> bool:
    """Whether ``dataset`` knows its queries' concepts (the synthetic benchmark does)."""
    return callable(getattr(dataset, "query_concepts", None))


def with_swapped_test(data: Any, dataset: Any) -> tuple[Any, int]:
    """``data`` (a :class:`bench.data.grounding.GroundingData`, or a method's version of it) with the split
    :data:`SWAPPED` added to its ``extra_tests``, and how many of its queries were given another's input. Every
    query field but :data:`TARGET_FIELDS` moves with the input (speech, words, lengths, features)."""
    from bench.data import grounding

    split = data.test
    concepts = dataset.query_concepts(grounding.split_files(dataset)["test"], split.qids)
    partner = swap_partners(split.queries["video_idx"].tolist(), concepts)
    tensors = {}
    for name, t in split.queries.tensors.items():
        tensors[name] = t if name in TARGET_FIELDS else t.index_select(0, torch.tensor(partner, device=t.device))
    swapped = grounding.GroundingSplit(SWAPPED, dataclasses.replace(split.queries, tensors=tensors), split.videos)
    n_swapped = sum(j != i for i, j in enumerate(partner))
    return dataclasses.replace(data, extra_tests={**data.extra_tests, SWAPPED: swapped}), n_swapped
