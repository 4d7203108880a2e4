"""The reference rows that calibrate the synthetic benchmark: 2D-TAN on the gold text and the concept oracle.

Hand-computed cases for 2D-TAN's masked map convolution, its Hadamard fusion and its loss targets, and for the
oracle's matched filter; tiny end-to-end runs of both through ``bench run`` (test_ood scored beside val_2).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from bench import cli, evaluate, tracking
from methods import oracle, tan
from methods.parts import proposals


def test_masked_map_conv_reweights_by_the_valid_cells_in_each_window_and_spreads_the_mask():
    mask = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=torch.bool)  # a 3 x 3 upper triangle minus (0, 2)
    conv = tan.MaskedMapConv(1, layers=1, kernel=3, mask=mask)
    torch.nn.init.ones_(conv.convs[0].weight)
    torch.nn.init.zeros_(conv.convs[0].bias)
    x = mask[None, None].float()  # ones on the valid cells
    # one 3 x 3 layer, padded by 1: each output = (valid cells in the window) / (valid cells in the window) = 1,
    # wherever the window holds a valid cell (every position of this 3 x 3 map)
    torch.testing.assert_close(conv(x), torch.ones(1, 1, 3, 3))
    two = tan.MaskedMapConv(1, layers=2, kernel=3, mask=mask)
    assert two.convs[0].padding == (2, 2) and two.convs[1].padding == (0, 0)  # 2D-TAN's [p, 0]: 3 -> 5 -> 3
    assert two(x).shape == (1, 1, 3, 3)
    count = torch.tensor([[3.0, 4, 3], [3, 5, 4], [1, 3, 3]])  # valid cells in each 3 x 3 window of the mask
    torch.testing.assert_close(conv.weight0[0, 0], 1 / count)


def test_hadamard_fusion_is_unit_norm_on_valid_cells_and_zero_elsewhere():
    torch.manual_seed(0)
    c = tan.tan_config("tiny", n_clips=16)
    wv = torch.randn(6, 5)
    model = tan.TANNet(c, 7, wv)
    video, words, length = torch.randn(2, 16, 7), torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2])
    t = model.encode_query(words, length)
    fused = F.normalize(t[:, :, None, None] * model.map_fc(model.dense_map(video)), dim=1) * model.mask
    norms = fused.norm(dim=1)
    torch.testing.assert_close(norms[:, model.mask], torch.ones(2, int(model.mask.sum())))
    assert float(norms[:, ~model.mask].abs().max().detach()) == 0.0
    # the dense map holds each valid cell's max over its clips (after the clip projection)
    x = torch.relu(model.clips(F.normalize(video, dim=-1)))
    dense = model.dense_map(video)
    s, e = model.cells[10].tolist()
    torch.testing.assert_close(dense[:, :, s, e], x[:, s : e + 1].max(dim=1).values)
    assert model(dict(video=video, words=words, words_len=length)).shape == (2, len(proposals.valid_cells(16)))


def test_loss_targets_are_the_scaled_iou_of_every_valid_cell():
    n = 16
    cells = proposals.valid_cells(n)
    spans = proposals.cell_spans(torch.tensor([32.0]), cells, n)[0]  # 2 s per clip
    hit = int(((cells[:, 0] == 2) & (cells[:, 1] == 5)).nonzero()[0, 0])
    assert spans[hit].tolist() == [4.0, 12.0]
    iou = evaluate.temporal_iou(spans, torch.tensor([4.0, 12.0]))
    from methods.parts import losses

    y = losses.scaled_iou_targets(iou)
    assert float(y[hit]) == 1.0  # the annotated span itself
    # a cell sharing 6 of its 8 seconds ([4, 10] of [4, 12]): IoU 0.75 -> (0.75 - 0.5) / 0.5 = 0.5
    half = int(((cells[:, 0] == 2) & (cells[:, 1] == 4)).nonzero()[0, 0])
    assert float(y[half]) == pytest.approx(0.5)
    assert float(y[(iou <= 0.5)].abs().max()) == 0.0


def test_oracle_matched_filter_finds_the_planted_concept():
    torch.manual_seed(0)
    n, d = 16, 20
    proto = torch.randn(d)
    clips = torch.randn(1, n, d) * 0.1 + torch.randn(d)  # a scene vector shared by every clip, little noise
    clips[0, 4:8] += 2 * proto  # the concept in clips 4..7
    scores = oracle.candidate_scores(clips, proto[None], n)
    best = proposals.candidates(n)[scores.argmax(1)][0].tolist()
    assert best == [4, 7]
    # inside minus outside, by hand, for the best candidate
    x = clips[0] - clips[0].mean(0)
    per_clip = x @ proto
    expected = per_clip[4:8].mean() - torch.cat([per_clip[:4], per_clip[8:]]).mean()
    assert float(scores.max()) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("name", ["2dtan-text", "oracle-concept"])
def test_tiny_bench_run_scores_val_2_and_test_ood(tiny, name, capsys):
    home, _ = tiny
    assert cli.main(["run", "--method", name, "--profile", "tiny", "--seeds", "0", "--device", "cpu"]) == 0
    assert "FINISHED" in capsys.readouterr().out
    runs = tracking.finished_runs({"method": name, "profile": "tiny"})
    assert len(runs) == 1
    work = Path(home) / "work" / name / "synth" / "tiny" / "seed0"
    for split, prefix in (("test", "test/"), ("test_ood", "test_ood/")):
        (path,) = work.glob(f"*/{split}_predictions.jsonl")
        rescored = evaluate.evaluate_file(path)
        logged = float(runs[f"metrics.{prefix}{tracking.mlflow_key('R1@0.5')}"].iloc[0])
        assert rescored["R1@0.5"] == pytest.approx(logged, abs=1e-9)
