"""WSLLN + L_sem and RTBPN + L_sem (Table 1): the backbones with the frozen L_sem speech encoder in place of their text
encoder. The feature query by hand, the registration, the encoder configuration shared with ``base+lsem``, and
tiny end-to-end runs that pre-train once and reuse that one stage."""

from __future__ import annotations

import json

import pytest
import torch
import update_cases
from methodrun import run_method

from bench import cli, evaluate, stages
from methods import registry, rtbpn, sil, wslln

NAMES = ("wslln+lsem", "rtbpn+lsem")


# -- the feature query ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_the_speech_features_replace_the_word_vectors_through_an_fc_layer(name):
    c = registry.get(name).config("tiny")
    net_cls = wslln.WSLLNNet if name.startswith("wslln") else rtbpn.RTBPNNet
    torch.manual_seed(0)
    net = net_cls(c, update_cases.VIDEO_DIM, query_dim=16).eval()  # the batch's "sem" is 16-d
    assert net.words is None and net.speech.project.in_features == 16
    batch = update_cases.batch()
    logits = net(batch)
    assert logits.shape == (update_cases.B, 153)
    other = {**batch, "words": torch.zeros_like(batch["words"])}  # the words are never read
    assert torch.equal(net(other), logits)
    moved = {**batch, "sem": batch["sem"] + 1.0}
    assert not torch.allclose(net(moved), logits)
    logits.sum().backward()
    assert net.speech.project.weight.grad.abs().sum() > 0


def test_rtbpn_reads_every_feature_step_where_the_text_query_is_cut_to_20_words():
    c = registry.get("rtbpn+lsem").config("tiny")
    net = rtbpn.RTBPNNet(c, update_cases.VIDEO_DIM, query_dim=4)
    batch = {"sem": torch.randn(2, 30, 4), "sem_len": torch.tensor([30, 25])}
    s, mask = net.encode_query(batch)
    assert c.max_words == 20 and s.shape[:2] == (2, 30) and mask.sum(1).tolist() == [30, 25]


# -- registration ----------------------------------------------------------------------------------------------


def test_registered_for_their_table_1_rows_and_no_longer_planned(capsys):
    from bench import tables

    rows = {r.method: r.id for r in tables.load_table(1).rows}
    for name in NAMES:
        spec = registry.all_methods()[name]
        assert spec.implemented and spec.issue == 17
        assert (spec.stages, spec.query, spec.supervision) == (("pretrain", "ground"), "speech", "weak")
        assert spec.rows == (f"table1:{rows[name]}",)
        c = spec.config("small")
        assert c.query == "features" and c.asp is not None
    assert cli.main(["methods"]) == 0
    listed = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert listed["wslln+lsem"] == listed["rtbpn+lsem"] == "runs"
    for text in ("wslln-text", "rtbpn-text"):  # the text rows keep their text encoder
        c = registry.get(text).config("small")
        assert c.query == "words" and c.asp is None


@pytest.mark.parametrize("profile", ["tiny", "small", "paper"])
def test_the_pretraining_stage_is_base_lsems(profile):
    shared = registry.get("base+lsem").config(profile).asp
    for name in NAMES:
        asp = registry.get(name).config(profile).asp
        assert asp == shared
        assert sil.asp_stage("cache", asp, "h").key == sil.asp_stage("cache", shared, "h").key
    # the backbones keep their own sizes; only the query changes
    assert registry.get("rtbpn+lsem").config(profile).d == registry.get("rtbpn-text").config(profile).d


# -- tiny end-to-end -----------------------------------------------------------------------------------------------


def _run(name, data, home, workdir, seed=0):
    return run_method(name, data, workdir, home / "cache", seed)


def test_both_rows_ground_on_the_one_lsem_stage_that_base_lsem_builds(tiny, tmp_path):
    import mlflow

    home, data = tiny
    _, base_id = _run("base+lsem", data, home, tmp_path / "base")
    (asp,) = (home / "cache" / "stages" / "asp").iterdir()
    built = (asp / "encoder.pt").stat().st_mtime_ns
    record = json.loads((asp / "stage.json").read_text())
    assert record["key"] == stages.stage_key("asp", registry.get("wslln+lsem").config("tiny").asp, record["inputs"])
    ids = {}
    for seed, name in enumerate(NAMES, start=1):
        result, ids[name] = _run(name, data, home, tmp_path / name, seed=seed)
        assert set(evaluate.METRIC_KEYS) <= set(result.test) and result.dataset_hash == data.content_hash
        rescored = evaluate.evaluate_file(result.predictions)
        for key in evaluate.METRIC_KEYS:
            assert rescored[key] == pytest.approx(result.test[key], abs=1e-9)
        assert evaluate.read_predictions(result.predictions).pred.shape[1] == 153
    assert len(list((home / "cache" / "stages" / "asp").iterdir())) == 1  # built once, by base+lsem
    assert (asp / "encoder.pt").stat().st_mtime_ns == built
    params = {n: mlflow.get_run(i).data.params for n, i in {"base+lsem": base_id, **ids}.items()}
    assert {p["stage.asp"] for p in params.values()} == {record["key"]}
    assert "stage.asp.built_here" in params["base+lsem"]
    assert not any("stage.asp.built_here" in params[n] for n in NAMES)
    assert all(params[n]["spread"] == sil.SPREAD["shared"] for n in NAMES)
