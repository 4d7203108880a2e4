"""Table 1's fine-tune column: each ``-ft`` variant is its row's configuration with ``finetune`` set, the trainable
features are the frozen ones with gradients, a fine-tuned run moves the encoder while the stage's stays as built,
the encoder reads the same log-mel the grounding data holds, a text backbone refuses to fine-tune, and the table
fills the row's "mIoU (finetune)" cell from the variant's runs."""

from __future__ import annotations

import pytest
import torch
from methodrun import run_method

from bench import config, evaluate, tables, tracking
from bench.context import RunContext
from bench.data import grounding
from methods import registry, sil
from methods.parts import finetune

TUNED = {"sil": "sil", "base+lut": "base+lut", "base+vilt": "base+vilt", "base+wav2vec2": "base+wav2vec2",
         "wslln+lsem": "wslln+lsem", "rtbpn+lsem": "rtbpn+lsem"}  # fmt: skip
"""The built fine-tuned variants: method -> its Table 1 row."""


@pytest.mark.parametrize("name", sorted(TUNED))
def test_each_variant_is_its_rows_configuration_with_finetune_set(name):
    frozen, tuned = registry.get(name), registry.get(name + "-ft")
    for profile in ("tiny", "small", "paper"):
        assert tuned.config(profile) == config.apply_overrides(frozen.config(profile), {"finetune": "true"})
        assert frozen.config(profile).finetune is False
    assert tuned.implemented and tuned.stages == frozen.stages and tuned.supervision == frozen.supervision
    assert tuned.rows == (f"table1:{TUNED[name]}",)  # the variant fills its row's cell, no row of its own


def test_every_fine_tune_cell_of_table_1_names_a_method_known_to_the_registry():
    table = tables.load_table(1)
    cells = {r.id: r.finetune for r in table.rows if r.finetune}
    assert cells.keys() == {r.id for r in table.rows if "mIoU_finetune" in r.paper}  # every cell the paper prints
    for row, method in cells.items():
        assert registry.is_known(method), row
    built = {m for m in cells.values() if registry.get(m).implemented}
    assert {m.removesuffix("-ft") for m in built} >= set(TUNED)


def test_the_trainable_features_are_the_frozen_ones_and_carry_gradients():
    torch.manual_seed(0)
    encoder = sil.ASPEncoder(registry.get("sil").config("tiny").asp).eval()
    g = torch.Generator().manual_seed(1)
    wave_len, mel_len = torch.tensor([2000, 1400]), torch.tensor([50, 35])
    batch = {"wave": torch.randn(2, 2000, generator=g), "wave_len": wave_len,
             "mel": torch.randn(2, 50, 80, generator=g), "mel_len": mel_len}  # fmt: skip
    frozen_feats, frozen_len = encoder.features(batch)
    feats, lengths = encoder.grounding_features(batch)
    assert not frozen_feats.requires_grad and feats.requires_grad
    assert torch.equal(lengths, frozen_len) and torch.allclose(feats, frozen_feats, atol=1e-5)  # fast path or not
    feats.square().sum().backward()
    for domain in ("time", "freq"):
        grads = [p.grad for p in encoder.front[domain].parameters()]
        assert all(gr is not None for gr in grads) and any(gr.abs().sum() > 0 for gr in grads), domain


@pytest.mark.parametrize("features", ["cnn", "context"])
def test_the_tuned_wav2vec2_features_are_the_frozen_ones(features):
    from methods import asr, w2v2

    torch.manual_seed(0)
    model = w2v2.new_model(w2v2.w2v2_config("tiny")).wav2vec2.eval()
    waves = [torch.randn(3200), torch.randn(2400)]
    frozen_rows = w2v2.encode(model, waves, features, "cpu")
    values, attention = asr.pad_batch(waves)
    batch = {"wave16": values, "wave16_len": attention.sum(-1)}
    feats, frames = w2v2.TunedEncoder(model, features).grounding_features(batch)
    assert feats.requires_grad and frames.tolist() == [len(r) for r in frozen_rows]
    for i, row in enumerate(frozen_rows):
        assert torch.allclose(feats[i, : len(row)], row, atol=1e-5)


def test_a_text_backbone_refuses_to_fine_tune(tmp_path):
    spec = registry.get("wslln-text")
    c = config.apply_overrides(spec.config("tiny"), {"finetune": "true"})
    ctx = RunContext(spec, c, "synth", "tiny", 0, torch.device("cpu"), None, tmp_path, tmp_path)
    with pytest.raises(ValueError, match="needs a pre-trained speech encoder: run wslln\\+lsem-ft"):
        spec.run(ctx)


def _encoder_state(model_state: dict, prefix: str = "encoder.") -> dict:
    return {k[len(prefix) :]: v for k, v in model_state.items() if k.startswith(prefix)}


def test_a_fine_tuned_run_moves_its_encoder_and_leaves_the_stages_as_built(tiny, tmp_path):
    home, data = tiny
    result, _ = run_method("sil-ft", data, tmp_path / "ft", home / "cache")
    assert set(evaluate.METRIC_KEYS) <= set(result.test)
    assert evaluate.evaluate_file(result.predictions)["mIoU"] == pytest.approx(result.test["mIoU"], abs=1e-9)
    st = sil.asp_stage(home / "cache", registry.get("sil").config("tiny").asp, data.content_hash)
    built = st.load("encoder.pt")["encoder"]
    state = torch.load(tmp_path / "ft" / "checkpoint.pt", map_location="cpu", weights_only=False)
    tuned = _encoder_state(state["best"]["model"])
    assert tuned.keys() == built.keys()
    assert any(not torch.equal(tuned[k], built[k]) for k in built)  # the grounding loss reached the encoder
    again = st.load("encoder.pt")["encoder"]
    assert all(torch.equal(again[k], built[k]) for k in built)  # and the shared stage is untouched


def test_the_encoder_reads_the_log_mel_the_grounding_data_holds(tiny, tmp_path):
    home, data = tiny
    spec = registry.get("sil-ft")
    with tracking.start_run("test/inputs", {"method": "sil-ft"}) as log:
        ctx = RunContext(spec, spec.config("tiny"), "synth", "tiny", 0, torch.device("cpu"), log, tmp_path,
                         home / "cache")  # fmt: skip
        ctx.preloaded = data
        g = grounding.load(ctx.data, ctx.cache_dir, ctx.device, spec.config("tiny").ground.n_clips)
        with_inputs = finetune.with_speech_inputs(ctx, g)
    for name in g.split_names:
        before, after = g.split(name).queries, with_inputs.split(name).queries
        assert torch.equal(before["mel_len"], after["mel_len"]) and "wave" in after and "wave" not in before
        assert torch.allclose(before["mel"], after["mel"], atol=1e-4), name
        assert torch.equal(before["span"], after["span"])


@pytest.mark.parametrize("name", ["base+lut-ft", "base+vilt-ft", "base+wav2vec2-ft", "wslln+lsem-ft", "rtbpn+lsem-ft"])
def test_tiny_run_of_each_other_fine_tuned_variant(tiny, tmp_path, name):
    home, data = tiny
    result, _ = run_method(name, data, tmp_path / name, home / "cache")
    assert set(evaluate.METRIC_KEYS) <= set(result.test) and 0 <= result.test["R1@0.5"] <= 1
    state = torch.load(tmp_path / name / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert _encoder_state(state["model"])  # the encoder is part of what trains and resumes


def test_the_table_fills_the_fine_tune_cell_from_the_variants_runs():
    import pandas as pd

    miou = f"metrics.test/{tracking.mlflow_key('mIoU')}"
    r1 = f"metrics.test/{tracking.mlflow_key('R1@0.5')}"
    runs = pd.DataFrame(
        {
            "run_id": ["s0", "s1", "f0"],
            "params.method": ["sil", "sil", "sil-ft"],
            "params.seed": ["0", "1", "0"],
            "start_time": [1, 2, 3],
            miou: [0.20, 0.30, 0.40],
            r1: [0.10, 0.20, 0.90],
        }
    )
    rendered = tables.build(tables.load_table(1), "synth", "tiny", runs=runs)
    col = {h: i for i, h in enumerate(rendered.header)}
    (ours,) = [line for i, line in enumerate(rendered.lines) if i and rendered.lines[i - 1][0].startswith("SIL (")]
    assert ours[col["mIoU"]] == "25.00 ± 7.07" and ours[col["R@1 IoU=0.5"]] == "15.00 ± 7.07"  # the frozen runs'
    assert ours[col["mIoU (finetune)"]] == "40.00 (n=1)"  # the variant's mIoU, with its own n
    assert any("s0" in p and "f0" in p for p in rendered.provenance)
    only_tuned = tables.build(tables.load_table(1), "synth", "tiny", runs=runs[runs["params.method"] == "sil-ft"])
    (line,) = [ln for i, ln in enumerate(only_tuned.lines) if i and only_tuned.lines[i - 1][0].startswith("SIL (")]
    assert line[col["mIoU (finetune)"]] == "40.00" and line[col["mIoU"]] == "missing"  # none of its other metrics


def test_a_fine_tuned_run_starts_its_grounding_network_where_the_frozen_run_of_its_seed_does(tiny, tmp_path,
                                                                                              monkeypatch):  # fmt: skip
    from methods.parts import recipe

    class Built(Exception):
        pass

    seen = {}

    def capture(ctx, model, loss, data, cfg, select_on, score):
        seen[ctx.spec.name] = {k: v.clone() for k, v in model.state_dict().items()}
        raise Built

    monkeypatch.setattr(recipe, "fit_grounding", capture)
    home, data = tiny
    for name in ("sil", "sil-ft"):
        with pytest.raises(Built):
            run_method(name, data, tmp_path / name, home / "cache", seed=3)
    frozen, tuned = seen["sil"], seen["sil-ft"]
    assert frozen.keys() == {k.removeprefix("net.") for k in tuned if k.startswith("net.")}
    assert all(torch.equal(frozen[k], tuned[f"net.{k}"]) for k in frozen)
