"""VSLNet: span decoding, label derivation and the loss on hand-made cases; padding independence; tiny runs of
``vslnet`` (log-mel) and ``vslnet-text`` (gold text) through ``bench run``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from bench import cli, evaluate, tracking
from bench.data import grounding
from methods import registry, vslnet
from methods.parts.spans import nms_depth, rank_spans

# -- decoding ----------------------------------------------------------------------------------------------------


def test_spans_are_ranked_by_p_on_the_upper_triangle_in_seconds():
    # softmax of log-probabilities gives them back: P(start) = (.5, .3, .2), P(end) = (.1, .6, .3)
    start = torch.tensor([[0.5, 0.3, 0.2]]).log()
    end = torch.tensor([[0.1, 0.6, 0.3]]).log()
    spans, scores = rank_spans(start, end, torch.tensor([30.0]))  # 10 s per clip
    # (0,1) .30, (1,1) .18, (0,2) .15, (1,2) .09, (2,2) .06, (0,0) .05; (2,1) = .12 is below the diagonal: no span
    assert spans[0].tolist() == [[0, 20], [10, 20], [0, 30], [10, 30], [20, 30], [0, 10]]
    torch.testing.assert_close(scores[0], torch.tensor([0.30, 0.18, 0.15, 0.09, 0.06, 0.05]))


def test_equal_probabilities_keep_row_major_order():
    spans, scores = rank_spans(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([8.0]))
    assert spans[0].tolist() == [[0, 4], [0, 8], [4, 8]] and scores[0].tolist() == [0.25, 0.25, 0.25]


def test_nms_depth_is_where_the_evaluator_keeps_its_fifth_span():
    ranked = torch.tensor(
        [[[0, 10], [0, 9], [20, 30], [21, 30], [40, 50], [60, 70], [61, 70], [80, 90], [90, 100]]], dtype=torch.float
    )  # kept: ranks 1, 3, 5, 6, 8 (ranks 2, 4, 7 overlap a kept span by IoU > 0.45)
    assert nms_depth(ranked).tolist() == [8]
    assert nms_depth(ranked[:, :4]).tolist() == [4]  # fewer than five survive: the whole list


# -- labels -------------------------------------------------------------------------------------------------------


def test_span_labels_take_the_grid_span_of_best_iou():
    duration = torch.tensor([10.0, 10.0, 10.0, 10.0])
    span = torch.tensor([[2.5, 6.0], [0.0, 10.0], [3.0, 5.0], [0.2, 1.0]])
    s, e = vslnet.span_labels(span, duration, 5)  # clips of 2 s
    # [2.5, 6]: [2, 6] has IoU 3.5/4; [3, 5] straddles two clips: [2, 6] (0.5) beats [2, 4] and [4, 6] (1/3 each)
    assert s.tolist() == [1, 0, 1, 0] and e.tolist() == [2, 4, 2, 0]


def test_highlight_labels_extend_by_a_tenth_rounded_half_to_even_and_clip():
    n = 30
    start = torch.tensor([2, 0, 3, 5, 1, 20])
    end = torch.tensor([6, 14, 27, 5, 8, 29])
    labels = vslnet.highlight_labels(start, end, n)
    # lengths 5, 15, 25, 1, 8, 10 -> k = round(0.5) = 0, round(1.5) = 2, round(2.5) = 2, 0, round(0.8) = 1, 1
    expected = [(2, 6), (0, 16), (1, 29), (5, 5), (0, 9), (19, 29)]
    for row, (lo, hi) in zip(labels.tolist(), expected, strict=True):
        assert row == [1.0 if lo <= t <= hi else 0.0 for t in range(n)]


def test_grid_spans_are_i_d_over_n_to_j_plus_one_d_over_n():
    grid = vslnet.grid_spans(torch.tensor([12.0]), 4)
    assert grid[0, 1, 2].tolist() == [3.0, 9.0] and grid[0, 3, 3].tolist() == [9.0, 12.0]


# -- the loss -----------------------------------------------------------------------------------------------------


def test_highlight_loss_weights_the_foreground_twice_and_averages_over_real_clips():
    logits = torch.tensor([[0.0, math.log(3.0), 5.0]])  # sigmoid: 0.5, 0.75, (masked)
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    mask = torch.tensor([[True, True, False]])
    expected = (2 * math.log(2) + math.log(4)) / 2  # 2 * -log .5 (foreground), 1 * -log(1 - .75)
    assert vslnet.highlight_loss(logits, labels, mask).item() == pytest.approx(expected, rel=1e-6)


class FixedOutput(nn.Module):
    """A stand-in network that returns given logits, to check :func:`vslnet.vslnet_loss` by hand."""

    def __init__(self, out: vslnet.VSLNetOutput) -> None:
        super().__init__()
        self.out, self.c = out, vslnet.vslnet_config("tiny")

    def forward(self, batch):
        return self.out


def test_loss_is_two_cross_entropies_plus_five_times_the_highlight_loss():
    # 2 clips of a 10 s video, moment [0, 5]: labels s = e = 0, highlight [1, 0] (k = round(0.1) = 0)
    out = vslnet.VSLNetOutput(
        start=torch.tensor([[0.0, 0.0]]),  # CE = log 2
        end=torch.tensor([[math.log(3.0), 0.0]]),  # softmax (.75, .25): CE = -log .75
        highlight=torch.tensor([[0.0, 0.0]]),  # BCE log 2 per clip, weights 2 and 1: 3 log 2 / 2
        mask=torch.ones(1, 2, dtype=torch.bool),
    )
    batch = {"span": torch.tensor([[0.0, 5.0]]), "duration": torch.tensor([10.0])}
    loss, scalars = vslnet.vslnet_loss(FixedOutput(out), batch)
    ce, qgh = math.log(2) - math.log(0.75), 1.5 * math.log(2)
    assert scalars["ce"] == pytest.approx(ce, rel=1e-6) and scalars["qgh"] == pytest.approx(qgh, rel=1e-6)
    assert loss.item() == pytest.approx(ce + 5.0 * qgh, rel=1e-6)


# -- the network --------------------------------------------------------------------------------------------------


def test_char_table_rows_follow_the_vocabulary():
    table, n_chars = vslnet.char_table(["ab", "b"], width=4)
    assert n_chars == 2 and table.tolist() == [[0, 0, 0, 0], [1, 2, 0, 0], [2, 0, 0, 0]]


def test_words_without_a_vector_get_the_trainable_unk_vector():
    vectors = torch.tensor([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]])  # row 2 ("cat") has no vector
    emb = vslnet.TextEmbedding(vectors, ["a", "cat"], vslnet.vslnet_config("tiny", query="gold-text", char=False))
    emb.eval()
    seen = []
    emb.project.register_forward_hook(lambda m, inputs, output: seen.append(inputs[0]))
    emb(torch.tensor([[1, 2, 0]]), torch.tensor([2]))
    assert seen[0][0, 0].tolist() == [1.0, 2.0]
    assert torch.equal(seen[0][0, 1], emb.unk[0]) and seen[0][0, 2].tolist() == [0.0, 0.0]  # padding stays zero


@pytest.mark.parametrize("query", ["speech", "gold-text"])
def test_a_query_scores_the_same_alone_and_beside_a_longer_one(query):
    torch.manual_seed(0)
    vocab = ["a", "big", "cat", "runs"]
    c = vslnet.vslnet_config("tiny", query=query)
    model = vslnet.VSLNet(c, video_dim=6, word_vectors=torch.randn(5, 3), vocab=vocab).eval()
    video = torch.randn(2, 64, 6)
    mel = torch.randn(2, 23, 80)
    mel[0, 9:] = 0.0  # the batch pads the shorter utterance with zeros
    batch = {"video": video, "mel": mel, "mel_len": torch.tensor([9, 23]),
             "words": torch.tensor([[1, 3, 0, 0], [2, 4, 1, 3]]), "words_len": torch.tensor([2, 4])}  # fmt: skip
    alone = {"video": video[:1], "mel": mel[:1, :9], "mel_len": torch.tensor([9]),
             "words": torch.tensor([[1, 3]]), "words_len": torch.tensor([2])}  # fmt: skip
    with torch.no_grad():
        both, one = model(batch), model(alone)
    torch.testing.assert_close(both.start[:1], one.start, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(both.end[:1], one.end, rtol=1e-5, atol=1e-5)


def test_a_query_longer_than_the_position_table_is_a_clear_error():
    c = vslnet.vslnet_config("tiny", max_pos_len=64)
    model = vslnet.VSLNet(c, video_dim=6).eval()
    batch = {"video": torch.randn(1, 64, 6), "mel": torch.randn(1, 300, 80), "mel_len": torch.tensor([300])}
    with pytest.raises(ValueError, match="max_pos_len=75"):
        model(batch)


def test_registered_with_its_rows_and_full_supervision():
    speech, text = registry.get("vslnet"), registry.get("vslnet-text")
    assert speech.implemented and speech.query == "speech" and speech.supervision == "full"
    assert speech.rows == ("table1:vslnet", "table10:vslnet")
    assert text.query == "gold-text" and text.supervision == "full" and text.rows == ()
    assert text.config("small").query == "gold-text" and speech.config("paper").d == 128


# -- tiny runs through bench run ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vslnet", "vslnet-text"])
def test_tiny_bench_run_trains_logs_and_writes_predictions_that_rescore(tiny, name, capsys):
    home, data = tiny
    assert cli.main(["run", "--method", name, "--profile", "tiny", "--seeds", "0", "--device", "cpu"]) == 0
    assert "FINISHED" in capsys.readouterr().out
    runs = tracking.finished_runs({"method": name, "profile": "tiny"})
    assert len(runs) == 1
    (path,) = (Path(home) / "work" / name / "synth" / "tiny" / "seed0").glob("*/test_predictions.jsonl")
    rescored = evaluate.evaluate_file(path)
    for key in evaluate.METRIC_KEYS:
        logged = float(runs[f"metrics.test/{tracking.mlflow_key(key)}"].iloc[0])
        assert rescored[key] == pytest.approx(logged, abs=1e-9), key
    preds = evaluate.read_predictions(path)
    test = grounding.load(data, Path(home) / "cache").test
    assert len(preds.qids) == len(test)
    depth = preds.valid.sum(1)
    assert int(depth.min()) >= 100 and int(depth.max()) <= 64 * 65 // 2  # at least the 100 best of 2080 spans
    top = preds.pred[:, 0]  # every top-1 span lies on the 64-clip grid of its video
    grid = top / preds.duration[:, None] * 64
    torch.testing.assert_close(grid, grid.round(), rtol=0, atol=1e-3)
