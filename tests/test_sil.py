"""SIL: CIF against the research notes' vectors, each loss on a case worked by hand, AVCL's sampling, the stage
cache, and tiny end-to-end runs of SIL and an ablation."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from methodrun import run_method
from torch import nn

from bench import config, evaluate, stages, tracking
from methods import registry, sil
from methods.parts import avcl, cif, proposals

ONE_HOT = torch.eye(6)[None]  # frame t = e_t, so each segment shows the weight each frame gave it
ALL = torch.ones(1, 6, dtype=torch.bool)


# -- CIF (baselines.md §8, dyadic weights) ------------------------------------------------------------------------


def _fire(alpha, tail=0.5):
    out, mask = cif.cif(ONE_HOT, torch.tensor([alpha]), ALL, tail=tail)
    return out[0][mask[0]]


def test_cif_vector_a_without_tail_drops_the_leftover():
    out = _fire([0.25, 0.5, 0.5, 0.75, 0.25, 0.5], tail=None)
    assert out.tolist() == [[0.25, 0.5, 0.25, 0, 0, 0], [0, 0, 0.25, 0.75, 0, 0]]


def test_cif_vector_a_with_tail_fires_the_normalised_leftover():
    out = _fire([0.25, 0.5, 0.5, 0.75, 0.25, 0.5])
    assert out[:2].tolist() == [[0.25, 0.5, 0.25, 0, 0, 0], [0, 0, 0.25, 0.75, 0, 0]]
    assert out[2].tolist() == pytest.approx([0, 0, 0, 0, 1 / 3, 2 / 3])


def test_cif_a_double_prime_leftover_below_half_is_dropped():
    assert len(_fire([0.25, 0.5, 0.5, 0.75, 0.25, 0.125])) == 2


def test_cif_vector_b_scaled_to_the_target_length():
    scaled = cif.scale_weights(torch.tensor([[0.5, 0.75, 0.75, 1.0, 0.5, 0.5]]), torch.tensor([2]))
    assert scaled[0].tolist() == [0.25, 0.375, 0.375, 0.5, 0.25, 0.25]
    out, mask = cif.cif(ONE_HOT, scaled, ALL)
    assert out[0][mask[0]].tolist() == [[0.25, 0.375, 0.375, 0, 0, 0], [0, 0, 0, 0.5, 0.25, 0.25]]


def test_cif_vector_c_float_hazard_still_gives_the_target_count():
    scaled = cif.scale_weights(torch.tensor([[0.3, 0.5, 0.4, 0.9, 0.2, 0.6]]), torch.tensor([3]))
    out, mask = cif.cif(ONE_HOT, scaled, ALL)
    assert int(mask.sum()) == 3
    assert out[0][mask[0]].sum(1).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)  # each segment weighs 1


def test_cif_batches_rows_of_different_lengths_and_passes_gradients_to_the_weights():
    h = torch.eye(6).repeat(2, 1, 1)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    alpha = torch.tensor([[0.5] * 6, [0.5, 0.5, 0.5, 0.25, 0.9, 0.9]], requires_grad=True)
    out, out_mask = cif.cif(h, alpha, mask)
    assert out_mask.tolist() == [[True, True, True], [True, True, False]]  # row 2: 1 + leftover 0.75 -> tail fires
    assert out[1, 1].tolist() == pytest.approx([0, 0, 2 / 3, 1 / 3, 0, 0])  # padding frames never enter
    out.sum().backward()
    assert alpha.grad is not None and alpha.grad[1, 4:].abs().sum() == 0


def test_quantity_is_the_mean_absolute_length_error_of_the_unscaled_weights():
    alpha = torch.tensor([[0.5, 0.5, 0.75], [0.25, 0.25, 0.0]])
    assert float(cif.quantity(alpha, torch.tensor([2, 1]))) == pytest.approx((0.25 + 0.5) / 2)


# -- padding invariance (issue 21, item 6) -------------------------------------------------------------------------


def _speech(n_wave: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"wave": torch.randn(n_wave, generator=g), "mel": torch.randn(n_wave // 80, 80, generator=g)}


def _batch(*items):
    from bench.data import loader

    ids = [str(i) for i in range(len(items))]
    return loader.PaddedSplit.from_items(ids, list(items), ragged=("wave", "mel")).tensors


def test_cif_weights_of_a_sequence_do_not_read_the_batchs_padding():
    torch.manual_seed(0)
    predictor = cif.WeightPredictor(8).eval()
    h = torch.randn(1, 5, 8)
    padded = torch.cat([h, torch.randn(1, 4, 8) * 10], 1)  # four padded frames holding large garbage
    alone = predictor(h, torch.ones(1, 5, dtype=torch.bool))
    mask = torch.tensor([[True] * 5 + [False] * 4])
    assert torch.allclose(predictor(padded, mask)[0, :5], alone[0], atol=1e-6)
    assert predictor(padded, mask)[0, 5:].abs().sum() == 0


def test_masked_group_norm_is_group_norm_on_the_real_steps():
    torch.manual_seed(0)
    norm = nn.GroupNorm(3, 3)
    nn.init.normal_(norm.weight), nn.init.normal_(norm.bias)
    x = torch.randn(2, 3, 7)
    everything = torch.ones(2, 7, dtype=torch.bool)
    assert torch.allclose(sil.masked_group_norm(x, everything, norm), norm(x), atol=1e-5)
    steps = torch.tensor([[True] * 4 + [False] * 3, [True] * 7])
    out = sil.masked_group_norm(x, steps, norm)
    assert torch.allclose(out[0, :, :4], norm(x[:1, :, :4])[0], atol=1e-5) and out[0, :, 4:].abs().sum() == 0


@pytest.mark.parametrize("name", ["sil", "base+lsem"])
def test_an_utterances_frozen_features_do_not_change_with_the_batch_it_is_encoded_in(name):
    """Both domains, CIF and the shared layers: an utterance alone, then beside a longer and a shorter one."""
    torch.manual_seed(0)
    encoder = sil.ASPEncoder(registry.get(name).config("tiny").asp).eval()
    a = _speech(8000, 1)
    alone, n = encoder.features(_batch(a))
    for batch in (_batch(a, _speech(20000, 2)), _batch(_speech(30000, 3), _speech(4000, 4), a)):
        row = len(batch["wave_len"]) - 1 if batch["wave_len"][-1] == 8000 else 0
        feats, lengths = encoder.features(batch)
        assert lengths[row] == n[0]
        assert torch.allclose(feats[row, : n[0]], alone[0, : n[0]], atol=1e-5)


# -- losses --------------------------------------------------------------------------------------------------------


def test_ctc_on_uniform_logits_is_log_vocab_per_target_word():
    logits = torch.zeros(1, 1, 3)  # one frame, blank + 2 words: the only path to [1] has probability 1/3
    loss = sil.ctc_loss(logits, torch.tensor([1]), torch.tensor([[1]]), torch.tensor([1]))
    assert float(loss) == pytest.approx(math.log(3))


def test_ctc_sums_over_the_words_of_an_utterance_as_eq_3_or_averages_them_as_the_code():
    logits = torch.zeros(1, 2, 3)  # two frames, two target words: the one path "1 2" has probability 1/9
    args = (torch.tensor([2]), torch.tensor([[1, 2]]), torch.tensor([2]))
    assert float(sil.ctc_loss(logits, *args)) == pytest.approx(2 * math.log(3))
    assert float(sil.ctc_loss(logits, *args, reduction="mean")) == pytest.approx(math.log(3))


def test_token_loss_sums_each_utterances_words_then_averages_utterances():
    per_token = torch.tensor([1.0, 2.0, 3.0])  # three words of two utterances
    assert float(sil.token_loss(per_token, 2)) == pytest.approx(6.0 / 2)  # eqs. 2 and 5
    assert float(sil.token_loss(per_token, 2, "mean")) == pytest.approx(2.0)  # the original code


def test_pretraining_reports_the_word_terms_per_word_whatever_the_reduction():
    torch.manual_seed(0)
    c = dataclasses.replace(sil.sil_config("tiny").asp, seq=False)
    words = torch.tensor([[1, 2, 3, 4], [2, 3, 0, 0]])
    batch = {**_batch(_speech(16000, 1), _speech(12000, 2)), "words": words, "words_len": torch.tensor([4, 2])}
    out = {}
    for reduction in ("sum", "mean"):
        torch.manual_seed(1)
        model = sil.ASPModel(dataclasses.replace(c, token_reduction=reduction), torch.randn(5, 6), torch.zeros(3, 6))
        out[reduction] = sil.asp_loss(model.eval(), batch)[1]
    for name in ("ctc", "conc_ce", "word"):  # the same weights (same seed) and the same per-word values ...
        assert out["sum"][f"{name}_per_word"] == pytest.approx(out["mean"][f"{name}_per_word"], rel=1e-5)
    assert out["mean"]["ctc"] == pytest.approx(out["mean"]["ctc_per_word"], rel=1e-5)
    assert out["sum"]["ctc"] > 2 * out["sum"]["ctc_per_word"]  # ... but eq. 3 adds 3 words per utterance on average


def test_info_nce_hand_value_and_own_transcript_left_out():
    s, w = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]])  # cosine 1 with the match
    negs = torch.tensor([[0.0, 3.0], [5.0, 0.0]])  # cosine 0, and the row's own transcript (cosine 1)
    loss = sil.info_nce(s, w, negs, torch.tensor([[True, False]]), temperature=1.0)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)))  # -log e / (e + e^0)


def test_js_mi_loss_hand_value():
    r = torch.full((1, 4), math.log(3.0))
    pos, neg = torch.tensor([[True, True, False, False]]), torch.tensor([[False, False, True, False]])
    # E_pos = log 2 - softplus(-ln 3) = ln 2 - ln(4/3) = ln 1.5; E_neg = softplus(-ln 3) + ln 3 - ln 2 = ln 2
    assert float(avcl.js_mi_loss(r, pos, neg)) == pytest.approx(math.log(2) - math.log(1.5))
    assert float(avcl.js_mi_loss(torch.zeros(1, 4), pos, neg)) == pytest.approx(0.0, abs=1e-7)
    assert float(avcl.js_mi_loss(r, pos, torch.zeros_like(neg))) == 0.0  # no negatives: the row does not count


def test_rob_loss_is_the_mean_l1_over_the_segments_both_domains_have():
    s_t = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])  # its third segment has no partner: not counted
    s_f = torch.tensor([[[0.0, 2.0], [3.0, 0.0]]])
    mask_t, mask_f = torch.tensor([[True, True, True]]), torch.tensor([[True, True]])
    assert float(sil.rob_loss(s_t, mask_t, s_f, mask_f)) == pytest.approx((1 + 0 + 0 + 4) / 4)
    assert float(sil.rob_loss(s_t, mask_t, s_f, torch.tensor([[True, False]]))) == pytest.approx(1 / 2)


def test_mask_words_masks_half_of_each_row_and_never_padding():
    torch.manual_seed(0)
    m = sil.mask_words(torch.tensor([4, 1, 3]), 4, 0.5)
    assert m.sum(1).tolist() == [2, 1, 2]  # round(2), at least 1, round(1.5) = 2
    assert not m[1, 1:].any() and not m[2, 3]


def test_mask_words_masks_content_words_first_then_function_words():
    content = torch.tensor([[False, True, False, True, True, False], [True, False, False, False, False, False]])
    torch.manual_seed(0)
    for _ in range(50):
        m = sil.mask_words(torch.tensor([6, 4]), 6, 0.5, content, "content-first")
        assert m[0].tolist() == [False, True, False, True, True, False]  # three content words: exactly those
        assert m[1, 0] and m[1].sum() == 2 and not m[1, 4:].any()  # one content word, then one function word


def test_weighted_masking_draws_content_words_with_the_codes_part_of_speech_odds():
    content = torch.tensor([[True, False]]).expand(4000, 2)
    torch.manual_seed(0)
    m = sil.mask_words(torch.full((4000,), 2), 2, 0.5, content, "weighted")
    assert (m.sum(1) == 1).all()
    assert float(m[:, 0].float().mean()) == pytest.approx(math.e / (math.e + 1), abs=0.025)  # e^2 / (e^2 + e^1)


def test_content_words_of_the_synthetic_world():
    from bench.data import world

    vocab = world.vocabulary()
    content = dict(zip(vocab, sil.content_rows(vocab)[1:].tolist(), strict=True))
    verbs = {f for forms in world.VERBS.values() for syn in forms for f in syn} | {
        f for forms in world.EXTRA_VERBS.values() for f in forms}  # fmt: skip
    objects = {o for names in world.OBJECTS.values() for o in names} | set(world.EXTRA_OBJECTS)
    assert all(content[w] for w in verbs | objects)
    function = set(world.DETERMINERS) | {"he", "she", "it", "in", "on", "with", "and", "while", "to", "as"}
    assert not any(content[w] for w in function)
    assert sil.content_rows(["car"])[0].item() is False  # row 0 is padding


def test_pretraining_leaves_out_utterances_without_a_word_and_longer_than_max_words():
    words = torch.tensor([[3, 4, 5], [0, 0, 0], [7, 0, 0], [1, 2, 0]])
    n_w = torch.tensor([3, 1, 1, 2])  # row 1: no word with a vector (target 0, the blank)
    rows, dropped = sil.usable_rows(words, n_w, None)
    assert rows.tolist() == [0, 2, 3] and dropped == {"dropped_no_vocab_word": 1, "dropped_over_max_words": 0}
    rows, dropped = sil.usable_rows(words, n_w, 2)
    assert rows.tolist() == [2, 3] and dropped == {"dropped_no_vocab_word": 1, "dropped_over_max_words": 1}


def test_word_decoder_cannot_read_the_masked_word_from_its_own_input():
    """A masked slot holds the mask vector only: the decoder's input is the same whatever word was there."""
    model = sil.ASPModel(sil.sil_config("tiny").asp, torch.randn(5, 4), torch.zeros(3, 4)).eval()
    w_vec = model.word_vectors[torch.tensor([[1, 2]])]
    masked = torch.tensor([[True, False]])
    queries = torch.where(masked[..., None], model.mask_vector.expand_as(w_vec), w_vec)
    swapped = model.word_vectors[torch.tensor([[3, 2]])]
    other = torch.where(masked[..., None], model.mask_vector.expand_as(w_vec), swapped)
    assert torch.equal(queries, other)


# -- AVCL sampling -------------------------------------------------------------------------------------------------


def _k_for(start: int, end: int) -> torch.Tensor:
    cands = proposals.candidates(64).tolist()
    k = torch.zeros(1, len(cands))
    k[0, cands.index([start, end])] = 1.0
    return k


def test_select_clips_positives_inside_top_proposal_negatives_outside_then_lowest_inside():
    scores = torch.arange(64.0)[None] / 64  # increasing with time
    k = _k_for(0, 7)  # clips 0..7
    pos, neg = avcl.select_clips(k, scores, 64, t=3, location=True, score=True)
    assert pos[0].nonzero().flatten().tolist() == [5, 6, 7]
    assert int(neg.sum()) == 3 and not neg[0, :8].any()
    pos, neg = avcl.select_clips(k, scores, 64, t=3, location=False, score=True)
    assert neg[0].nonzero().flatten().tolist() == [0, 1, 2]  # the lowest-scored clips inside, not the positives
    whole = _k_for(0, 63)  # nothing outside: score-based mining supplies every negative
    pos, neg = avcl.select_clips(whole, scores, 64, t=3, location=True, score=True)
    assert pos[0].nonzero().flatten().tolist() == [61, 62, 63] and neg[0].nonzero().flatten().tolist() == [0, 1, 2]
    pos, neg = avcl.select_clips(k, scores, 64, t=3, location=True, score=False)
    assert int(pos[0, :8].sum()) == 3 and int(pos.sum()) == 3 and not neg[0, :8].any()


def test_the_scorer_read_at_clips_equals_the_dense_convolution_on_the_diagonal():
    torch.manual_seed(0)
    conv = proposals.SparseMapConv(4, 3, kernel=3, n=64)
    cells = torch.randn(2, len(proposals.valid_cells(64)), 4)
    dense = torch.zeros(2, 4, 64, 64)
    vc = proposals.valid_cells(64)
    dense[:, :, vc[:, 0], vc[:, 1]] = cells.transpose(1, 2)
    full = torch.relu(conv.conv(dense))  # before 2D-TAN's re-weighting
    diag = full[:, :, torch.arange(64), torch.arange(64)].transpose(1, 2)
    count = torch.nn.functional.conv2d(_mask(vc), torch.ones(1, 1, 3, 3), padding=1)[0, 0].diagonal()
    assert torch.allclose(conv(cells, at="clips"), diag / count[None, :, None], atol=1e-5)  # valid cells per window


def _mask(vc: torch.Tensor) -> torch.Tensor:
    m = torch.zeros(1, 1, 64, 64)
    m[0, 0, vc[:, 0], vc[:, 1]] = 1.0
    return m


# -- tiny end-to-end -----------------------------------------------------------------------------------------------


def _run(name, data, home, workdir, seed=0, **overrides):
    return run_method(name, data, workdir, home / "cache", seed, **overrides)[0]


def test_sil_pretrains_once_grounds_and_scores_its_predictions(tiny, tmp_path):
    home, data = tiny
    result = _run("sil", data, home, tmp_path / "a")
    assert set(evaluate.METRIC_KEYS) <= set(result.test) and result.dataset_hash == data.content_hash
    rescored = evaluate.evaluate_file(result.predictions)
    for key in evaluate.METRIC_KEYS:
        assert rescored[key] == pytest.approx(result.test[key], abs=1e-9)
    (asp,) = (home / "cache" / "stages" / "asp").iterdir()
    record = json.loads((asp / "stage.json").read_text())
    assert record["inputs"] == {"dataset": data.content_hash, "asp_version": str(sil.ASP_VERSION)}
    assert record["config"]["domains"] == "both"
    assert record["key"] == stages.stage_key("asp", registry.get("sil").config("tiny").asp, record["inputs"])
    built = (asp / "encoder.pt").stat().st_mtime_ns
    # an ablation with the same encoder (Table 11) reuses the stage: no second build, same file
    other = _run("sil-no-score", data, home, tmp_path / "b", seed=1)
    assert set(evaluate.METRIC_KEYS) <= set(other.test)
    assert len(list((home / "cache" / "stages" / "asp").iterdir())) == 1
    assert (asp / "encoder.pt").stat().st_mtime_ns == built


def test_base_lsem_builds_its_own_single_domain_encoder_without_cif(tiny, tmp_path):
    home, data = tiny
    result = _run("base+lsem", data, home, tmp_path / "c")
    assert set(evaluate.METRIC_KEYS) <= set(result.test)
    configs = [json.loads((p / "stage.json").read_text())["config"] for p in (home / "cache/stages/asp").iterdir()]
    assert {(c["domains"], c["conc"], c["rob"]) for c in configs} >= {("freq", False, False)}


def test_per_run_seeding_pretrains_one_encoder_per_grounding_seed_and_says_so(tiny, tmp_path):
    _, data = tiny
    home = tmp_path  # its own stage cache: the encoders counted are this test's
    for seed in (0, 1):
        _run("base+lsem", data, home, tmp_path / f"w{seed}", seed=seed, **{"asp.seeding": "per-run"})
    records = [json.loads(p.read_text()) for p in (home / "cache/stages/asp").glob("*/stage.json")]
    assert sorted(r["seed"] for r in records) == [0, 1]
    shared = registry.get("base+lsem").config("tiny").asp
    seed0 = sil.asp_stage(home / "cache", shared, data.content_hash).key  # per-run seed 0 is the default encoder
    assert {r["key"] for r in records if r["seed"] == 0} == {seed0}
    _run("base+lsem", data, home, tmp_path / "w2", seed=1)  # the default: seed 1 grounds on the seed-0 encoder
    assert len(records) == len(list((home / "cache/stages/asp").glob("*/stage.json")))
    runs = tracking.finished_runs({"method": "base+lsem"}).sort_values("start_time").tail(3)
    assert runs["params.spread"].tolist() == [sil.SPREAD["per-run"]] * 2 + [sil.SPREAD["shared"]]
    assert runs["params.asp.pretrain_seed"].tolist() == ["0", "1", "0"]


def test_every_ablation_is_registered_with_a_distinct_configuration():
    names = ["sil", "base+lsem", "base+asp", "base+lconc+lsem", "base+lsem+avcl", "sil-no-rob", "sil-data10",
             "sil-data50", "base-pooladd+lsem", "base-pooladd+asp", "sil-no-location", "sil-no-score",
             "sil-freq-only", "sil-time-only", "base+ldis", "base+lseq", "base+lseq+lword", "sbase+asp",
             "sil-both-no-rob"]  # fmt: skip
    specs = [registry.get(n) for n in names]
    assert all(s.implemented and s.issue == 5 for s in specs)
    hashes = {s.name: config.config_hash(s.config("small")) for s in specs}
    # Figure 5(a)'s "L_seq + L_word" (with the CTC warm-up) is L_sem itself: one configuration, two names; Table 3's
    # row 5 is Figure 4's frequency-only SIL
    assert hashes.pop("base+lseq+lword") == hashes["base+lsem"]
    assert hashes.pop("sil-freq-only") == hashes["sil-no-rob"]
    assert len(set(hashes.values())) == len(names) - 2
    c = registry.get("sil").config("paper")  # App. B.2
    assert (c.asp.d, c.asp.n_a, c.asp.n_s, c.asp.mask_ratio, c.asp.negatives, c.T, c.lambda3) == (
        256, 4, 4, 0.5, 512, 12, 0.1)  # fmt: skip


def _components(name: str) -> tuple:
    c = registry.get(name).config("tiny")
    return (c.asp.rob, c.asp.conc, c.asp.ctc and c.asp.seq and c.asp.word, c.avcl, c.asp.domains)


def test_table_3s_neighbouring_rows_differ_by_one_component():
    """rob, conc, sem, avcl, inputs of each row; only row 5 -> 6 changes two things (eq. 1 needs both inputs)."""
    from bench import tables

    rows = [r.method for r in tables.load_table(3).rows]
    assert [_components(n) for n in rows[1:]] == [
        (False, False, True, False, "freq"),  # L_sem
        (False, True, True, False, "freq"),  # L_conc + L_sem
        (False, False, True, True, "freq"),  # L_sem + L_AVCL
        (False, True, True, True, "freq"),  # L_conc + L_sem + L_AVCL
        (True, True, True, True, "both"),  # + L_rob (and the time-domain input it aligns)
    ]
    assert _components("sil-both-no-rob") == (False, True, True, True, "both")  # between rows 5 and 6
