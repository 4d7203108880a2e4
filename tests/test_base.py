"""The Base network's parts (proposal map, losses), the shared training loop, and tiny end-to-end runs."""

from __future__ import annotations

import dataclasses
import math
import os
from collections import Counter
from pathlib import Path

import pytest
import torch
from methodrun import run_method

from bench import cli, config, evaluate, tracking, train
from methods import base, registry
from methods.parts import fusion, losses, proposals

# -- the 2D-TAN sparse map ---------------------------------------------------------------------------------


def test_sparse_map_has_1104_valid_cells_with_the_per_length_counts_of_the_notes():
    cells = proposals.valid_cells(64)
    assert len(cells) == 1104 == len({tuple(c) for c in cells.tolist()})
    lengths = Counter((cells[:, 1] - cells[:, 0] + 1).tolist())
    # baselines.md §1: L = 1..16 -> 64, 63, ..., 49; L = 18..32 (even) -> 24..17; L = 36..64 (step 4) -> 8..1
    expected = {L: 65 - L for L in range(1, 17)}
    expected |= {L: 24 - (L - 18) // 2 for L in range(18, 33, 2)}
    expected |= {L: 8 - (L - 36) // 4 for L in range(36, 65, 4)}
    assert lengths == expected
    assert sum(v for L, v in expected.items() if L <= 16) == 904
    for s, e in cells.tolist():  # starts aligned to the scale's stride, ends inside the video
        length = e - s + 1
        assert e <= 63 and s % (1 if length <= 16 else 2 if length <= 32 else 4) == 0


def test_153_scored_candidates():
    cand = proposals.candidates(64)
    counts = Counter((cand[:, 1] - cand[:, 0] + 1).tolist())
    assert counts == {8: 57, 16: 49, 24: 21, 32: 17, 48: 5, 56: 3, 64: 1}
    assert len(cand) == 153
    valid = {tuple(c) for c in proposals.valid_cells(64).tolist()}
    assert all(tuple(c) in valid for c in cand.tolist())
    spans = proposals.candidate_spans(torch.tensor([128.0]))  # 2 s per clip
    assert spans[0, 0].tolist() == [0.0, 16.0] and spans[0, -1].tolist() == [0.0, 128.0]


def test_proposal_map_cell_is_the_max_over_its_clips():
    x = torch.randn(2, 64, 3)
    cells = proposals.ProposalMap(64)(x)
    for i, (s, e) in enumerate(proposals.valid_cells(64).tolist()):
        assert torch.equal(cells[:, i], x[:, s : e + 1].max(dim=1).values)


@pytest.mark.parametrize("kernel", [3, 5])
def test_sparse_map_conv_equals_dense_conv2d_with_2dtan_reweighting(kernel):
    torch.manual_seed(0)
    cells_idx, cand = proposals.valid_cells(64), proposals.candidates(64)
    conv = proposals.SparseMapConv(4, 3, kernel)
    cells = torch.randn(2, len(cells_idx), 4)
    dense = torch.zeros(2, 4, 64, 64)
    dense[:, :, cells_idx[:, 0], cells_idx[:, 1]] = cells.transpose(1, 2)
    mask = torch.zeros(1, 1, 64, 64)
    mask[0, 0, cells_idx[:, 0], cells_idx[:, 1]] = 1
    count = torch.nn.functional.conv2d(mask, torch.ones(1, 1, kernel, kernel), padding=kernel // 2)[0, 0]
    ref = torch.relu(conv.conv(dense))[:, :, cand[:, 0], cand[:, 1]] / count[cand[:, 0], cand[:, 1]]
    torch.testing.assert_close(conv(cells), ref.transpose(1, 2), rtol=1e-5, atol=1e-5)


# -- losses, by hand --------------------------------------------------------------------------------------


def test_mil_loss_on_a_hand_case():
    # R = 2: f(K) = mean of the 2 best scores.
    k = torch.tensor([[0.9, 0.7, 0.1]])  # f = 0.8
    kv = torch.tensor([[0.3, 0.1, 0.1]])  # f = 0.2
    ks = torch.tensor([[0.6, 0.4, 0.0]])  # f = 0.5
    expected = -math.log(0.8) - math.log(1 - 0.2) - math.log(0.8) - math.log(1 - 0.5)
    assert losses.mil_loss(k, kv, ks, r=2).item() == pytest.approx(expected, rel=1e-6)
    # dropping the (V, S') pair drops it with its twin positive term
    only_v = -math.log(0.8) - math.log(0.8)
    got = losses.mil_loss(k, kv, ks, 2, torch.tensor([True]), torch.tensor([False]))
    assert got.item() == pytest.approx(only_v, rel=1e-6)


def test_mil_plateau_is_4_log_2_at_constant_one_half():
    half = torch.full((5, 153), 0.5)
    assert (
        losses.mil_loss(half, half, half, 20).item() == pytest.approx(losses.MIL_PLATEAU) == pytest.approx(2.7726, 1e-4)
    )
    for p in (0.3, 0.7):  # any other constant is worse
        c = torch.full((5, 153), p)
        assert losses.mil_loss(c, c, c, 20).item() > losses.MIL_PLATEAU


def test_diversity_loss_is_the_entropy_of_the_top_r_softmax():
    uniform = torch.full((1, 30), 0.4)
    assert losses.diversity_loss(uniform, 20).item() == pytest.approx(math.log(20), rel=1e-6)
    k = torch.tensor([[1.0, 0.0, 0.0]])  # top-2 = [1, 0]: softmax = [e, 1] / (e + 1)
    p = math.e / (math.e + 1)
    assert losses.diversity_loss(k, 2).item() == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)))


def test_cross_gate_on_a_hand_case():
    """v' = sigmoid(W_q q + b) * v and q' = sigmoid(W_v v + b') * q, each element by hand (d = 2)."""
    gate = fusion.CrossGate(2)
    with torch.no_grad():
        gate.from_query.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        gate.from_query.bias.copy_(torch.tensor([0.0, math.log(3.0)]))  # sigmoid(log 3) = 3/4
        gate.from_video.weight.copy_(torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
        gate.from_video.bias.copy_(torch.tensor([0.0, 0.0]))
    v, q = torch.tensor([[[math.log(1.0), 4.0]]]), torch.tensor([[[math.log(4.0), 8.0]]])
    v2, q2 = gate(v, q)
    # v' = [sigmoid(log 4) * log 1, sigmoid(log 3) * 4] = [0, 3]; q' = [sigmoid(0) * log 4, sigmoid(2 log 1) * 8]
    assert v2.flatten().tolist() == pytest.approx([0.0, 3.0])
    assert q2.flatten().tolist() == pytest.approx([math.log(4.0) / 2, 4.0])
    # the interaction gates the attended query before the Bi-GRU: its input width stays 2 d
    inter = fusion.Interaction(2)
    assert isinstance(inter.gate, fusion.CrossGate) and inter.gru.gru.input_size == 4


def test_diversity_reads_the_scores_or_the_logits_as_configured():
    """``div_on``: eq. 11 over the sigmoid scores (as written) or over the logits; the MIL term is the same."""
    torch.manual_seed(0)
    c = base.base_config("tiny", query="gold-text")
    model = base.BaseNet(c, 40, torch.randn(31, 12)).eval()
    import update_cases

    batch = update_cases.batch()
    batch["video"] = batch["video"][:, : c.n_clips]
    got = {}
    for div_on in ("scores", "logits"):
        model.c = dataclasses.replace(c, div_on=div_on)
        torch.manual_seed(1)
        p = base.weak_pass(model, batch)
        got[div_on] = p
    k = got["scores"].k.detach()
    assert got["scores"].scalars["mil"] == pytest.approx(got["logits"].scalars["mil"], abs=1e-6)
    assert got["scores"].scalars["div"] == pytest.approx(float(losses.diversity_loss(k, c.top_r)), abs=1e-6)
    assert got["logits"].scalars["div"] == pytest.approx(float(losses.diversity_loss(torch.logit(k), c.top_r)),
                                                         abs=1e-4)  # fmt: skip


def test_scaled_iou_targets():
    iou = torch.tensor([0.0, 0.5, 0.6, 0.75, 1.0])
    assert losses.scaled_iou_targets(iou).tolist() == pytest.approx([0.0, 0.0, 0.2, 0.5, 1.0])
    spans = torch.tensor([[[0.0, 10.0], [5.0, 15.0], [20.0, 30.0]]])
    iou = evaluate.temporal_iou(spans, torch.tensor([[0.0, 10.0]])[:, None])  # the targets SBase trains on
    assert iou.tolist() == [[1.0, pytest.approx(5 / 15), 0.0]]


def test_learning_rate_warms_up_then_decays_as_inverse_sqrt():
    c = config.TrainConfig(epochs=1, batch_size=1, lr=3e-4, warmup_updates=200, warmup_init_lr=1e-7)
    assert train.learning_rate(1, c) == pytest.approx(1e-7 + (3e-4 - 1e-7) / 200)
    assert train.learning_rate(100, c) == pytest.approx((1e-7 + 3e-4) / 2)
    assert train.learning_rate(200, c) == pytest.approx(3e-4)
    assert train.learning_rate(800, c) == pytest.approx(1.5e-4)  # sqrt(200 / 800) = 1/2


# -- tiny end-to-end runs ---------------------------------------------------------------------------------


def _run(name: str, data, workdir: Path, seed: int = 0, profile: str = "tiny", **overrides):
    """One method run outside the CLI, with its own workdir (so checkpoints never leak between runs)."""
    return run_method(name, data, workdir, workdir.parent / "cache", seed, profile, **overrides)[0]


@pytest.mark.parametrize("name", ["base", "base-text", "sbase"])
def test_tiny_run_trains_selects_on_val_and_scores_its_predictions_file(tiny, tmp_path, name):
    _, data = tiny
    result = _run(name, data, tmp_path / "work")
    assert set(evaluate.METRIC_KEYS) <= set(result.test) and set(evaluate.METRIC_KEYS) <= set(result.val_best)
    assert result.selected_epoch in (1, 2) and result.dataset_hash == data.content_hash
    rescored = evaluate.evaluate_file(result.predictions)
    for key in evaluate.METRIC_KEYS:
        assert rescored[key] == pytest.approx(result.test[key], abs=1e-9)
    first = [line for line in result.predictions.read_text().splitlines()][0]
    assert first.count("],") >= 152  # all 153 candidates, ranked


def test_training_updates_the_weights_and_lowers_the_supervised_loss(tiny, tmp_path):
    _, data = tiny
    _run("sbase", data, tmp_path / "w", **{"train.epochs": 4, "train.lr": 1e-3, "train.warmup_updates": 1})
    state = torch.load(tmp_path / "w" / train.CHECKPOINT, weights_only=False)
    loss = [record["train"]["bce"] for record in state["history"]]
    assert loss[-1] < loss[0] - 0.05, loss  # from about log 2 at the start; a loop that never steps stays there
    fresh = base.BaseNet(registry.get("sbase").config("tiny"), data_dim(data), None)
    moved = [not torch.equal(state["model"][k], v) for k, v in fresh.state_dict().items() if k.startswith("head")]
    assert all(moved)


def data_dim(data) -> int:
    from bench.data import grounding

    return grounding.load(data, Path(os.environ["WSVG_HOME"]) / "cache").train.videos.shape[-1]


def test_same_seed_same_metrics_and_different_seed_differs(tiny, tmp_path):
    _, data = tiny
    a = _run("base", data, tmp_path / "a", seed=3)
    b = _run("base", data, tmp_path / "b", seed=3)
    assert a.test == b.test and a.val_best == b.val_best
    assert a.predictions.read_text() == b.predictions.read_text()
    c = _run("base", data, tmp_path / "c", seed=4)
    assert c.predictions.read_text() != a.predictions.read_text()


class Killed(Exception):
    pass


def test_a_killed_run_resumes_and_ends_with_the_uninterrupted_metrics(tiny, tmp_path, monkeypatch):
    _, data = tiny
    whole = _run("base", data, tmp_path / "whole", seed=1, **{"train.epochs": 3})

    real_fit = train.fit

    def kill_after_epoch_2(*args, **kwargs):
        def hook(epoch: int) -> None:
            if epoch == 2:
                raise Killed

        return real_fit(*args, on_epoch_end=hook, **kwargs)

    monkeypatch.setattr(train, "fit", kill_after_epoch_2)  # fit_grounding calls it through the module
    with pytest.raises(Killed):
        _run("base", data, tmp_path / "killed", seed=1, **{"train.epochs": 3})
    state = torch.load(tmp_path / "killed" / train.CHECKPOINT, weights_only=False)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    monkeypatch.undo()
    resumed = _run("base", data, tmp_path / "killed", seed=1, **{"train.epochs": 3})
    assert resumed.test == whole.test and resumed.val_best == whole.val_best
    assert resumed.selected_epoch == whole.selected_epoch
    assert resumed.predictions.read_text() == whole.predictions.read_text()


def test_a_corrupt_checkpoint_is_a_clear_error(tiny, tmp_path):
    _, data = tiny
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / train.CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="checkpoint.pt.*delete it"):
        _run("base", data, tmp_path / "w")


def test_bench_run_base_in_table_1_puts_base_and_the_blind_rows_in_the_table(tiny, capsys):
    # --method with --table adds the blind rows that have no run yet; --table 1 alone (every row, about a minute
    # on tiny) is the sweep that tests/test_activitynet_speech.py runs method by method on the real-format root
    assert cli.main(["run", "--method", "base", "--table", "1", "--profile", "tiny", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("| Base | E2E"))
    ours = [cell.strip() for cell in lines[i + 1].split("|")[1:-1]]
    assert ours[6] == "ours (n=1)" and ours[7] != "missing", lines[i + 1]  # the reproduced line under the paper's
    for method in ("base", "random", "prior", "whole-video"):
        runs = tracking.finished_runs({"method": method, "profile": "tiny"})
        assert len(runs) == 1, method
    assert "Random" in out and "whole video" in out.lower()


def test_the_gate_can_be_left_out_for_the_ablation():
    """``cross_gate=False`` is the interaction before issue 21: the GRU reads ``[v ; q]`` as they come."""
    torch.manual_seed(0)
    inter = fusion.Interaction(4, gate=False)
    v, s = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    mask = torch.ones(2, 5, dtype=torch.bool)
    want = inter.gru(torch.cat([v, inter.attend(v, s, mask)], dim=-1))
    assert inter.gate is None and torch.equal(inter(v, s, mask), want)
    assert base.base_config("tiny", cross_gate=False).cross_gate is False
