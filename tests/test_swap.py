"""bench/swap.py: the swap test's partner rule, the split it makes, and that a run's swapped predictions are those
of the partner's input (so the swap reaches each method's whole input path, not a copy it looks up by query id)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from methodrun import run_method

from bench import swap
from bench.data import grounding


def test_each_query_swaps_with_the_next_query_of_its_video_that_names_another_concept():
    # videos 0, 0, 0, 1, 1, 2; in video 1 both queries name concept 3, and video 2 has one query: they keep their own
    assert swap.swap_partners([0, 0, 0, 1, 1, 2], [5, 5, 7, 3, 3, 9]) == [2, 2, 0, 3, 4, 5]
    assert swap.swap_partners([4, 4], [1, 2]) == [1, 0]
    assert swap.swap_partners([], []) == []


def test_the_swapped_test_split_moves_the_query_and_keeps_the_target(tiny):
    home, dataset = tiny
    data = grounding.load(dataset, home / "cache", "cpu", 8, progress=False)
    test = data.test.queries  # a frozen encoder's features, as methods/parts/frozen.py attaches them
    sem = torch.arange(len(test) * 3.0).reshape(len(test), 3, 1)
    tensors = {**test.tensors, "sem": sem, "sem_len": torch.arange(len(test)) % 3 + 1}
    test = dataclasses.replace(test, tensors=tensors)
    data = dataclasses.replace(data, test=grounding.GroundingSplit("test", test, data.test.videos))
    swapped, n_swapped = swap.with_swapped_test(data, dataset)
    assert swapped.test is data.test and swapped.extra_tests["test_ood"] is data.extra_tests["test_ood"]
    q, s = data.test.queries, swapped.extra_tests[swap.SWAPPED].queries
    concepts = dataset.query_concepts(grounding.split_files(dataset)["test"], data.test.qids)
    partner = swap.swap_partners(q["video_idx"].tolist(), concepts)
    assert n_swapped == sum(j != i for i, j in enumerate(partner)) > 0
    assert s.ids == q.ids
    for i, j in enumerate(partner):
        assert concepts[j] != concepts[i] or j == i
        assert int(q["video_idx"][j]) == int(q["video_idx"][i])
        for name in ("words", "words_len", "mel", "mel_len", "sem", "sem_len"):  # and what was computed from them
            assert torch.equal(s[name][i], q[name][j]), name
        for name in swap.TARGET_FIELDS:
            assert torch.equal(s[name][i], q[name][i]), name


def test_only_data_that_knows_its_concepts_has_the_swap_test(tiny):
    _, dataset = tiny
    assert swap.available(dataset)
    assert not swap.available(object())


def _top1(path) -> dict[str, list[float]]:
    return {(o := json.loads(line))["qid"]: o["pred"][0][:2] for line in path.read_text().splitlines()}


@pytest.mark.parametrize("method", ["vslnet-text", "base", "base+lsem", "asr-scn"])
def test_a_runs_swapped_prediction_is_its_partners_prediction(method, tiny, tmp_path):
    """Query i of test_swapped holds its partner j's input over the same video, so a method whose prediction depends
    on (video, query input) alone predicts for it what it predicts for j on test: its top-1 span is j's (to float
    noise of other batch paddings). A method that read its query by id would predict i's own span instead; the test
    also checks that some partners' spans differ, so that it could tell."""
    home, dataset = tiny
    result, _ = run_method(method, dataset, tmp_path / "work", home / "cache", swap_test=True)
    assert set(result.extra_tests) == {"test_ood", swap.SWAPPED}
    own, swapped = _top1(result.predictions), _top1(result.extra_predictions[swap.SWAPPED])
    data = grounding.load(dataset, home / "cache", "cpu", 8, progress=False)
    qids = data.test.qids
    concepts = dataset.query_concepts(grounding.split_files(dataset)["test"], qids)
    partner = swap.swap_partners(data.test.queries["video_idx"].tolist(), concepts)
    for i, j in enumerate(partner):
        assert swapped[qids[i]] == pytest.approx(own[qids[j]], abs=1e-3), (qids[i], qids[j])
    assert any(own[qids[i]] != pytest.approx(own[qids[j]], abs=1e-3) for i, j in enumerate(partner)), method
