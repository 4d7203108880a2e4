"""WSLLN, RTBPN and SCN on text queries: losses and scoring functions by hand, the ASR-transcript helper, and tiny
end-to-end runs whose predictions files rescore to the reported metrics."""

from __future__ import annotations

import math
import os
import sys
import types
from pathlib import Path

import pytest
import torch
from methodrun import run_method

from bench import evaluate
from bench.data import grounding, loader
from methods import registry, rtbpn, scn, wslln
from methods.parts import proposals, textquery

# -- the ASR-transcript helper ----------------------------------------------------------------------------------


def _toy_data() -> grounding.GroundingData:
    """Three queries over a 3-word vocabulary: a -> row 1, cat -> 2, dog -> 3."""
    queries = loader.PaddedSplit.from_items(
        ["q0", "q1", "q2"],
        [
            {"words": torch.tensor([1, 2]), "video_idx": torch.tensor(0), "span": torch.tensor([0.0, 1.0])},
            {"words": torch.tensor([3]), "video_idx": torch.tensor(0), "span": torch.tensor([1.0, 2.0])},
            {"words": torch.tensor([1, 3, 2]), "video_idx": torch.tensor(0), "span": torch.tensor([0.0, 2.0])},
        ],
        ragged=("words",),
    )
    split = grounding.GroundingSplit("x", queries, torch.zeros(1, 4, 2))
    vectors = torch.arange(8.0).reshape(4, 2)
    return grounding.GroundingData("toy", "h", 4, split, split, split, ["a", "cat", "dog"], vectors)


def test_transcripts_replace_the_words_with_oov_row_0_and_empty_as_one_pad_step():
    data = _toy_data()
    text = {"q0": "A cat!", "q1": "the dog", "q2": ""}  # "the" is outside the vocabulary
    new, stats = textquery.with_transcripts(data, {"train": text, "val": text, "test": text})
    q = new.test.queries
    assert q["words"].tolist() == [[1, 2], [0, 3], [0, 0]] and q["words_len"].tolist() == [2, 2, 1]
    assert torch.equal(q["span"], data.test.queries["span"]) and new.test.videos is data.test.videos
    assert data.test.queries["words"].tolist() == [[1, 2, 0], [3, 0, 0], [1, 3, 2]]  # the shared data is untouched
    assert stats["test"] == textquery.OovStats(tokens=4, oov=1, empty=1) and stats["test"].rate == 0.25
    params = textquery.oov_params(stats)
    assert params["asr_oov_rate"] == 0.25 and params["asr_oov_rate_val"] == 0.25
    assert params["asr_empty_transcripts"] == 3
    batch = next(new.test.batches(3))  # the rebuilt split batches like a loaded one
    assert batch["words"].shape == (3, 2)
    with pytest.raises(KeyError, match="no ASR transcript"):
        textquery.with_transcripts(data, {"train": {"q0": "a"}, "val": text, "test": text})


# -- WSLLN -----------------------------------------------------------------------------------------------------


def test_wslln_sentence_feature_is_the_bigru_final_state():
    s = torch.arange(2 * 3 * 4.0).reshape(2, 3, 4)  # d = 4: forward half = features 0..1, backward = 2..3
    mask = torch.tensor([[True, True, False], [True, True, True]])
    got = wslln.sentence_feature(s, mask)
    assert got.tolist() == [[4.0, 5.0, 2.0, 3.0], [20.0, 21.0, 14.0, 15.0]]  # forward at the last word, backward at 0


def test_wslln_merged_score_and_matching_loss_by_hand():
    # zero last layers: s^a = softmax([0, ln 3])[1] = 3/4, s^d = 1/153 per candidate, so S = 3/4
    c = wslln.wslln_config("tiny")
    net = wslln.WSLLNNet(c, 5, torch.randn(4, 3))
    with torch.no_grad():
        for head in (net.align[-1], net.detect[-1]):
            head.weight.zero_()
            head.bias.zero_()
        net.align[-1].bias[1] = math.log(3)
    batch = {"video": torch.randn(2, 64, 5), "words": torch.tensor([[1, 2], [3, 0]]), "words_len": torch.tensor([2, 1])}
    p = torch.sigmoid(net(batch))  # forward returns logit(p): the evaluator's sigmoid gives p back
    torch.testing.assert_close(p, torch.full((2, 153), 0.75 / 153))
    assert p.sum(-1).tolist() == pytest.approx([0.75, 0.75])
    # BCE: (-ln .8 - ln(1 - .2) - ln .5 + [dropped: same-video partner]) / 2
    got = wslln.matching_loss(torch.tensor([0.8, 0.5]), torch.tensor([0.2, 0.9]), torch.tensor([True, False]))
    assert got.item() == pytest.approx((-2 * math.log(0.8) - math.log(0.5)) / 2)


# -- RTBPN -----------------------------------------------------------------------------------------------------


def test_rtbpn_minmax_filter_weights():
    w = rtbpn.minmax(torch.tensor([[1.0, 3.0, 2.0]]))
    assert w[0].tolist() == pytest.approx([1e-10 / (2 + 1e-10), 1.0, 0.5])


def test_rtbpn_language_filter_is_in_0_1_and_does_not_train_the_encoders():
    torch.manual_seed(0)
    f = rtbpn.LanguageFilter(8, 4)
    v, s = torch.randn(2, 6, 8, requires_grad=True), torch.randn(2, 3, 8, requires_grad=True)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    w = f(v, s, mask)
    assert w.min(1).values.tolist() == pytest.approx([0.0, 0.0], abs=1e-6) and w.max(1).values.tolist() == [1.0, 1.0]
    w.sum().backward()
    assert v.grad is None and s.grad is None and f.gate1.weight.grad is not None  # inputs detached (the code)
    # NetVLAD ignores padding words: changing them changes nothing
    s2 = s.detach().clone()
    s2[1, 1:] = 100.0
    torch.testing.assert_close(f.vlad(s.detach(), mask), f.vlad(s2, mask))


def test_rtbpn_centre_score_takes_the_top_k_by_iou_with_the_best_and_breaks_ties_by_score():
    spans = torch.tensor([[2.0, 6.0], [0.0, 4.0], [4.0, 8.0], [8.0, 12.0]])
    iou = evaluate.temporal_iou(spans[:, None], spans[None])  # IoU with [2, 6]: 1, 1/3, 1/3, 0
    p = torch.tensor([[0.9, 0.3, 0.6, 0.2], [0.1, 0.2, 0.3, 0.8]])
    k, top = rtbpn.centre_score(p, iou, 2)
    # row 0: c* = [2, 6]; [0, 4] and [4, 8] tie at 1/3, the higher score (0.6) goes in: K = (0.9 + 0.6) / 2
    # row 1: c* = [8, 12], IoU 0 with every other span (touching is no overlap): the tie goes to the best other, 0.3
    assert k.tolist() == pytest.approx([0.75, 0.55])
    torch.testing.assert_close(top, torch.tensor([[0.9, 0.6], [0.8, 0.3]]))
    assert rtbpn.RTBPNNet(rtbpn.rtbpn_config("tiny"), 5, torch.randn(3, 2)).cand_iou.shape == (153, 153)


def test_rtbpn_losses_and_regularisers_by_hand():
    # L_inter: (-ln .8 - ln(1 - .2)) for the kept pair, 0 for the dropped one, over B = 2
    got = rtbpn.inter_loss(torch.tensor([0.8, 0.6]), torch.tensor([0.2, 0.5]), torch.tensor([True, False]))
    assert got.item() == pytest.approx(-2 * math.log(0.8) / 2, rel=1e-6)
    # L_intra: max(0, .2 - .8 + .7) = .1 and max(0, .2 - .5 + .2) = 0 -> mean .05
    assert rtbpn.intra_loss(torch.tensor([0.8, 0.5]), torch.tensor([0.7, 0.2])).item() == pytest.approx(0.05)
    # reg1: mean(p_hat) = .5; top = [ln 3, 0] -> softmax [3/4, 1/4], gap = -ln(3/4)
    reg1 = rtbpn.proposal_reg(torch.tensor([[1.0, 0.0, 0.5]]), torch.tensor([[math.log(3), 0.0]]))
    assert reg1.item() == pytest.approx(0.5 - math.log(0.75))
    # reg2: w = [0, 1]: mean .5, q = softmax(w) = [1, e] / (1 + e): .5 - (q0 ln q0 + q1 ln q1) / 2
    q = torch.tensor([1.0, math.e]) / (1 + math.e)
    assert rtbpn.filter_reg(torch.tensor([[0.0, 1.0]])).item() == pytest.approx(0.5 - (q * q.log()).sum().item() / 2)


def test_rtbpn_total_loss_is_the_weighted_sum_of_its_terms():
    torch.manual_seed(0)
    c = rtbpn.rtbpn_config("tiny")
    net = rtbpn.RTBPNNet(c, 5, torch.randn(6, 4))
    batch = {"video": torch.randn(4, 64, 5), "words": torch.randint(1, 6, (4, 3)),
             "words_len": torch.tensor([3, 2, 1, 3]), "video_idx": torch.tensor([0, 1, 2, 3])}  # fmt: skip
    loss, s = rtbpn.rtbpn_loss(net, batch)
    assert loss.item() == pytest.approx(s["inter"] + 0.1 * s["reg1"] + 0.1 * s["intra"] + 0.01 * s["reg2"], rel=1e-5)
    assert (c.top_k, c.margin, c.w_reg1, c.w_intra, c.w_reg2) == (32, 0.2, 0.1, 0.1, 0.01)  # ActivityNet config
    torch.manual_seed(0)
    net = rtbpn.RTBPNNet(registry.get("rtbpn-text+avcl").config("tiny"), 5, torch.randn(6, 4))
    loss, s = rtbpn.rtbpn_loss(net, batch)  # Table 6: + lambda3 L_AVCL, lambda3 = 0.1 (SIL eq. 8)
    base_terms = s["inter"] + 0.1 * s["reg1"] + 0.1 * s["intra"] + 0.01 * s["reg2"]
    assert s["avcl"] != 0 and loss.item() == pytest.approx(base_terms + 0.1 * s["avcl"], rel=1e-5)


# -- SCN -------------------------------------------------------------------------------------------------------


def test_scn_anchors_end_at_every_clip_with_eight_widths():
    spans, index = scn.anchors(200, 8)
    assert len(spans) == 708  # baselines.md §4: 708 of 1600 valid
    spans, index = scn.anchors(64, 8)  # widths 8, 16, ..., 64: 57 + 49 + ... + 1
    assert len(spans) == 232 and spans[0].tolist() == [0, 8] and spans[-1].tolist() == [0, 64]
    assert index[0].item() == 7 * 8 + 0  # t = 7 (end 8), k = 1: position t * 8 + (k - 1)


def test_scn_selection_filters_by_iou_only_while_more_than_two_survive():
    iou = torch.eye(5)
    iou[0, 1] = iou[1, 0] = 0.8
    iou[2, 3] = iou[3, 2] = 0.7
    scores = torch.tensor([[0.9, 0.85, 0.5, 0.4, 0.3], [0.1, 0.2, 0.3, 0.4, 0.9]])
    picks = scn.select_proposals(scores, iou, 3, 0.65)
    # row 0: 0; survivors {2, 3, 4} (3 > 2) -> 2; then only {4} would survive, so the filter is skipped -> 2 again
    # row 1: 4; survivors {0, 1, 2, 3} -> 3; survivors {0, 1} (2, not > 2): filter skipped -> 3 again
    assert picks.tolist() == [[0, 2, 2], [4, 3, 3]]
    torch.manual_seed(0)
    random = scn.select_proposals(scores[:1].expand(4000, 5), iou, 1, 0.65, random_p=1.0)
    assert random[:, 0].bincount(minlength=5).div(4000).tolist() == pytest.approx([0.2] * 5, abs=0.03)


def test_scn_proposal_frames_follow_the_codes_linspace():
    frames = torch.arange(10.0)[None, :, None]  # frame t has feature t
    got = scn.proposal_frames(frames, torch.tensor([[[3, 8], [0, 1]]]), 4)
    # width 5: linspace(0, 4, 4) = [0, 1.33, 2.67, 4] -> [0, 1, 2, 4] + 3; width 1: the start four times
    assert got[..., 0].tolist() == [[3.0, 4.0, 5.0, 7.0], [0.0, 0.0, 0.0, 0.0]]


def test_scn_masks_a_third_of_the_words_weighted_to_content_words():
    logits = torch.tensor([[2.0, 1.0, 2.0, 1.0, 2.0, 1.0], [2.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    got = scn.choose_masked(logits, torch.tensor([6, 2]), 3, gumbel=torch.zeros(2, 6))
    assert got.tolist() == [[True, False, True, False, False, False], [False] * 6]  # floor(6/3) = 2, floor(2/3) = 0
    torch.manual_seed(0)
    many = scn.choose_masked(torch.tensor([[2.0, 1.0, 1.0]]).expand(20000, 3), torch.full((20000,), 3), 3)
    # one of three: P(first) = e^2 / (e^2 + 2 e) = e / (e + 2)
    assert many[:, 0].float().mean().item() == pytest.approx(math.e / (math.e + 2), abs=0.015)
    assert (many.sum(1) == 1).all()
    vocab = ["a", "man", "washes", "the", "car", "then"]
    net = scn.SCNNet(scn.scn_config("tiny"), 5, torch.randn(7, 3), vocab, torch.tensor([[1, 2]]), torch.tensor([2]))
    assert net.word_logit.tolist() == [1.0, 1.0, 2.0, 2.0, 1.0, 2.0, 2.0]  # pad/OOV, a, man, washes, the, car, then


def test_scn_reconstruction_rewards_and_proposal_loss_by_hand():
    # C = 2, p = [1/4, 3/4], target 1: 0.9 ln(4/3) + 0.1 / 2 (ln 4 + ln(4/3)); the second word is padding
    logits = torch.tensor([[[0.0, math.log(3)], [5.0, 0.0]]])
    got = scn.smoothed_nll(logits, torch.tensor([[1, 0]]), torch.tensor([[True, False]]), 0.1)
    assert got.item() == pytest.approx(0.9 * math.log(4 / 3) + 0.05 * (math.log(4) + math.log(4 / 3)))
    nll = torch.tensor([[2.0, 0.5, 1.0]])
    assert scn.rank_rewards(nll, (0.0, 0.5, 1.0)).tolist() == [[0.0, 1.0, 0.5]]  # lowest NLL -> 1
    chosen = torch.tensor([[0.9, 0.5, 0.1]])
    log_softmax = chosen - torch.logsumexp(chosen, -1, keepdim=True)
    expected = -(1.0 * log_softmax[0, 1] + 0.5 * log_softmax[0, 2]).item() / 3
    assert scn.proposal_loss(chosen, nll, (0.0, 0.5, 1.0)).item() == pytest.approx(expected)
    words, length = torch.tensor([[3, 1, 3, 0], [2, 3, 0, 0]]), torch.tensor([3, 2])
    # counts: row 3 three times, rows 1 and 2 once; the top 2 are rows 3 and 1 (ties by row): classes 1, 2
    assert scn.target_vocabulary(words, length, 5, 2).tolist() == [0, 2, 0, 1, 0]


# -- tiny end-to-end runs (the module fixture and runner of tests/test_base.py) --------------------------------


def _run(name: str, data, workdir: Path, seed: int = 0, profile: str = "tiny", **overrides):
    """One method run outside the CLI, with its own workdir; returns the result and the tracked run's id."""
    return run_method(name, data, workdir, workdir.parent / "cache", seed, profile, **overrides)


@pytest.mark.parametrize(
    ("name", "n_ranked"), [("wslln-text", 153), ("rtbpn-text", 153), ("rtbpn-text+avcl", 153), ("scn-text", 232)]
)
def test_tiny_run_trains_selects_on_val_and_scores_its_predictions_file(tiny, tmp_path, name, n_ranked):
    _, data = tiny
    result, _ = _run(name, data, tmp_path / "work")
    assert set(evaluate.METRIC_KEYS) <= set(result.test) and set(evaluate.METRIC_KEYS) <= set(result.val_best)
    assert result.selected_epoch in (1, 2) and result.dataset_hash == data.content_hash
    rescored = evaluate.evaluate_file(result.predictions)
    for key in evaluate.METRIC_KEYS:
        assert rescored[key] == pytest.approx(result.test[key], abs=1e-9)
    preds = evaluate.read_predictions(result.predictions)
    assert preds.pred.shape[1] == n_ranked  # every candidate (anchor for SCN), ranked


def test_asr_run_grounds_the_transcripts_and_logs_the_oov_rate(tiny, tmp_path, monkeypatch):
    """asr-wslln with a stand-in ASR stage whose transcripts are the gold words with every third word garbled."""
    _, data = tiny
    g = grounding.load(data, Path(os.environ["WSVG_HOME"]) / "cache")
    seen: dict[str, object] = {}

    def transcripts(ctx, asr_cfg):
        seen["cfg"] = asr_cfg
        out = {}
        for name in g.split_names:
            q = g.split(name).queries
            out[name] = {
                qid: " ".join("zzz" if i % 3 == 2 else g.vocab[r - 1] for i, r in enumerate(row[:n].tolist()))
                for qid, row, n in zip(q.ids, q["words"], q["words_len"].tolist(), strict=True)
            }
        return out

    fake = types.SimpleNamespace(asr_config=lambda profile: "asr-tiny", transcripts=transcripts)
    import methods

    monkeypatch.setitem(sys.modules, "methods.asr", fake)
    monkeypatch.setattr(methods, "asr", fake, raising=False)
    result, run_id = _run("asr-wslln", data, tmp_path / "work")
    assert seen["cfg"] == "asr-tiny" and evaluate.evaluate_file(result.predictions)["R1@0.5"] == result.test["R1@0.5"]
    import mlflow

    params = mlflow.get_run(run_id).data.params
    total = sum(int(n) for s in g.split_names for n in g.split(s).queries["words_len"].tolist())
    garbled = sum(n // 3 for s in g.split_names for n in g.split(s).queries["words_len"].tolist())
    assert float(params["asr_oov_rate"]) == pytest.approx(garbled / total, abs=1e-6)


def test_registered_names_rows_and_stages():
    for name, rows in {
        "wslln-text": ("table9:wslln-text",),
        "rtbpn-text": ("table6:rtbpn-text", "table9:rtbpn-text"),  # in table order
        "scn-text": ("table9:scn-text",),
        "rtbpn-text+avcl": ("table6:rtbpn-text+avcl",),
    }.items():
        spec = registry.get(name)
        assert (spec.rows, spec.query, spec.supervision, spec.stages) == (rows, "gold-text", "weak", ("ground",))
        if name.endswith("+avcl"):
            assert registry.get(name).config("paper").avcl and not registry.get("rtbpn-text").config("paper").avcl
            continue
        asr = registry.get("asr-" + name.removesuffix("-text"))
        assert asr.query == "asr-text" and asr.stages == ("asr", "ground") and asr.rows[0].startswith("table1:")
    assert proposals.candidates(64).shape == (153, 2)


def test_scn_completes_every_sentence_with_its_end_class():
    from methods import scn

    classes = torch.tensor([[4, 5, 0], [4, 5, 6]])  # classes of the words; the first sentence has 2 words
    got = scn.completion_targets(classes, torch.tensor([2, 3]), end=9)
    assert got.tolist() == [[4, 5, 9, 0], [4, 5, 6, 9]]
