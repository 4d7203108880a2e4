"""VGCL: the InfoNCE by hand, the curriculum's windows by their rule, the Gaussian and inside targets, the loss of
a known prediction, the contexts independent of the batch, the row's configuration, and a tiny pre-train + ground
run whose stage a second seed reuses."""

from __future__ import annotations

import json
import math

import pytest
import torch
from methodrun import run_method
from torch import nn

from bench import evaluate
from methods import registry, vgcl


def _identity_predictors(d: int, k: int) -> nn.ModuleList:
    predictors = nn.ModuleList(nn.Linear(d, d) for _ in range(k))
    for p in predictors:
        nn.init.eye_(p.weight), nn.init.zeros_(p.bias)
    return predictors


def test_infonce_by_hand_on_two_utterances():
    # one step ahead, d = 1, identity predictor: predictions = contexts (1, 2), targets (1, -1);
    # logits [[1, 2], [-1, -2]]: each row's own column loses by 1, so each cross-entropy is log(1 + e)
    steps = torch.tensor([2, 2])
    c = torch.tensor([[[1.0], [9.0]], [[2.0], [9.0]]])  # the context at step T' - 2 = 0
    z = torch.tensor([[[9.0], [1.0]], [[9.0], [-1.0]]])  # the target at step T' - 1 = 1
    loss, accuracy = vgcl.cpc_nce(z, c, steps, _identity_predictors(1, 1))
    assert loss.item() == pytest.approx(math.log(1 + math.e), rel=1e-6)
    assert accuracy.item() == 0.0


def test_infonce_is_log_batch_when_the_predictions_carry_nothing():
    torch.manual_seed(0)
    predictors = _identity_predictors(4, 3)
    for p in predictors:
        nn.init.zeros_(p.weight)
    loss, _ = vgcl.cpc_nce(torch.randn(5, 9, 4), torch.randn(5, 9, 4), torch.tensor([9, 7, 5, 4, 8]), predictors)
    assert loss.item() == pytest.approx(math.log(5), rel=1e-6)


def test_the_curriculum_window_is_the_moment_then_widens_then_is_the_whole_video():
    torch.manual_seed(0)
    s, e = torch.full((500,), 4.5), torch.full((500,), 6.2)
    first = vgcl.curriculum_window(s, e, 10, epoch=1, epochs=10)
    assert first[0].nonzero().flatten().tolist() == [4, 5, 6]  # the clips overlapping [4.5, 6.2]
    assert vgcl.curriculum_window(s, e, 10, epoch=10, epochs=10).all()
    wide = vgcl.curriculum_window(s, e, 10, epoch=6, epochs=10)  # tenth 5: each side widens by u * 0.5 of its gap
    assert (wide | ~first).all() and wide.sum(1).float().mean() > first.sum(1).float().mean()
    starts = wide.float().argmax(1)
    assert starts.min() >= 2 and starts.max() == 4  # 4.5 - 0.5 * 4.5 = 2.25 at the farthest


def test_gaussian_targets_and_inside_targets():
    p = vgcl.gaussian_targets(torch.tensor([2.0]), torch.tensor([1.0]), 5)
    w = torch.exp(-torch.tensor([4.0, 1.0, 0.0, 1.0, 4.0]) / 2)
    torch.testing.assert_close(p[0], w / w.sum())
    t = vgcl.inside_targets(torch.tensor([1.4, 0.0]), torch.tensor([3.5, 5.0]), 5)  # round(3.5) = 4 (half to even)
    assert t.tolist() == [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]


class _Fixed(nn.Module):
    def __init__(self, out: vgcl.VGCLOutput) -> None:
        super().__init__()
        self.out, self.g = out, vgcl.method_config("tiny").ground

    def forward(self, batch):
        return self.out


def test_the_loss_of_the_target_distributions_is_the_inside_bce_alone():
    n, s, e = 8, 2.0, 5.0  # a moment of [2, 5] seconds in a video of 8 s: clip units 2 and 5
    batch = {"span": torch.tensor([[s, e]]), "duration": torch.tensor([8.0])}
    std = torch.sqrt(torch.tensor([1 + (e - s + 1) / n]))
    start = vgcl.gaussian_targets(torch.tensor([s]), std, n).log()[:, None].expand(1, 8, n)
    end = vgcl.gaussian_targets(torch.tensor([e - 1]), std, n).log()[:, None].expand(1, 8, n)
    inside = torch.full((1, n), 0.5)
    loss, parts = vgcl.vgcl_loss(_Fixed(vgcl.VGCLOutput(start, end, inside)), batch)
    assert parts["boundary"] == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(6 * math.log(2), rel=1e-5)


def _batch():
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([40, 25, 60])
    mel = torch.randn(3, 60, 80, generator=g) * (torch.arange(60)[None, :, None] < lengths[:, None, None])
    return {"mel": mel, "mel_len": lengths, "video": torch.randn(3, 8, 6, generator=g)}


def test_an_utterances_contexts_do_not_change_with_the_batch_it_is_encoded_in():
    torch.manual_seed(0)
    enc = vgcl.CPCEncoder(vgcl.method_config("tiny").cpc, 6).eval()
    batch = _batch()
    feats, steps = enc.features(batch)
    assert steps.tolist() == [10, 6, 15]
    for i in range(3):
        one = {"mel": batch["mel"][i : i + 1, : int(batch["mel_len"][i])], "mel_len": batch["mel_len"][i : i + 1],
               "video": batch["video"][i : i + 1]}  # fmt: skip
        alone, n = enc.features(one)
        torch.testing.assert_close(feats[i, : steps[i]], alone[0, : n[0]], atol=1e-5, rtol=1e-5)


def test_the_row_has_the_codes_sizes_and_optimiser_at_the_paper_profile():
    spec = registry.get("vgcl")
    c = spec.config("paper")
    assert (c.ground.d, c.ground.branches, c.ground.inside_weight, c.cpc.d, c.cpc.n_predict) == (1024, 8, 6.0, 256, 3)
    t = c.ground.train
    assert (t.lr, t.batch_size, t.warmup_updates, t.weight_decay, t.grad_clip, t.epochs) == (5e-4, 64, 800, 1e-5, 5, 50)
    assert spec.supervision == "full" and spec.rows == ("table1:vgcl", "table10:vgcl") and spec.implemented


def test_tiny_run_pretrains_once_grounds_and_a_second_seed_reuses_the_stage(tiny, tmp_path):
    home, data = tiny
    first = run_method("vgcl", data, tmp_path / "a", home / "cache", 0)[0]
    assert set(evaluate.METRIC_KEYS) <= set(first.test)
    rescored = evaluate.evaluate_file(first.predictions)
    assert rescored["R1@0.5"] == pytest.approx(first.test["R1@0.5"], abs=1e-9)
    (stage,) = (home / "cache" / "stages" / vgcl.STAGE).iterdir()
    summary = json.loads((stage / "stage.json").read_text())["summary"]
    assert summary["selected_epoch"] in (1, 2) and 0 <= summary["heldout_accuracy"] <= 1
    built = (stage / "encoder.pt").stat().st_mtime_ns
    second = run_method("vgcl", data, tmp_path / "b", home / "cache", 1)[0]
    assert set(evaluate.METRIC_KEYS) <= set(second.test)
    assert len(list((home / "cache" / "stages" / vgcl.STAGE).iterdir())) == 1
    assert (stage / "encoder.pt").stat().st_mtime_ns == built
