"""Base + LUT: the confidence penalty on hand-made distributions, its term in the pre-training loss, the row's
configuration against App. B.3, and a tiny pre-train + ground run whose stage a second seed reuses."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from methodrun import run_method

from bench import config, evaluate
from bench.data import loader
from methods import lut, registry, sil


def test_frame_entropy_is_log_v_for_uniform_frames_and_skips_padding():
    logits = torch.zeros(2, 3, 4)  # uniform over 4 symbols: log 4 nats a frame
    logits[0, 2] = torch.tensor([50.0, 0.0, 0.0, 0.0])  # a confident frame, but padding in row 0
    logits[1, 1] = torch.tensor([50.0, 0.0, 0.0, 0.0])  # a confident real frame in row 1
    mask = torch.tensor([[True, True, False], [True, True, True]])
    h = sil.frame_entropy(logits, mask)
    assert h[0].item() == pytest.approx(math.log(4), abs=1e-6)
    assert h[1].item() == pytest.approx(2 * math.log(4) / 3, abs=1e-5)  # the confident frame adds about 0


def _batch():
    g = torch.Generator().manual_seed(3)
    items = [{"mel": torch.randn(n // 80, 80, generator=g), "wave": torch.randn(n, generator=g)}
             for n in (16000, 12000)]  # fmt: skip
    tensors = loader.PaddedSplit.from_items(["0", "1"], items, ragged=("wave", "mel")).tensors
    return {**tensors, "words": torch.tensor([[1, 2, 3, 4], [2, 3, 0, 0]]), "words_len": torch.tensor([4, 2])}


def test_the_penalty_term_is_minus_its_weight_times_the_mean_frame_entropy_and_nothing_else_moves():
    c = registry.get("base+lut").config("tiny").asp
    assert c.ctc_penalty == 0.3
    batch = _batch()
    out = {}
    for penalty in (0.3, 0.0):
        torch.manual_seed(1)
        model = sil.ASPModel(dataclasses.replace(c, ctc_penalty=penalty), torch.randn(5, 6), torch.zeros(3, 6)).eval()
        out[penalty] = (model, *sil.asp_loss(model, batch))
    model, loss, terms = out[0.3]
    e = model.encoder.encode("freq", batch, None)
    expected = -0.3 * sil.frame_entropy(model.ctc_head(e.s_a), e.a_mask).mean().item()
    assert terms["ctc_penalty"] == pytest.approx(expected, rel=1e-5)
    assert expected < 0  # it rewards entropy
    _, loss0, terms0 = out[0.0]
    assert "ctc_penalty" not in terms0
    assert {k: terms[k] for k in terms0} == pytest.approx(terms0, rel=1e-6)  # the same weights give the same terms
    assert loss.item() == pytest.approx(loss0.item() + expected, rel=1e-5)


def test_the_row_is_lut_at_app_b3s_sizes_and_differs_from_base_ldis_by_the_penalty_and_the_epochs():
    paper = registry.get("base+lut").config("paper")
    a = paper.asp
    assert a.n_a + a.n_s == 8 and a.train.epochs == lut.PAPER_EPOCHS == 30  # "an 8-layer Transformer", 30 epochs
    assert (a.ctc, a.dis, a.seq, a.word, a.conc, a.rob, a.domains) == (True, True, False, False, False, False, "freq")
    assert not paper.avcl and paper.ground.query == "features"
    assert registry.get("base+lut").rows == ("table1:base+lut",) and registry.get("base+lut").implemented
    for profile, epochs in (("tiny", 1), ("small", 6), ("paper", 30)):  # 30/40 of the profile's pre-training budget
        mine = config.to_dict(registry.get("base+lut").config(profile))
        ldis = config.to_dict(registry.get("base+ldis").config(profile))
        assert mine["asp"]["train"]["epochs"] == epochs
        mine["asp"].pop("ctc_penalty"), ldis["asp"].pop("ctc_penalty")
        mine["asp"]["train"].pop("epochs"), ldis["asp"]["train"].pop("epochs")
        assert mine == ldis


def _run(data, home, workdir, seed):
    return run_method("base+lut", data, workdir, home / "cache", seed)[0]


def test_tiny_run_pretrains_once_grounds_and_a_second_seed_reuses_the_stage(tiny, tmp_path):
    home, data = tiny
    first = _run(data, home, tmp_path / "a", seed=0)
    assert set(evaluate.METRIC_KEYS) <= set(first.test)
    (stage,) = (home / "cache" / "stages" / "asp").iterdir()
    record = json.loads((stage / "stage.json").read_text())
    assert record["config"]["ctc_penalty"] == 0.3 and record["config"]["dis"] is True
    built = (stage / "encoder.pt").stat().st_mtime_ns
    second = _run(data, home, tmp_path / "b", seed=1)
    assert set(evaluate.METRIC_KEYS) <= set(second.test)
    assert len(list((home / "cache" / "stages" / "asp").iterdir())) == 1
    assert (stage / "encoder.pt").stat().st_mtime_ns == built
