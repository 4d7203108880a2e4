"""The blind rows (``methods/blind.py``) on hand-made annotation files: every expected number is derived in a comment
or counted independently here in plain Python, never read back from the code under test.

``methods.blind`` registers its methods at import. The other test files expect the suite's registry as they find
it, so this file imports the module against an empty registry and forgets the import afterwards (:func:`imported`).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import methods
from bench import config as cfg
from bench import context as spec_store
from bench import evaluate, tracking
from bench.context import RunContext, RunResult
from methods import registry
from methods.parts.proposals import candidates

METHODS = ("random", "prior", "whole-video")
VARIANTS = {  # name -> the config it runs: one prior per metric it can be tuned for, and the continuous random
    "random-continuous": ("space", "continuous"),
    "prior-r1-0.1": ("tune_for", "R1@0.1"),
    "prior-r1-0.3": ("tune_for", "R1@0.3"),
    "prior-r1-0.7": ("tune_for", "R1@0.7"),
    "prior-miou": ("tune_for", "mIoU"),
}


@pytest.fixture(scope="module")
def imported() -> Iterator[tuple[ModuleType, dict[str, registry.MethodSpec]]]:
    """``methods.blind`` and the registry its import wrote into, leaving the suite's registry as it was."""
    fresh = "methods.blind" not in sys.modules
    with pytest.MonkeyPatch.context() as mp:
        if fresh:
            mp.setattr(spec_store, "_REGISTRY", {})
            mp.setattr(registry, "_loaded", registry._loaded)  # a registry.get() in a test must not leave it True
        module = importlib.import_module("methods.blind")
        yield module, registry._REGISTRY
    if fresh:  # a later import (e.g. by registry.all_methods) must run register_all again, into the real registry
        sys.modules.pop("methods.blind", None)
        if hasattr(methods, "blind"):
            delattr(methods, "blind")


@pytest.fixture
def blind(imported) -> ModuleType:
    return imported[0]


@dataclass
class FakeData:
    """What the blind methods read of a dataset: one ActivityNet Captions JSON file per split, and a hash."""

    root: Path
    content_hash: str = "fakehash0001"

    def annotation_path(self, split: str) -> Path:
        return self.root / f"{split}.json"

    def write(self, split: str, moments: Sequence[tuple[float, float, float]]) -> None:
        """``moments`` as (duration, start, end) in seconds, one video each (``v_<split>_<i>``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        videos = {
            f"v_{split}_{i}": {"duration": d, "timestamps": [[s, e]], "sentences": [f"moment {i}"]}
            for i, (d, s, e) in enumerate(moments)
        }
        self.annotation_path(split).write_text(json.dumps(videos), encoding="utf-8")


def make_data(root: Path, train=None, val=None, test=None) -> FakeData:
    data = FakeData(root)
    for split, moments in (("train", train), ("val_1", val), ("val_2", test)):
        data.write(split, moments or [(100.0, 0.0, 50.0)])
    return data


def run_method(
    blind: ModuleType, name: str, data: FakeData, workdir: Path, config: Any = None, seed: int = 0, log=None
) -> RunResult:
    spec = {s.name: s for s in blind.specs()}[name]
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(
        spec=spec,
        config=config if config is not None else spec.config("tiny"),
        dataset_name="fake",
        profile="tiny",
        seed=seed,
        device=torch.device("cpu"),
        log=log if log is not None else tracking.RunLogger(None, None),  # inactive: the statistics tests log nothing
        workdir=workdir,
        cache_dir=workdir / "cache",
        preloaded=data,
    )
    return spec.run(ctx)


def pred_fractions(path: Path) -> torch.Tensor:
    """The predicted spans of the file as fractions of each query's duration, ``[Q, K, 2]`` (K the same for all)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return torch.tensor([[[x / row["duration"] for x in span] for span in row["pred"]] for row in rows])


# --- registration and configs -------------------------------------------------------------------------------------


def test_importing_registers_the_three_blind_methods_and_their_variants(imported, monkeypatch):
    blind, at_import = imported
    assert set(METHODS) | set(VARIANTS) <= set(at_import)
    for name in (*METHODS, *VARIANTS):
        spec = at_import[name]
        assert spec.implemented and spec.stages == () and spec.query == "none" and spec.supervision == "none"
        if name in METHODS:  # the names bench methods, bench run and the report print for the three rows
            assert spec.title == {"random": "Random proposal", "prior": "Fixed-moment prior",
                                  "whole-video": "Whole video"}[name] and spec.description  # fmt: skip
        for profile in cfg.PROFILES:  # the same blind row on every profile, but random ranks the profile's candidates
            config = spec.config(profile)
            if name.startswith("random"):
                assert config.n_clips == cfg.GROUNDING_CLIPS[profile]
                config = dataclasses.replace(config, n_clips=spec.config("tiny").n_clips)
            assert config == spec.config("tiny")
    assert at_import["prior"].config("small").tune_for == "R1@0.5"
    assert at_import["random"].config("small").space == "candidates"
    for name, (key, value) in VARIANTS.items():
        assert getattr(at_import[name].config("paper"), key) == value, name
        assert at_import[name].run is at_import[name.split("-")[0]].run  # a variant is a config, not new code
    # every metric the prior can be tuned for has exactly one method, and the names follow one rule
    tuned = {s.config("tiny").tune_for: n for n, s in at_import.items() if n.startswith("prior")}
    assert tuned == {m: blind.prior_method(m) for m in blind.PRIOR_METRICS} and len(tuned) == 5
    monkeypatch.setattr(spec_store, "_REGISTRY", {})
    blind.register_all()
    # (registry.get would import the other method modules into this temporary registry: read it directly)
    assert sorted(registry._REGISTRY) == sorted([*METHODS, *VARIANTS]) and registry._REGISTRY["prior"].implemented
    with pytest.raises(ValueError, match="twice"):
        blind.register_all()


def test_configs_take_overrides_and_refuse_bad_values(blind):
    assert blind.random_config("paper") == blind.RandomConfig(draws=100, space="candidates")
    assert blind.prior_config("small") == blind.PriorConfig(tune_for="R1@0.5", grid=100)
    changed = cfg.apply_overrides(blind.random_config("tiny"), {"space": "continuous", "draws": "7"})
    assert changed == blind.RandomConfig(draws=7, space="continuous")
    assert cfg.apply_overrides(blind.prior_config("tiny"), {"tune_for": "mIoU"}).tune_for == "mIoU"
    with pytest.raises(ValueError, match="must be one of"):
        cfg.apply_overrides(blind.prior_config("tiny"), {"tune_for": "R5@0.5"})
    with pytest.raises(ValueError, match="draws"):
        blind.RandomConfig(draws=0)
    with pytest.raises(ValueError, match="unknown profile"):
        blind.whole_video_config("huge")


# --- whole video --------------------------------------------------------------------------------------------------


def test_whole_video_hand_case(blind, tmp_path):
    # [0, 100] against [0, 50] and [25, 75]: IoU 50/100 = 0.5 for both. R1@0.5 needs IoU > 0.5 (strict): 0.
    # Centres (50) lie in both moments (ends included); the prediction is the whole video, so pred_len = 1.
    data = make_data(tmp_path / "data", test=[(100.0, 0.0, 50.0), (100.0, 25.0, 75.0)], val=[(80.0, 0.0, 20.0)])
    result = run_method(blind, "whole-video", data, tmp_path / "work")
    expected = {"R1@0.1": 1.0, "R1@0.3": 1.0, "R1@0.5": 0.0, "R1@0.7": 0.0, "mIoU": 0.5, "centre_in": 1.0}
    expected |= {"R5@0.3": 1.0, "R5@0.5": 0.0, "pred_len": 1.0, "n": 2}
    assert {k: result.test[k] for k in expected} == pytest.approx(expected)
    assert result.val_best["mIoU"] == pytest.approx(0.25) and result.val_best["R1@0.1"] == 1.0  # 20 / 80
    assert pred_fractions(result.predictions).tolist() == [[[0.0, 1.0]], [[0.0, 1.0]]]


# --- prior --------------------------------------------------------------------------------------------------------


def test_prior_fit_by_hand_with_ties_to_the_smallest_start_then_end(blind):
    from bench.data.activitynet import Moment

    def moments(spans: Sequence[tuple[float, float]]) -> list[Moment]:
        return [Moment(f"v_{i}", 100.0, s, e, "x", 1, "train") for i, (s, e) in enumerate(spans)]

    # Three copies of [0.2, 0.4] (fractions). For R1@0.5 many grid spans hit all three; the first in (start, end)
    # order: start 0 gives at most IoU 0.2 / max(b, 0.4) <= 0.5 (not > 0.5), start 0.1 with end 0.2, 0.3 gives
    # IoU 0, 1/3, and end 0.4 gives 0.2 / 0.3 = 2/3: the prior is [0.1, 0.4]. mIoU: only [0.2, 0.4] reaches 1.
    same = moments([(20.0, 40.0)] * 3)
    assert blind.fit_prior(same, "R1@0.5", grid=10) == blind.PriorFit(0.1, 0.4, "R1@0.5", 1.0)
    assert blind.fit_prior(same, "mIoU", grid=10) == blind.PriorFit(0.2, 0.4, "mIoU", 1.0)
    # Two clusters A = [0, 0.5] (twice), B = [0.5, 1]. No span has IoU > 0.5 with both, so at most 2/3 of the
    # moments are hit; the first such span is [0, b] with b / 0.5 > 0.5, i.e. b = 0.3 (grid 10) or 0.26 (grid 100).
    # mIoU: IoU_A + IoU_B <= |S| / max(|S|, 0.5) <= 1, so 2 IoU_A + IoU_B <= 1 + IoU_A <= 2, reached only by S = A.
    two = moments([(0.0, 50.0), (0.0, 50.0), (50.0, 100.0)])
    assert blind.fit_prior(two, "R1@0.5", grid=10) == blind.PriorFit(0.0, 0.3, "R1@0.5", pytest.approx(2 / 3))
    assert blind.fit_prior(two, "R1@0.5", grid=100) == blind.PriorFit(0.0, 0.26, "R1@0.5", pytest.approx(2 / 3))
    fit = blind.fit_prior(two, "mIoU", grid=10)
    assert (fit.start, fit.end, fit.value) == (0.0, 0.5, pytest.approx(2 / 3))
    # R1@0.1: [0, 0.1] has IoU 0.2 with A (> 0.1) but 0 with B; hitting all three needs overlap with both, e.g.
    # [0, 0.6]: IoU 0.5 / 0.6 with A and 0.1 / 1 = 0.1 with B (not > 0.1); [0, 0.7]: 0.2 / 1 with B. First is [0, 0.7].
    assert blind.fit_prior(two, "R1@0.1", grid=10) == blind.PriorFit(0.0, 0.7, "R1@0.1", 1.0)
    assert len(blind.grid_spans(100)) == 5050 and blind.grid_spans(2).tolist() == [[0, 0.5], [0, 1], [0.5, 1]]


def test_prior_run_is_chosen_on_train_only_and_scored_by_hand(blind, tmp_path):
    train = [(100.0, 0.0, 50.0), (100.0, 0.0, 50.0), (100.0, 50.0, 100.0)]  # the two clusters above
    test = [(200.0, 0.0, 100.0), (200.0, 100.0, 200.0), (200.0, 0.0, 60.0)]
    data = make_data(tmp_path / "data", train=train, val=[(100.0, 0.0, 30.0)], test=test)
    config = blind.PriorConfig(tune_for="R1@0.5", grid=10)
    result = run_method(blind, "prior", data, tmp_path / "w1", config)
    # The prior [0, 0.3] is [0, 60] in 200 s videos: IoU 60/100 = 0.6, 0, 60/60 = 1. Centre 30: in, out, in.
    expected = {"R1@0.1": 2 / 3, "R1@0.5": 2 / 3, "R1@0.7": 1 / 3, "R5@0.7": 1 / 3, "mIoU": 1.6 / 3}
    expected |= {"centre_in": 2 / 3, "pred_len": 0.3}
    assert {k: result.test[k] for k in expected} == pytest.approx(expected)
    assert result.val_best["mIoU"] == pytest.approx(1.0)  # [0, 30] is exactly the val moment
    assert torch.allclose(pred_fractions(result.predictions), torch.tensor([[[0.0, 0.3]]] * 3))

    # New val_1 and val_2 (all moments at the end) change the scores but not the span: it is chosen on train.
    data.write("val_1", [(100.0, 70.0, 100.0)])
    data.write("val_2", [(50.0, 35.0, 50.0)] * 2)
    again = run_method(blind, "prior", data, tmp_path / "w2", config)
    assert torch.allclose(pred_fractions(again.predictions), torch.tensor([[[0.0, 0.3]]] * 2))
    assert again.test["mIoU"] == 0.0 and again.val_best["mIoU"] == 0.0

    # Tuned for mIoU the prior is [0, 0.5]: [0, 100] in 200 s, IoU 1, 0, 60/100 with the first test set.
    data.write("val_2", test)
    tuned = run_method(blind, "prior", data, tmp_path / "w3", blind.PriorConfig(tune_for="mIoU", grid=10))
    assert (tuned.test["R1@0.7"], tuned.test["mIoU"], tuned.test["pred_len"]) == pytest.approx((1 / 3, 1.6 / 3, 0.5))


# --- random -------------------------------------------------------------------------------------------------------


def z_tolerance(p_or_var: float, samples: int, bernoulli: bool = True, z: float = 4.5) -> float:
    """``z`` standard errors of a mean of ``samples`` i.i.d. draws (variance p(1 - p) for a Bernoulli)."""
    var = p_or_var * (1 - p_or_var) if bernoulli else p_or_var
    return z * math.sqrt(var / samples)


def test_random_candidates_match_the_exact_expectation(blind, tmp_path):
    # The moment [24, 40] of a 64 s video is exactly the candidate cell (24, 39) (length 16, stride 1): at 1 s a
    # clip, every candidate span is [s, e + 1] in whole seconds. A uniform ranking puts each of the 153 candidates
    # first with probability 1/153, so E[R1@m] = #{IoU > m} / 153 and E[mIoU] = mean IoU over the candidates.
    cells = [tuple(c) for c in candidates().tolist()]
    assert len(cells) == 153 and (24, 39) in cells
    ious = []
    for s, e in cells:
        inter = max(0, min(e + 1, 40) - max(s, 24))
        union = max(e + 1, 40) - min(s, 24)
        ious.append(inter / union)
    queries, draws = 40, 250  # every query draws its own permutation: 10,000 independent top-1 picks per metric
    samples = queries * draws
    data = make_data(tmp_path / "data", val=[(64.0, 24.0, 40.0)] * 2, test=[(64.0, 24.0, 40.0)] * queries)
    config = blind.RandomConfig(draws=draws, space="candidates")
    result = run_method(blind, "random", data, tmp_path / "w0", config, seed=0)
    for m in evaluate.IOU_THRESHOLDS:
        p = sum(iou > m for iou in ious) / 153
        assert abs(result.test[f"R1@{m}"] - p) <= z_tolerance(p, samples), m
    mean = sum(ious) / 153
    var = sum(iou**2 for iou in ious) / 153 - mean**2
    assert abs(result.test["mIoU"] - mean) <= z_tolerance(var, samples, bernoulli=False)
    assert result.test["n"] == queries and result.val_best["n"] == 2

    # Draw 0 ranks all 153 candidates of every query; same seed, same numbers and file; another seed, another draw.
    spans = sorted([s, e + 1] for s, e in cells)
    first = [json.loads(line)["pred"] for line in result.predictions.read_text().splitlines()]
    assert all(sorted(pred) == spans for pred in first) and first[0] != first[1]
    few = blind.RandomConfig(draws=3, space="candidates")
    once, again = (run_method(blind, "random", data, tmp_path / f"w{i}", few, seed=0) for i in (1, 2))
    assert once.test == again.test and once.predictions.read_bytes() == again.predictions.read_bytes()
    assert once.predictions.read_bytes() == result.predictions.read_bytes()  # draw 0 does not depend on draws
    other = run_method(blind, "random", data, tmp_path / "w3", few, seed=1)
    assert other.predictions.read_bytes() != once.predictions.read_bytes()


def test_random_continuous_spans_match_the_exact_expectation(blind, tmp_path):
    # Against the whole video [0, D] a span's IoU is its length |U1 - U2| (fractions), whose density is 2 (1 - x):
    # E = 1/3, E[X^2] = 1/6 so Var = 1/18, and P(X > 0.5) = (1 - 0.5)^2 = 1/4. pred_len is the same length.
    queries, draws = 40, 250
    samples = queries * draws
    data = make_data(tmp_path / "data", test=[(100.0, 0.0, 100.0)] * queries)
    result = run_method(blind, "random", data, tmp_path / "w", blind.RandomConfig(draws=draws, space="continuous"))
    assert abs(result.test["mIoU"] - 1 / 3) <= z_tolerance(1 / 18, samples, bernoulli=False)
    assert abs(result.test["pred_len"] - 1 / 3) <= z_tolerance(1 / 18, samples, bernoulli=False)
    assert abs(result.test["R1@0.5"] - 0.25) <= z_tolerance(0.25, samples)
    first = pred_fractions(result.predictions)
    assert first.shape == (queries, 5, 2) and bool((first[..., 0] <= first[..., 1]).all())
    assert bool((first >= 0).all() and (first <= 1).all())


# --- what every run hands back --------------------------------------------------------------------------------------


def test_runs_log_params_and_their_predictions_file_rescores_to_the_test_metrics(blind, tmp_path, home):
    data = make_data(
        tmp_path / "data",
        train=[(100.0, 0.0, 50.0), (100.0, 0.0, 50.0), (100.0, 50.0, 100.0)],
        val=[(60.0, 6.0, 30.0), (90.0, 0.0, 90.0)],
        test=[(120.0, 10.0, 70.0), (80.0, 40.0, 80.0), (64.0, 0.0, 16.0)],
    )
    configs = {
        "random": blind.RandomConfig(draws=1),  # one draw: the file holds exactly the draw that was scored
        "prior": blind.PriorConfig(grid=10),
        "whole-video": blind.WholeVideoConfig(),
    }
    run_ids = {}
    for name, config in configs.items():
        with tracking.start_run(f"blind-test/{name}", {"method": name}) as log:
            result = run_method(blind, name, data, tmp_path / name, config, log=log)
            run_ids[name] = log.run_id
        assert isinstance(result, RunResult) and result.dataset_hash == "fakehash0001"
        assert result.predictions == tmp_path / name / "test_predictions.jsonl" and result.selected_epoch is None
        assert evaluate.evaluate_file(result.predictions) == pytest.approx(result.test)
        assert set(evaluate.METRIC_KEYS) <= set(result.test) and result.val_best["n"] == 2
    runs = tracking.finished_runs().set_index("run_id")
    prior = runs.loc[run_ids["prior"]]
    assert (prior["params.prior_start"], prior["params.prior_end"]) == ("0.0", "0.3")  # as in the hand case above
    assert prior["params.tuned_for"] == "R1@0.5" and float(prior["params.prior_train_value"]) == pytest.approx(2 / 3)
    random = runs.loc[run_ids["random"]]
    assert (random["params.draws"], random["params.space"]) == ("1", "candidates")


@pytest.mark.parametrize(("space", "n_clips"), [("candidates", 64), ("candidates", 8), ("continuous", 64)])
def test_random_metrics_on_cut_lists_are_those_of_the_whole_draws(space, n_clips):
    """The draws scored on their first ranks (``DRAW_DEPTH``) give the numbers of the same draws scored whole; a list
    shorter than the depth (8 clips: 36 candidates; 5 continuous spans) is scored whole."""
    from methods import blind

    g = torch.Generator().manual_seed(3)
    n = 400
    duration = torch.rand(n, generator=g, dtype=torch.float64) * 100 + 10
    start = torch.rand(n, generator=g, dtype=torch.float64) * 0.6 * duration
    gt = torch.stack([start, start + torch.rand(n, generator=g, dtype=torch.float64) * 0.4 * duration], 1)
    split = blind.Split([str(i) for i in range(n)], duration, gt)
    config = blind.RandomConfig(draws=6, space=space, n_clips=n_clips)
    got, first, per_query = blind.random_metrics(split, config, torch.Generator().manual_seed(7))
    whole = torch.Generator().manual_seed(7)
    draws = [blind.random_draw(split, space, whole, n_clips) for _ in range(config.draws)]
    want = blind.mean_metrics([evaluate.evaluate(d, gt, duration) for d in draws])
    assert got == want and torch.equal(first, draws[0])
    # each query's values averaged over the same draws (what bench compare pairs); their mean is the metric
    scored = [evaluate.score_queries(d, gt, duration).values for d in draws]
    for key, values in per_query.items():
        assert torch.allclose(values, sum(v[key] for v in scored) / config.draws, atol=1e-12), key
        assert values.mean().item() == pytest.approx(got[key], abs=1e-12), key
    assert set(per_query) == set(scored[0]) and set(per_query["R1@0.5"].tolist()) - {k / 6 for k in range(7)} == set()


def test_a_draw_whose_nms_needs_more_ranks_than_the_depth_is_scored_whole(monkeypatch):
    from methods import blind

    monkeypatch.setattr(blind, "DRAW_DEPTH", 2)  # two ranks never hold five NMS survivors: every draw falls back
    g = torch.Generator().manual_seed(0)
    duration = torch.full((50,), 60.0, dtype=torch.float64)
    gt = torch.stack([torch.rand(50, generator=g, dtype=torch.float64) * 30, torch.full((50,), 45.0)], 1).double()
    split = blind.Split([str(i) for i in range(50)], duration, gt)
    config = blind.RandomConfig(draws=3)
    got, _, _ = blind.random_metrics(split, config, torch.Generator().manual_seed(1))
    whole = torch.Generator().manual_seed(1)
    want = blind.mean_metrics([evaluate.evaluate(blind.random_draw(split, "candidates", whole), gt, duration)
                               for _ in range(3)])  # fmt: skip
    assert got == want and 0 < got["R5@0.3"] < 1
