"""``--dataset activitynet-speech`` on a local data root written in the real formats (issue 20).

The root holds the tiny synthetic benchmark's content in ActivityNet Speech's exact formats and quirks
(``realformat.root_from_synth``): Captions JSON with a reversed train span and a span past its video, C3D in either
layout, wavs named by the rule, LibriSpeech's subsets, GloVe, ESC-50 and a tiny Wav2Vec2ForCTC checkpoint. What is
asserted: what the dataset exposes and counts, that a missing or broken root and missing wavs are one error before any
run opens, that the content hash follows the files while their checksums are read once, that the real splits carry
VGCL's wav names, and that every registered method runs on the root and lands a row in Table 1.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import realformat as rf
import torch
from conftest import SHARED

from bench import cli, datasets, tables, tracking
from bench.context import FINETUNE_SUFFIX
from bench.data import activitynet, grounding, speech_root
from methods import registry

TINY = ["--profile", "tiny", "--seeds", "0", "--threads", "1"]
METHOD_SECONDS: dict[str, float] = {}  # method -> seconds, printed by the table test (pytest -s), for the README


def _methods() -> list[str]:
    """Every registered method that runs, but the concept oracle (it reads synth's planted concepts by design) and
    the fine-tuned variants but one: they read the root as their frozen rows do, and differ only in training the
    encoder, which ``tests/test_finetune.py`` runs for each on synth; ``sil-ft`` checks the speech inputs they
    attach (read through the root's own wav names)."""
    return [n for n, s in registry.all_methods().items()
            if s.implemented and n != "oracle-concept" and (not n.endswith(FINETUNE_SUFFIX) or n == "sil-ft")]


def _runs(**params: str) -> list:
    import mlflow

    if not (tracking.runs_home() / "mlflow.db").exists():
        return []
    mlflow.set_tracking_uri(tracking.tracking_uri())
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return [r for r in runs if all(r.data.params.get(k) == v for k, v in params.items())]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return rf.write_wav2vec2(tmp_path_factory.mktemp("w2v") / "ckpt", frame_rate=50)


@pytest.fixture(scope="module")
def real(tiny, checkpoint, tmp_path_factory):
    """A real-format root of the tiny benchmark's content, single-file C3D, with wav2vec2/; ``$WSVG_DATA`` set."""
    home, synth = tiny
    built = rf.root_from_synth(synth.root, tmp_path_factory.mktemp("data") / "anet", "single", checkpoint)
    saved = os.environ.get(speech_root.ROOT_ENV)
    os.environ[speech_root.ROOT_ENV] = str(built.path)
    yield built
    speech_root._OPENED.clear()
    datasets._OPENED.clear()
    if saved is None:
        os.environ.pop(speech_root.ROOT_ENV, None)
    else:
        os.environ[speech_root.ROOT_ENV] = saved


@pytest.fixture
def scratch(tiny, tmp_path, monkeypatch):
    """A fresh root (no checkpoint) a test may break, with its own run directory and nothing opened yet."""
    _, synth = tiny
    built = rf.root_from_synth(synth.root, tmp_path / "anet", "single")
    monkeypatch.setenv("WSVG_HOME", str(tmp_path / "runs"))
    monkeypatch.setenv(speech_root.ROOT_ENV, str(built.path))
    monkeypatch.setenv(speech_root.SKIP_ENV, "")  # restored after the test, also when --skip-missing sets it
    monkeypatch.setattr(speech_root, "_OPENED", {})
    monkeypatch.setattr(datasets, "_OPENED", {})
    return built


# -- what the dataset exposes -------------------------------------------------------------------------------------


def test_the_dataset_exposes_what_synth_exposes_and_counts_its_rules(real):
    ds = datasets.open_dataset("activitynet-speech", "tiny", torch.device("cpu"))
    assert ds.name == "activitynet-speech" and len(ds.content_hash) == 12
    assert ds.features_path == real.path / "features" / "sub_activitynet_v1-3.c3d.hdf5"
    assert ds.wav_dir == real.path / "wavs" and ds.word_vectors_path == real.path / "glove.txt"
    assert ds.wav2vec2_checkpoint == real.path / "wav2vec2"
    assert [ds.has_split(s) for s in ("train", "val_1", "val_2", "test_ood")] == [True, True, True, False]
    params = ds.run_params
    assert params["data.train_pairs"] == len(real.wavs["train"]) and params["data.train_dropped_spans"] == 1
    assert params["data.val_1_clipped"] == 1 and params["data.missing_wavs.val_2"] == 0
    train = grounding.read_annotations(ds, "train")
    assert [activitynet.wav_name(m.video, m.split, m.k) for m in train] == real.wavs["train"]  # k kept past the drop
    assert train.skipped == 1 and train[1].k == 3


def test_the_corpus_is_the_960_hours_with_table_4s_subsets(real):
    ds = speech_root.open_root()
    assert sorted(p.name for p in ds.corpus_root.iterdir() if p.is_dir()) == list(speech_root.PRETRAIN_SUBSETS)
    subsets = json.loads((ds.corpus_root / "subsets.json").read_text())
    ids = {s: {p.stem for p in (real.path / "librispeech" / s).rglob("*.flac")} for s in (
        *speech_root.PRETRAIN_SUBSETS, "dev-clean")}  # fmt: skip
    assert set(subsets["10%"]) == ids["train-clean-100"]
    assert set(subsets["50%"]) == ids["train-clean-100"] | ids["train-clean-360"]
    assert set(subsets["100%"]) == set().union(*(ids[s] for s in speech_root.PRETRAIN_SUBSETS))
    assert not ids["dev-clean"] & set(subsets["100%"]) and ids["dev-clean"]  # dev-clean is there, and unused
    chapters = json.loads((ds.corpus_root / "chapters.json").read_text())
    assert all(c.startswith("train-clean-100/") for c in chapters["10%"])


def test_both_c3d_layouts_give_the_same_clips(tiny, tmp_path, monkeypatch):
    """float64 in one file or float32 per video: the same float32 features reach the methods."""
    _, synth = tiny
    clips = {}
    for layout in ("single", "per-video"):
        built = rf.root_from_synth(synth.root, tmp_path / layout, layout)
        ds = speech_root.open_root(built.path, False)
        assert ds.features_path.is_file() == (layout == "single")
        data = grounding.load(ds, tmp_path / "cache", n_clips=8, progress=False)
        clips[layout] = data.test.videos
    assert torch.equal(clips["single"], clips["per-video"])


def test_vgcls_lists_as_annotations_give_the_same_queries(tiny, tmp_path):
    """A root whose annotations/ holds VGCL's new_*_data.json (each sentence's wav named) reads as the Captions one."""
    _, synth = tiny
    queries = {}
    for form in ("captions", "vgcl"):
        built = rf.root_from_synth(synth.root, tmp_path / form, annotations=form)
        ds = speech_root.open_root(built.path, False)
        queries[form] = {s: [(m.qid, m.start, m.end, m.sentence, activitynet.wav_name(m.video, m.split, m.k))
                             for m in grounding.read_annotations(ds, s)] for s in speech_root.SPLITS}  # fmt: skip
        assert ds.annotation_path("val_2").name == {"captions": "val_2.json", "vgcl": "new_test_data.json"}[form]
        assert ds.run_params["data.train_dropped_spans"] == 1
    assert queries["vgcl"] == queries["captions"]


# -- errors before any run ----------------------------------------------------------------------------------------


def test_a_missing_root_is_one_error_before_any_run(scratch, tmp_path, capsys):
    absent = tmp_path / "nowhere"
    run = ["run", "--method", "prior", "--dataset", "activitynet-speech", *TINY]
    assert cli.main([*run, "--data-root", str(absent)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bench run: error: {absent}: no such folder (the data root). Fix: point --data-root or WSVG_DATA "
                   "to the data root"]  # fmt: skip
    shutil.rmtree(scratch.path / "librispeech" / "train-other-500")
    assert cli.main([*run, "--data-root", str(scratch.path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train-other-500" in err[0] and "openslr.org/12" in err[0]
    assert _runs() == []


def test_missing_wavs_are_refused_with_their_split_then_left_out_with_skip_missing(scratch, capsys):
    gone = [scratch.wavs["train"][0], scratch.wavs["train"][5], scratch.wavs["val_2"][2]]
    for name in gone:
        (scratch.path / "wavs" / name).unlink()
    argv = ["run", "--method", "prior", "--dataset", "activitynet-speech", *TINY]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "3 wavs of the annotations are absent (2 of train, 1 of val_2; first: " in err[0]
    assert gone[0] in err[0] and "--skip-missing" in err[0]
    assert _runs() == []
    assert cli.main([*argv, "--skip-missing"]) == 0
    (run,) = _runs(method="prior")
    params = run.data.params
    assert (params["data.missing_wavs.train"], params["data.missing_wavs.val_2"], params["data.skip_missing"]) == (
        "2", "1", "True")  # fmt: skip
    assert params["train_moments"] == str(len(scratch.wavs["train"]) - 2)
    assert run.data.metrics["test/n"] == len(scratch.wavs["val_2"]) - 1  # the left-out query is not scored


def test_a_broken_file_is_one_error_naming_bench_data_check(scratch, capsys):
    wav = scratch.path / "wavs" / scratch.wavs["val_1"][0]
    wav.write_bytes(wav.read_bytes()[:2000])  # a wav cut short: its header promises more samples than it holds
    assert cli.main(["run", "--method", "prior", "--dataset", "activitynet-speech", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "`bench data check` finds 1 error (" in err[0] and str(wav) in err[0]
    assert f"run `bench data check {scratch.path}`" in err[0]
    assert _runs() == []


# -- the content hash -------------------------------------------------------------------------------------------


def test_the_content_hash_follows_the_files_and_reads_each_checksum_once(scratch, monkeypatch):
    read: list[str] = []
    checksum = speech_root._sha256
    monkeypatch.setattr(speech_root, "_sha256", lambda path: read.append(path.name) or checksum(path))
    first = speech_root.open_root(scratch.path, False).content_hash
    n_files = len(read)
    assert n_files > len(scratch.wavs["train"])  # features, wavs, corpus, GloVe
    speech_root._OPENED.clear()
    read.clear()
    assert speech_root.open_root(scratch.path, False).content_hash == first and read == []  # cached: nothing read
    wav = scratch.path / "wavs" / scratch.wavs["val_2"][0]
    data = bytearray(wav.read_bytes())
    data[-1] ^= 1  # one sample's low bit: same size
    wav.write_bytes(bytes(data))
    os.utime(wav, ns=(time.time_ns(), time.time_ns() + 10**9))
    speech_root._OPENED.clear()
    assert speech_root.open_root(scratch.path, False).content_hash != first and read == [wav.name]
    read.clear()
    speech_root._OPENED.clear()
    changed = speech_root.open_root(scratch.path, False).content_hash
    (scratch.path / "librispeech" / "dev-clean").rename(scratch.path / "librispeech" / "dev-other")
    speech_root._OPENED.clear()
    assert speech_root.open_root(scratch.path, False).content_hash == changed  # dev subsets are never read


# -- the real splits (shared/data) --------------------------------------------------------------------------------


class _Files:
    """A dataset of the real annotation files alone, to read them as the grounding methods do."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def annotation_path(self, split: str) -> Path:
        return self.folder / f"{split}.json"


@pytest.mark.skipif(
    not (SHARED / "data" / "activitynet-speech").is_dir(), reason=f"the real annotation files are not under {SHARED}"
)
def test_the_real_splits_carry_vgcls_wav_names_and_the_papers_train_count():
    captions = _Files(SHARED / "data" / "activitynet-captions")
    train = grounding.read_annotations(captions, "train")
    assert (len(train), train.skipped) == (37_417, 4)
    for split, listing in (("val_1", "new_val_data.json"), ("val_2", "new_test_data.json")):
        ours = [activitynet.wav_name(m.video, m.split, m.k) for m in grounding.read_annotations(captions, split)]
        released = [e[4] for e in json.loads((SHARED / "data" / "activitynet-speech" / listing).read_text())]
        assert ours == released and len(ours) == {"val_1": 17_505, "val_2": 17_031}[split]


# -- every method, end to end --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", _methods())
def test_every_method_runs_on_the_real_format_root(real, method, capsys):
    start = time.perf_counter()
    code = cli.main(["run", "--method", method, "--dataset", "activitynet-speech", *TINY])
    METHOD_SECONDS[method] = time.perf_counter() - start
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    (run,) = [r for r in _runs(method=method, dataset="activitynet-speech") if r.info.status == "FINISHED"]
    ds = speech_root.open_root()
    assert run.data.params["dataset_hash"] == ds.content_hash and run.data.params["data.root"] == str(real.path)
    if method in ("asr-wav2vec2", "base+wav2vec2"):  # the root's wav2vec2/ is used, nothing is trained
        tag = run.data.params["asr.model" if method == "asr-wav2vec2" else "w2v2.encoder"]
        assert tag.startswith("ckpt-")


def test_table_1_shows_a_row_for_each_of_its_methods_as_real_data_results(real, capsys):
    assert cli.main(["table", "1", "--dataset", "activitynet-speech", "--profile", "tiny"]) == 0
    text = capsys.readouterr().out
    table = tables.load_table(1)
    rendered = tables.build(table, "activitynet-speech", "tiny")
    r1 = rendered.header.index("R@1 IoU=0.5")
    ours = {}  # label -> its 'ours' line (the line after the paper's, or the label's own for the blind rows)
    label = ""
    for line in rendered.lines:
        label = line[0] or label
        if line[6].startswith("ours"):
            ours[label] = line
    implemented = [r for r in table.rows if r.method and registry.get(r.method).implemented]
    assert len(implemented) == len([r for r in table.rows if r.method]) >= 14  # every row of Table 1 runs
    for row in implemented:
        assert ours[row.label][6] == "ours (n=1)" and float(ours[row.label][r1]) >= 0, row.label
    assert "real-data results: computed on ActivityNet Speech from a local data root" in text
    assert "profile tiny, not the paper's sizes" in text
    paper = tables.render(1, "md", "activitynet-speech", "paper")  # no runs: the caption alone says what they'd be
    assert "real-data results" in paper and "at the paper's settings (App. B.2), so that Δ compares like" in paper
    print("\nseconds per method on the real-format root:", json.dumps({k: round(v) for k, v in METHOD_SECONDS.items()}))


def test_oracle_concept_says_it_needs_synth(real):
    from bench.context import RunContext

    spec = registry.get("oracle-concept")
    ctx = RunContext(spec, spec.config("tiny"), "activitynet-speech", "tiny", 0, torch.device("cpu"), None,
                     Path("."), Path("."))  # fmt: skip
    with pytest.raises(ValueError, match="synth"):
        spec.run(ctx)
