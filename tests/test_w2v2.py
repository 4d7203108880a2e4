"""Base + Wav2vec2.0 (Table 1): the contrastive loss by hand and against Wav2Vec2ForPreTraining's own, the masks and
distractors, the Gumbel schedule, the frozen features, the registration, and tiny end-to-end runs through the
harness (pre-train once, ground, a second seed reusing the stage; a local checkpoint in place of the stage)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn import functional as F

from bench import cli, config, evaluate, tracking
from bench.data.errors import DataError
from bench.run import RunContext, set_seed
from methods import registry, w2v2

# -- the pre-training objective ------------------------------------------------------------------------------------


def test_contrastive_loss_of_a_positive_equal_to_its_context_vector_is_log_1_plus_k_e_minus_10():
    # three frames with orthogonal targets; each context vector equals its own target, the distractors are the
    # two other frames: cos = 1 with the positive, 0 with each distractor, so the logits are (10, 0, 0) at kappa 0.1
    targets = torch.eye(4)[:3][None]  # [1, 3, 4]
    negatives = torch.tensor([[[1, 2], [0, 2], [0, 1]]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    logits = w2v2.contrastive_logits(targets.clone(), targets, mask, negatives, 0.1)
    assert torch.allclose(logits, torch.tensor([[10.0, 0.0, 0.0]] * 3))
    loss = F.cross_entropy(logits, torch.zeros(3, dtype=torch.long), reduction="sum")
    assert loss.item() == pytest.approx(3 * math.log(1 + 2 * math.exp(-10)), abs=1e-6)  # float32 log-softmax
    assert (logits.argmax(1) == 0).all()
    # a distractor identical to the positive (a collapsed codebook) is left out, as the model does
    same = torch.cat([targets[:, :1], targets[:, :1], targets[:, 2:]], 1)  # frames 0 and 1 share a target
    logits = w2v2.contrastive_logits(same.clone(), same, mask, negatives, 0.1)
    assert logits[0, 1] == float("-inf") and logits[1, 1] == float("-inf") and logits[0, 2] == 0.0


def _tiny_batch(seed: int = 0, seconds: tuple[float, ...] = (1.0, 1.6, 1.3)):
    c = w2v2.w2v2_config("tiny")
    torch.manual_seed(seed)
    model = w2v2.new_model(c)
    import numpy as np

    np.random.seed(seed)
    waves = [torch.randn(int(s * 16_000)) for s in seconds]
    return c, model, waves, w2v2.make_batch(model, waves, c, "cpu")


def test_the_recomputed_logits_give_the_models_own_contrastive_and_diversity_losses():
    c, model, _, batch = _tiny_batch()
    model.train()
    model.set_gumbel_temperature(1.5)
    mask = batch["mask_time_indices"]
    out = model(batch["input_values"], attention_mask=batch["attention_mask"], mask_time_indices=mask,
                sampled_negative_indices=batch["sampled_negative_indices"])  # fmt: skip
    logits = w2v2.contrastive_logits(out.projected_states, out.projected_quantized_states, mask,
                                     batch["sampled_negative_indices"], c.logit_temperature)  # fmt: skip
    assert logits.shape == (int(mask.sum()), c.negatives + 1)
    mine = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long), reduction="sum")
    assert mine.item() == pytest.approx(out.contrastive_loss.item(), rel=1e-5)
    gv = c.groups * c.entries
    per_frame = out.diversity_loss.item() / mask.sum().item()
    assert per_frame == pytest.approx((gv - out.codevector_perplexity.item()) / gv, rel=1e-5)
    assert out.loss.item() == pytest.approx(mine.item() + c.diversity_weight * out.diversity_loss.item(), rel=1e-5)


def test_masks_stay_inside_each_utterance_and_distractors_are_other_masked_frames_of_it():
    c, model, waves, batch = _tiny_batch(seconds=(1.0, 2.0, 0.7))
    mask, negatives = batch["mask_time_indices"], batch["sampled_negative_indices"]
    frames = model._get_feat_extract_output_lengths(torch.tensor([len(w) for w in waves]))
    width = mask.shape[1]
    for b, n in enumerate(frames.tolist()):
        assert not mask[b, n:].any() and mask[b, :n].sum() >= 2
        for t in mask[b].nonzero().squeeze(1).tolist():
            rows, steps = negatives[b, t] // width, negatives[b, t] % width
            assert (rows == b).all() and mask[b, steps].all() and (steps != t).all()


def test_an_utterance_too_short_for_two_masked_frames_is_refused_with_the_rule():
    c = w2v2.w2v2_config("tiny")
    with pytest.raises(ValueError, match="at least 20 frames"):
        w2v2.draw_masks(torch.tensor([40, 9]), c)


def test_gumbel_temperature_decays_from_2_to_0_5():
    paper = w2v2.w2v2_config("paper")
    assert w2v2.gumbel_temperature(0, paper, 10) == 2.0
    assert w2v2.gumbel_temperature(100_000, paper, 10) == pytest.approx(2 * 0.999995**100_000)
    assert w2v2.gumbel_temperature(400_000, paper, 10) == 0.5  # 2 * e^-2 < 0.5: floored
    small = w2v2.w2v2_config("small")  # compressed to the stage: 0.5 exactly at its last update
    temps = [w2v2.gumbel_temperature(u, small, 500) for u in range(501)]
    assert temps[0] == 2.0 and temps[-1] == pytest.approx(0.5) and temps[250] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(temps, temps[1:], strict=False))


def test_a_queries_features_do_not_depend_on_the_batch_it_is_encoded_in():
    _, model, waves, _ = _tiny_batch()
    model.eval()
    for features in ("cnn", "context"):
        together = w2v2.encode(model.wav2vec2, waves, features, "cpu")
        alone = [w2v2.encode(model.wav2vec2, [w], features, "cpu")[0] for w in waves]
        width = model.config.conv_dim[-1] if features == "cnn" else model.config.hidden_size
        for a, b in zip(together, alone, strict=True):
            assert a.shape == b.shape and a.shape[1] == width
            assert torch.allclose(a, b, atol=1e-4)


# -- registration --------------------------------------------------------------------------------------------------


def test_registered_for_its_table_1_row_and_no_longer_planned(capsys):
    from bench import tables

    (row,) = [r for r in tables.load_table(1).rows if r.method == w2v2.METHOD]
    spec = registry.all_methods()[w2v2.METHOD]
    assert spec.implemented and spec.rows == (f"table1:{row.id}",) and w2v2.METHOD not in registry.planned()
    assert (spec.stages, spec.query, spec.supervision) == (("pretrain", "ground"), "speech", "weak")
    c = spec.config("small")
    assert c.ground.query == "features" and c.ground.speech_layers == 2  # App. B.3: Base's 2 layers
    from methods import asr

    arch = asr.asr_config("small")  # the small encoder is the ASR's architecture
    assert (c.w2v2.hidden, c.w2v2.conv_dim, c.w2v2.conv_stride) == (arch.hidden, arch.conv_dim, arch.conv_stride)
    assert cli.main(["methods"]) == 0
    listed = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert listed[w2v2.METHOD] == "runs"


# -- tiny end-to-end -----------------------------------------------------------------------------------------------


def test_bench_run_pretrains_once_and_a_second_seed_reuses_the_stage(tiny):
    import mlflow

    home, data = tiny
    assert cli.main(["run", "--method", w2v2.METHOD, "--profile", "tiny", "--seeds", "0,1", "--device", "cpu"]) == 0
    (st,) = (home / "cache" / "stages" / w2v2.STAGE).iterdir()
    record = json.loads((st / "stage.json").read_text())
    c = registry.get(w2v2.METHOD).config("tiny").w2v2
    assert record["key"] == w2v2.w2v2_stage(home / "cache", c, data.content_hash).key
    held = record["summary"]["heldout"]
    assert 0.0 <= held["accuracy"] <= 1.0 and held["contrastive"] > 0 and held["chance_loss"] == math.log(6)
    runs = tracking.finished_runs({"method": w2v2.METHOD}).sort_values("params.seed")
    assert runs["params.seed"].tolist() == ["0", "1"]
    params = [mlflow.get_run(i).data.params for i in runs["run_id"]]
    assert {p["stage.w2v2"] for p in params} == {record["key"]}
    assert "stage.w2v2.built_here" in params[0] and "stage.w2v2.built_here" not in params[1]
    for run_id in runs["run_id"]:
        (pred,) = (home / "mlartifacts").glob(f"**/{run_id}/artifacts/predictions/test_predictions.jsonl")
        metrics = mlflow.get_run(run_id).data.metrics
        rescored = evaluate.evaluate_file(pred)
        for key in evaluate.METRIC_KEYS:
            assert rescored[key] == pytest.approx(metrics[f"test/{tracking.mlflow_key(key)}"], abs=1e-9)


def _run(data, cache, workdir, seed=0, **overrides):
    spec = registry.get(w2v2.METHOD)
    c = config.apply_overrides(spec.config("tiny"), {k: str(v) for k, v in overrides.items()})
    set_seed(seed)
    with tracking.start_run("test/w2v2", {"method": spec.name}) as log:
        ctx = RunContext(spec, c, "synth", "tiny", seed, torch.device("cpu"), log, workdir, cache)
        ctx._data = data
        return spec.run(ctx), log.run_id


def test_a_local_checkpoint_replaces_the_pretraining_stage(tiny, tmp_path):
    import mlflow

    _, data = tiny
    torch.manual_seed(0)
    w2v2.new_model(w2v2.w2v2_config("tiny")).save_pretrained(tmp_path / "ckpt")
    result, run_id = _run(data, tmp_path / "cache", tmp_path / "work", **{"w2v2.checkpoint": tmp_path / "ckpt",
                                                                          "w2v2.features": "context"})  # fmt: skip
    assert set(evaluate.METRIC_KEYS) <= set(result.test)
    assert not (tmp_path / "cache" / "stages").exists()  # nothing pre-trained
    assert mlflow.get_run(run_id).data.params["w2v2.encoder"].startswith("ckpt-")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="config.json: missing"):
        _run(data, tmp_path / "cache", tmp_path / "work2", **{"w2v2.checkpoint": tmp_path / "empty"})
