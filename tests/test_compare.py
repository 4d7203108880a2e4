"""``bench compare``: tiny tracked runs of two blind methods and a learned one, then the paired comparison.

The end-to-end part trains nothing by hand: ``bench run`` makes the runs on synth/tiny (prior and whole video, one
seed each; Base, seeds 0 and 1), and ``bench compare`` reads them back from the store, downloads their predictions
and pairs them. Its numbers are checked against what the runs logged and against a direct recount of the
downloaded predictions files. A hand-made store checks the test-ood split and the pairing rules.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from unittest import mock

import mlflow
import numpy as np
import pytest

from bench import cli, compare, evaluate, run, stats, tables, tracking
from methods import registry

SEEDS_BASE = [0, 1]


def cli_out(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def store(tiny):
    """Tracked runs on synth/tiny: prior and whole-video (seed 0), Base (seeds 0, 1)."""
    home, _ = tiny
    out = run.run([registry.get("prior"), registry.get("whole-video")], dataset="synth", profile="tiny",
                  seeds=[0], device="cpu", progress=False)  # fmt: skip
    out += run.run([registry.get("base")], dataset="synth", profile="tiny", seeds=SEEDS_BASE, device="cpu",
                   progress=False)  # fmt: skip
    assert [o.status for o in out] == ["FINISHED"] * 4, [o.error for o in out]
    return tracking.finished_runs({"dataset": "synth", "profile": "tiny"})


def logged(runs, method: str, metric: str) -> list[float]:
    mine = runs[runs["params.method"] == method].sort_values("params.seed")
    return [float(v) for v in mine[f"metrics.test/{tracking.mlflow_key(metric)}"]]


def interval(text: str) -> tuple[float, float]:
    low, high = re.search(r"interval \[([-+][\d.]+), ([-+][\d.]+)\]", text).groups()
    return float(low), float(high)


def test_compare_a_learned_method_with_a_blind_one_end_to_end(store):
    code, out, err = cli_out(["compare", "base", "prior", "--profile", "tiny"])
    assert code == 0, err
    base_r1, prior_r1 = logged(store, "base", "R1@0.5"), logged(store, "prior", "R1@0.5")
    # each method's mean ± std over seeds is what its runs logged (the same evaluator, recomputed from the files)
    base_summary = stats.summarise(base_r1)
    assert f"base   {base_summary.mean * 100:.2f} ± {base_summary.std * 100:.2f} (n=2; seeds 0, 1;" in out
    assert f"prior  {prior_r1[0] * 100:.2f} (n=1; seeds 0;" in out  # one run: its value, no "± 0.00"
    # the single prior run is paired with both seeds of Base (the prior does not depend on the seed)
    diff = np.mean(base_r1) - prior_r1[0]
    assert f"paired difference base − prior: {diff * 100:+.2f} points over" in out and "(0-0, 1-0)" in out
    low, high = interval(out)
    assert low <= diff * 100 + 0.005 and diff * 100 - 0.005 <= high
    assert ("inside noise" in out) == (low <= 0 <= high)
    assert "10,000 resamples of the queries, seeds kept paired, bootstrap seed 0" in out
    # over seeds: one difference per seed pair, each Base run's logged value minus the prior's, and their t interval
    per_pair = ", ".join(f"{(r - prior_r1[0]) * 100:+.2f}" for r in base_r1)
    assert f"over seeds: per-pair differences {per_pair}; 95% Student-t interval" in out and "(n=2 pairs)" in out
    # swapping the methods negates everything; a method against itself is [0, 0] and inside noise
    _, swapped, _ = cli_out(["compare", "prior", "base", "--profile", "tiny"])
    assert interval(swapped) == (-high, -low)
    _, same, _ = cli_out(["compare", "base", "base", "--profile", "tiny"])
    assert interval(same) == (0.0, 0.0) and "inside noise" in same and "(0-0, 1-1)" in same


def test_compare_recounts_the_downloaded_predictions(store, tmp_path):
    # The API's numbers against a recount: download every run's file, score each with the evaluator, average.
    result = compare.compare("base", "whole-video", profile="tiny", metric="mIoU")
    client = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri())
    per_run = {}
    for side in (result.a, result.b):
        for r in side.runs:
            path = client.download_artifacts(r.run_id, "predictions/test_predictions.jsonl", str(tmp_path))
            per_run[(side.method, r.seed)] = evaluate.evaluate_file(path)["mIoU"]
    assert result.pairs == [(0, 0), (1, 0)]
    assert result.a.summary.mean == pytest.approx(np.mean([per_run[("base", s)] for s in SEEDS_BASE]), abs=1e-12)
    assert result.b.summary.mean == pytest.approx(per_run[("whole-video", 0)], abs=1e-12)
    assert result.difference.mean == pytest.approx(result.a.summary.mean - result.b.summary.mean, abs=1e-12)
    assert result.b.summary.std is None and result.b.summary.n == 1
    # and the logged metric of every run is that same number (runs score with the same evaluator)
    assert logged(store, "base", "mIoU") == pytest.approx([per_run[("base", s)] for s in SEEDS_BASE], abs=1e-12)
    # a discounted recall compares too; a seed filter keeps only Base's seed 1
    one = compare.compare("base", "prior", profile="tiny", metric="dR1@0.5", seeds=[1])
    assert one.pairs == [(1, 0)] and [r.seed for r in one.a.runs] == [1]
    assert one.a.summary.mean == pytest.approx(logged(store, "base", "dR1@0.5")[1], abs=1e-12)


def test_compare_errors_are_one_clear_line(store):
    code, _, err = cli_out(["compare", "base", "sil", "--profile", "tiny"])
    assert code == 2 and "no finished run of 'sil'" in err and "Traceback" not in err
    code, _, err = cli_out(["compare", "base", "prior", "--profile", "tiny", "--metric", "R2@0.5"])
    assert code == 2 and "unknown metric 'R2@0.5'" in err
    # a method without a run on the chosen split's artifact: one line naming the run and the file
    client = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri())
    prior = store[store["params.method"] == "prior"].iloc[0]
    artifact = Path(client.get_run(prior["run_id"]).info.artifact_uri.removeprefix("file://"))
    hidden = artifact / "predictions" / "test_ood_predictions.jsonl"
    hidden.rename(hidden.with_suffix(".hidden"))
    try:
        code, _, err = cli_out(["compare", "base", "prior", "--profile", "tiny", "--split", "test-ood"])
    finally:
        hidden.with_suffix(".hidden").rename(hidden)
    assert code == 2 and "predictions/test_ood_predictions.jsonl" in err and "Traceback" not in err


def test_compare_on_the_debiased_split_reads_the_test_ood_predictions(store):
    """synth/tiny has test_ood: every run scored it, and compare pairs those predictions."""
    code, out, err = cli_out(["compare", "base", "prior", "--profile", "tiny", "--split", "test-ood"])
    assert code == 0, err
    base = store[store["params.method"] == "base"].sort_values("params.seed")["metrics.test_ood/R1_IoU0.5"]
    assert f"base   {stats.summarise(list(base)).mean * 100:.2f} ± " in out


def test_the_swap_test_pairs_a_method_with_its_own_runs_on_the_swapped_queries(store, tmp_path):
    """bench run scores synth's test_swapped beside val_2 (bench/swap.py): `M@swapped` is M's own runs read from
    that split's predictions, paired by query with M on val_2; the blind rows have no such split."""
    base = store[store["params.method"] == "base"].sort_values("params.seed")
    assert (base["params.swap_test.n_swapped"].astype(int) > 0).all()
    result = compare.compare("base", "base@swapped", profile="tiny")
    assert [r.run_id for r in result.a.runs] == [r.run_id for r in result.b.runs] == list(base["run_id"])
    assert result.a.summary.mean == pytest.approx(np.mean(logged(store, "base", "R1@0.5")), abs=1e-12)
    swapped = [float(v) for v in base["metrics.test_swapped/R1_IoU0.5"]]
    assert result.b.summary.mean == pytest.approx(np.mean(swapped), abs=1e-12)
    assert result.difference.mean == pytest.approx(result.a.summary.mean - result.b.summary.mean, abs=1e-12)
    code, _, err = cli_out(["compare", "base@swapped", "prior@swapped", "--profile", "tiny"])
    assert code == 2 and "test_swapped_predictions.jsonl" in err and "bench run --method prior" in err
    code, _, err = cli_out(["compare", "base", "base@swapped", "--profile", "tiny", "--split", "test-ood"])
    assert code == 2 and "swap test of val_2" in err and "Traceback" not in err


def test_random_is_paired_on_its_per_query_means_over_draws(store, tmp_path, capsys):
    """``random`` logs 100 draws' mean; compare pairs each query's mean over the same draws, not the first draw."""
    out = run.run([registry.get("random")], dataset="synth", profile="tiny", seeds=[0], device="cpu", progress=False)
    assert out[0].status == "FINISHED", out[0].error
    runs = tracking.finished_runs({"dataset": "synth", "profile": "tiny"})
    draws = int(runs[runs["params.method"] == "random"]["params.draws"].iloc[0])
    assert draws > 1 and compare.averages_draws("random") and not compare.averages_draws("prior")
    c = compare.compare("random", "base", profile="tiny", seeds=[0], runs=runs, resamples=500)
    for metric in ("R1@0.5", "mIoU"):
        m = compare.compare("random", "base", profile="tiny", seeds=[0], runs=runs, metric=metric, resamples=100)
        assert m.a.summary.mean == pytest.approx(logged(runs, "random", metric)[0], abs=1e-9), metric  # all draws
    rid = compare.newest_runs(runs, "random")[0]
    first = compare._values(compare.download(rid, tables.test_split("val_2").artifact, tmp_path), "R1@0.5")
    means = compare.scores([rid], "val_2", "R1@0.5")[("random", 0)]
    assert means.keys() == first.keys() and means != first  # the per-query means are not draw 0's 0/1 hits
    assert all(0 <= v <= 1 and round(v * draws) == pytest.approx(v * draws, abs=1e-6) for v in means.values())
    assert c.b.summary.mean == pytest.approx(logged(runs, "base", "R1@0.5")[0], abs=1e-9)
    # a random run logged before the means file existed is scored on its first draw, and compare says so
    real_download = compare.download

    def no_means(run, artifact, into, *remedy):
        if artifact.endswith("_query_means.jsonl"):
            raise FileNotFoundError("no such artifact")
        return real_download(run, artifact, into, *remedy)

    with mock.patch.object(compare, "download", no_means):
        assert compare.scores([rid], "val_2", "R1@0.5")[("random", 0)] == first
    assert "scored on its first draw alone" in capsys.readouterr().err


def test_pairing_rules():
    def runs(method: str, seeds: list[int]) -> dict[int, compare.Run]:
        return {s: compare.Run(method, s, f"{method}{s}") for s in seeds}

    assert compare.pair_seeds(runs("sil", [0, 1, 2]), runs("base", [1, 2, 3]), "sil", "base") == [(1, 1), (2, 2)]
    assert compare.pair_seeds(runs("prior", [0]), runs("sil", [0, 1, 2]), "prior", "sil") == [(0, 0), (0, 1), (0, 2)]
    assert compare.pair_seeds(runs("sil", [3, 4]), runs("prior-miou", [0]), "sil", "prior-miou") == [(3, 0), (4, 0)]
    # random draws with its seed: one run of it is paired only with the same seed
    assert compare.pair_seeds(runs("random", [0]), runs("sil", [0, 1]), "random", "sil") == [(0, 0)]
    with pytest.raises(ValueError, match="no seed in common"):
        compare.pair_seeds(runs("random", [5]), runs("sil", [0, 1]), "random", "sil")
    assert compare.seed_free("whole-video") and compare.seed_free("prior-r1-0.7") and not compare.seed_free("random")
    assert compare.metric_key("R1_IoU0.7") == "R1@0.7"


# --- a hand-made store: the test-ood split ---------------------------------------------------------------------

# Four queries of 100 s videos, moment [0, 50]. On val_2 "sil" predicts [0, 50] (all hits) and "base" [0, 20]
# (IoU 0.4: misses at 0.5); on test-ood "sil" hits queries 0 and 1 only and "base" query 0 only.
HIT, MISS = [0.0, 50.0], [0.0, 20.0]
FILES = {
    ("sil", "val_2"): [HIT] * 4,
    ("base", "val_2"): [MISS] * 4,
    ("sil", "test-ood"): [HIT, HIT, MISS, MISS],
    ("base", "test-ood"): [HIT, MISS, MISS, MISS],
}


def _log_fake_runs(tmp_path: Path) -> None:
    for method in ("sil", "base"):
        for seed in (0, 1):
            params = {"method": method, "dataset": "synth", "profile": "small", "seed": seed}
            with tracking.start_run(f"{method}/fake/seed{seed}", params) as log:
                for split in tables.TEST_SPLITS.values():
                    spans = FILES[(method, split.name)]
                    path = tmp_path / f"{method}{seed}" / Path(split.artifact).name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(
                        "".join(
                            json.dumps({"qid": f"v{i}#0", "duration": 100.0, "gt": [0.0, 50.0], "pred": [span]}) + "\n"
                            for i, span in enumerate(spans)
                        )
                    )
                    log.log_metrics(evaluate.evaluate_file(path), prefix=split.prefix)
                    log.log_artifact(path, "predictions")


def test_compare_reads_the_split_it_is_asked_for(home, tmp_path):
    _log_fake_runs(tmp_path)
    val = compare.compare("sil", "base", split="val_2", resamples=2000)
    assert (val.a.summary.mean, val.b.summary.mean, val.difference.mean) == (1.0, 0.0, 1.0)
    assert (val.difference.low, val.difference.high) == (1.0, 1.0) and not val.difference.inside_noise
    ood = compare.compare("sil", "base", split="test-ood", resamples=2000)
    # d_q = [0, 1, 0, 0] for both seed pairs: mean 0.25; resampled means are multiples of 1/4 from 0 to 1, and with
    # probability (3/4)^4 = 0.32 a resample draws no query 1: the interval starts at 0 (inside noise)
    assert (ood.a.summary.mean, ood.b.summary.mean, ood.difference.mean) == (0.5, 0.25, 0.25)
    assert ood.difference.low == 0.0 and ood.difference.high in (0.75, 1.0) and ood.difference.inside_noise
    text = compare.format_comparison(ood)
    assert "test split test-ood" in text and "inside noise: the interval contains 0" in text
    assert "sil   50.00 ± 0.00 (n=2; seeds 0, 1;" in text  # two seeds that agree: a real std of 0


def test_one_method_against_itself_with_an_option_changed(home, toy_method, capsys):
    """Sides read with --set: the stand-in predicts [0, 50 + shift * seed] of a [0, 50] moment in 100 s videos, so
    seed 1 has IoU 50/60 at shift 10 (its own configuration) and 50/80 at shift 30, seed 2 50/70 and 50/100 (the
    span clipped to the video): A - B = ((50/60 - 50/80) + (50/70 - 50/100)) / 2 on every query."""
    for overrides in ({}, {"shift": "30"}):
        run.run([toy_method], dataset="synth", profile="tiny", seeds=[1, 2], device="cpu", overrides=overrides,
                progress=False)  # fmt: skip
    c = compare.compare("base", "base", profile="tiny", metric="mIoU", overrides_b={"shift": "30"}, resamples=200)
    expected = ((50 / 60 - 50 / 80) + (50 / 70 - 50 / 100)) / 2
    assert c.difference.mean == pytest.approx(expected) and c.b.method == "base [shift=30]"
    assert c.a.summary.mean == pytest.approx((50 / 60 + 50 / 70) / 2)  # the table's runs, not the sweep's
    assert cli.main(["compare", "base", "base", "--profile", "tiny", "--metric", "mIoU", "--set-b", "shift=30"]) == 0
    assert f"{expected * 100:+.2f}" in capsys.readouterr().out
    assert cli.main(["compare", "base", "base", "--profile", "tiny", "--set-a", "shfit=3"]) == 2  # a typo is an error


def test_a_method_on_augmented_speech_is_paired_with_the_weights_it_scored(home, tmp_path, capsys):
    """``sil@all-high``: the robustness runs of that augmentation; against ``sil`` its clean side is each robustness
    run's source run, even when a newer training run of the seed exists. Source: all 4 queries hit; the newer
    retraining: none; on augmented speech: 2 of 4. So A - B = 0.5 - 1 = -0.5, not 0.5 - 0."""

    def log(name: str, spans: list[list[float]], **params: str) -> str:
        base = {"method": "sil", "dataset": "synth", "profile": "small", "seed": 0, "overrides": "-", **params}
        with tracking.start_run(name, base) as run_log:
            path = tmp_path / name / "test_predictions.jsonl"
            path.parent.mkdir(parents=True)
            path.write_text("".join(json.dumps({"qid": f"v{i}#0", "duration": 100.0, "gt": [0.0, 50.0],
                                                "pred": [span]}) + "\n" for i, span in enumerate(spans)))  # fmt: skip
            run_log.log_metrics(evaluate.evaluate_file(path), prefix="test/")
            run_log.log_artifact(path, "predictions")
            return run_log.run_id

    source = log("source", [HIT] * 4)
    robustness = {"measure": "robustness", "augment.kind": "all", "augment.level": "high", "source_run": source}
    augmented = log("augmented", [HIT, HIT, MISS, MISS], **robustness)
    newer = log("retrained", [MISS] * 4)
    c = compare.compare("sil@all-high", "sil", split="val_2", resamples=500)
    assert [r.run_id for r in c.a.runs] == [augmented] and [r.run_id for r in c.b.runs] == [source]
    assert (c.a.summary.mean, c.b.summary.mean, c.difference.mean) == (0.5, 1.0, -0.5)
    assert [r.run_id for r in compare.newest_runs(tracking.finished_runs(), "sil").values()] == [newer]
    assert compare.split_side("sil-no-rob@noise-low") == ("sil-no-rob", ("noise", "low"))
    assert cli.main(["compare", "sil@all-hi", "sil"]) == 2 and "KIND-LEVEL" in capsys.readouterr().err
    assert cli.main(["compare", "sil@noise-low", "sil"]) == 2
    assert "`bench robustness --method sil --kinds noise --levels low` makes them" in capsys.readouterr().err
