"""Base + VILT: the matching pairs and the masked-word inputs by their rules, the loss at chance by hand, the
speech-only features independent of the batch, the row's configuration, and a tiny pre-train + ground run whose
stage a second seed reuses."""

from __future__ import annotations

import json
import math

import pytest
import torch
from methodrun import run_method
from torch import nn

from bench import evaluate
from bench.data import loader
from methods import registry, vilt


def test_matching_pairs_give_exactly_half_the_rows_their_partners_transcript():
    torch.manual_seed(0)
    words = torch.arange(1, 25).reshape(6, 4)  # row r holds 4r+1 .. 4r+4: every transcript distinct
    lengths = torch.tensor([4, 3, 2, 4, 1, 3])
    paired, paired_len, matched = vilt.stm_pairs(words, lengths)
    assert int(matched.sum()) == 3
    for r in range(6):
        if matched[r]:
            assert torch.equal(paired[r], words[r]) and paired_len[r] == lengths[r]
        else:  # another row's words, with that row's length
            (src,) = [o for o in range(6) if torch.equal(paired[r], words[o])]
            assert src != r and paired_len[r] == lengths[src]


def test_masked_words_follow_the_80_10_10_rule_and_the_others_stay():
    torch.manual_seed(0)
    vectors = torch.cat([torch.zeros(1, 3), torch.randn(50, 3)])
    words = torch.randint(1, 51, (400, 50))
    masked = torch.rand(words.shape) < 0.5
    mask_vector = torch.full((3,), 7.0)
    out = vilt.mlm_inputs(words, masked, vectors, mask_vector)
    assert torch.equal(out[~masked], vectors[words][~masked])
    m = out[masked]
    as_mask = (m == 7.0).all(-1)
    kept = (m == vectors[words][masked]).all(-1)
    other = ~as_mask & ~kept  # a random word (one equal to the original counts as kept: 1 in 50 of the 10 %)
    n = masked.sum().item()
    assert as_mask.sum().item() / n == pytest.approx(0.8, abs=0.01)
    assert kept.sum().item() / n == pytest.approx(0.1 + 0.1 / 50, abs=0.01)
    assert other.sum().item() / n == pytest.approx(0.1 - 0.1 / 50, abs=0.01)


def _batch(n_words=(4, 2, 3, 5)):
    g = torch.Generator().manual_seed(3)
    items = [{"mel": torch.randn(60 + 20 * i, 80, generator=g), "wave": torch.randn(100, generator=g),
              "words": torch.arange(1, n + 1)} for i, n in enumerate(n_words)]  # fmt: skip
    out = loader.PaddedSplit.from_items([str(i) for i in range(len(items))], items, ragged=("wave", "mel", "words"))
    return out.tensors


def test_the_loss_is_log_vocab_plus_log_2_when_both_heads_know_nothing():
    torch.manual_seed(0)
    c = vilt.vilt_config("tiny")
    vectors = torch.cat([torch.zeros(1, 6), torch.randn(9, 6)])  # 9 words + padding: 10 classes
    model = vilt.VILTModel(c, vectors).eval()
    for head in (model.mlm_head[-1], model.stm_head):  # all-zero logits: uniform predictions
        nn.init.zeros_(head.weight), nn.init.zeros_(head.bias)
    loss, parts = vilt.vilt_loss(model, _batch())
    assert parts["mlm"] == pytest.approx(math.log(10), rel=1e-6)
    assert parts["stm"] == pytest.approx(math.log(2), rel=1e-6)
    assert loss.item() == pytest.approx(math.log(10) + math.log(2), rel=1e-6)


def test_an_utterances_speech_features_do_not_change_with_the_batch_it_is_encoded_in():
    torch.manual_seed(0)
    enc = vilt.VILTEncoder(vilt.vilt_config("tiny"), 6).eval()
    batch = _batch()
    feats, lengths = enc.features(batch)
    for i in range(4):
        one = {k: v[i : i + 1] for k, v in batch.items()}
        one["mel"] = one["mel"][:, : int(batch["mel_len"][i])]
        alone, n = enc.features(one)
        assert int(n[0]) == int(lengths[i])
        torch.testing.assert_close(feats[i, : lengths[i]], alone[0, : n[0]], atol=1e-5, rtol=1e-5)


def test_the_row_is_an_8_layer_single_stream_encoder_at_the_paper_profile_pre_trained_30_epochs():
    spec = registry.get("base+vilt")
    c = spec.config("paper")
    assert (c.vilt.layers, c.vilt.d, c.vilt.mlm_ratio, c.vilt.train.epochs) == (8, 256, 0.15, 30)
    assert spec.config("small").vilt.train.epochs == 6 and spec.config("tiny").vilt.train.epochs == 1
    assert c.ground.query == "features" and spec.rows == ("table1:base+vilt",) and spec.implemented


def _run(data, home, workdir, seed):
    return run_method("base+vilt", data, workdir, home / "cache", seed)[0]


def test_tiny_run_pretrains_once_grounds_and_a_second_seed_reuses_the_stage(tiny, tmp_path):
    home, data = tiny
    first = _run(data, home, tmp_path / "a", seed=0)
    assert set(evaluate.METRIC_KEYS) <= set(first.test)
    rescored = evaluate.evaluate_file(first.predictions)
    assert rescored["R1@0.5"] == pytest.approx(first.test["R1@0.5"], abs=1e-9)
    (stage,) = (home / "cache" / "stages" / vilt.STAGE).iterdir()
    record = json.loads((stage / "stage.json").read_text())
    held = record["summary"]["heldout"]
    assert {"mlm", "stm", "mlm_accuracy", "stm_accuracy"} <= set(held) and 0 <= held["stm_accuracy"] <= 1
    built = (stage / "encoder.pt").stat().st_mtime_ns
    second = _run(data, home, tmp_path / "b", seed=1)
    assert set(evaluate.METRIC_KEYS) <= set(second.test)
    assert len(list((home / "cache" / "stages" / vilt.STAGE).iterdir())) == 1
    assert (stage / "encoder.pt").stat().st_mtime_ns == built
