"""Faults while writing a file that a later run reads: a checkpoint, a cached split, a stage, the synthetic benchmark.

Each is tested the same three ways: a crash in the middle of the write (the write is made to put part of its bytes
down and then raise, as a killed process would stop), a full disk (``OSError(ENOSPC)`` from the write: one line
naming the file and the fix), and, for the caches, a file damaged afterwards (bytes flipped: detected and rebuilt,
never used). No test here fills a real disk.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bench import atomic, cli, stages, tracking, train
from bench import context as spec_store
from bench.config import TrainConfig
from bench.data import loader, synth
from bench.data.loader import PaddedSplit

REAL_SAVE = torch.save


class Killed(BaseException):
    """The process stops here, as under SIGKILL: no ``except Exception`` of the code under test catches it."""


def _partial_write(error: BaseException, after: int = 0):
    """A stand-in ``torch.save`` that writes its first bytes (and ``after`` more whole calls) and then raises."""
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs) -> None:
        calls["n"] += 1
        if calls["n"] <= after:
            REAL_SAVE(obj, f, *args, **kwargs)
            return
        if isinstance(f, str | Path):
            Path(f).write_bytes(b"PK\x03\x04half a file")
        else:
            f.write(b"PK\x03\x04half a file")
        raise error

    return save


def _raise(err: BaseException) -> None:
    raise err


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or ".building-" in p.name)


def _one_line_naming(message: str, path: Path) -> None:
    assert "\n" not in message and str(path) in message
    assert "no space left" in message and "Fix: free space" in message and "WSVG_HOME" in message


# ------------------------------------------------------------------------------------------------ checkpoints


def _toy_fit(workdir: Path, epochs: int = 3) -> train.FitResult:
    """The real training loop on a one-weight model: a checkpoint after each epoch, as every method has."""
    torch.manual_seed(0)
    model = nn.Linear(1, 1, bias=False)
    x = torch.ones(4, 1)

    def score(path: Path | None = None) -> dict[str, float]:
        return {"R1@0.5": float(model(x[:1])), "mIoU": 0.0}

    task = train.Task(model, lambda b: ((model(b["x"]) - 0.5).pow(2).mean(), {}), lambda g, s: iter([{"x": x}]), 1,
                      score, score)  # fmt: skip
    ctx = SimpleNamespace(seed=0, device=torch.device("cpu"), log=tracking.RunLogger(None, None), workdir=workdir)
    return train.fit(task, TrainConfig(epochs=epochs, batch_size=4, lr=0.1, warmup_updates=0), ctx)


def test_a_kill_during_a_checkpoint_write_keeps_the_last_whole_one_and_the_resume_matches(tmp_path, monkeypatch):
    whole = _toy_fit(tmp_path / "whole")
    monkeypatch.setattr(torch, "save", _partial_write(Killed(), after=1))  # epoch 1 saved, epoch 2 dies mid-write
    with pytest.raises(Killed):
        _toy_fit(tmp_path / "killed")
    monkeypatch.undo()
    assert train.load_checkpoint(tmp_path / "killed" / train.CHECKPOINT)["epoch"] == 1
    assert _leftovers(tmp_path / "killed") == []
    resumed = _toy_fit(tmp_path / "killed")
    assert resumed.resumed_from == 1
    assert resumed.test == whole.test and resumed.val_best == whole.val_best


def test_a_full_disk_during_a_checkpoint_write_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _partial_write(OSError(errno.ENOSPC, "No space left on device"), after=1))
    with pytest.raises(atomic.DiskFull) as info:
        _toy_fit(tmp_path)
    _one_line_naming(str(info.value), tmp_path / train.CHECKPOINT)
    monkeypatch.undo()
    assert train.load_checkpoint(tmp_path / train.CHECKPOINT)["epoch"] == 1  # the previous one, whole
    assert _leftovers(tmp_path) == []


def test_a_full_disk_stops_bench_run_with_one_line(home, toy_method, monkeypatch, capsys):
    def run_out_of_space(ctx):
        raise atomic.DiskFull(ctx.workdir / train.CHECKPOINT)

    monkeypatch.setattr(spec_store, "_REGISTRY", {"base": dataclasses.replace(toy_method, run=run_out_of_space)})
    assert cli.main(["run", "--method", "base", "--profile", "tiny", "--seeds", "0,1", "--device", "cpu"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "%|" not in line]  # no bar
    assert len(err) == 1 and err[0].startswith("bench run: error: ") and "no space left" in err[0]
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri())
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert [r.info.status for r in runs] == ["FAILED"]  # seed 1 was not started to fail the same way


# ------------------------------------------------------------------------------------------------ cached splits


def _split() -> PaddedSplit:
    return PaddedSplit({"x": torch.arange(64, dtype=torch.float32).reshape(4, 16) + 1000.0}, ["a", "b", "c", "d"])


def _counting_build():
    calls = []

    def build() -> PaddedSplit:
        calls.append(1)
        return _split()

    return build, calls


def _cache_files(folder: Path) -> list[Path]:
    """What a cache folder holds besides its builders' lock files (``.locks/<key>.lock``, empty, kept)."""
    locks = folder / ".locks"
    assert not locks.exists() or all(p.suffix == ".lock" and p.stat().st_size == 0 for p in locks.iterdir())
    return [p for p in folder.iterdir() if p != locks]


def test_a_kill_during_a_cache_write_leaves_nothing_and_the_next_run_builds(tmp_path, monkeypatch):
    build, calls = _counting_build()
    monkeypatch.setattr(torch, "save", _partial_write(Killed()))
    with pytest.raises(Killed):
        loader.featurize_cached("k", tmp_path, build)
    monkeypatch.undo()
    assert _cache_files(tmp_path) == []
    assert torch.equal(loader.featurize_cached("k", tmp_path, build)["x"], _split()["x"]) and len(calls) == 2
    loader.featurize_cached("k", tmp_path, build)
    assert len(calls) == 2  # now cached


def test_a_flipped_byte_in_a_cached_split_is_detected_and_rebuilt(tmp_path, capsys):
    build, calls = _counting_build()
    loader.featurize_cached("k", tmp_path, build)
    path = tmp_path / "k.pt"
    data = bytearray(path.read_bytes())
    where = data.find(torch.tensor([1010.0]).numpy().tobytes())  # inside the tensor's stored bytes
    assert where > 0
    data[where + 3] ^= 0x01  # 1010.0 becomes another float: the file still unpickles without complaint
    path.write_bytes(bytes(data))
    again = loader.featurize_cached("k", tmp_path, build)
    assert len(calls) == 2 and torch.equal(again["x"], _split()["x"])
    assert f"{path}: cache file is corrupt" in capsys.readouterr().err
    loader.featurize_cached("k", tmp_path, build)
    assert len(calls) == 2  # the rebuilt file is whole


@pytest.mark.parametrize("junk", [b"", b"not a torch file at all", b"PK\x03\x04 truncated zip"])
def test_an_unreadable_cache_file_is_rebuilt(tmp_path, junk, capsys):
    build, calls = _counting_build()
    (tmp_path / "k.pt").write_bytes(junk)
    assert torch.equal(loader.featurize_cached("k", tmp_path, build)["x"], _split()["x"]) and len(calls) == 1
    assert str(tmp_path / "k.pt") in capsys.readouterr().err


def test_a_full_disk_during_a_cache_write_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _partial_write(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(atomic.DiskFull) as info:
        loader.featurize_cached("k", tmp_path, _split)
    _one_line_naming(str(info.value), tmp_path / "k.pt")
    assert _cache_files(tmp_path) == []


# ------------------------------------------------------------------------------------------------ stages


def _stage_build(calls: list, fail: BaseException | None = None):
    def build(sctx: stages.StageContext) -> dict:
        calls.append(1)
        (sctx.out / "model.pt").write_bytes(b"weights" * (100 if fail is None else 3))
        if fail is not None:
            raise fail
        return {"selected_epoch": 1}

    return build


def _run_stage(st: stages.Stage, build) -> dict:
    log = tracking.RunLogger(None, None)
    return stages.run_stage(st, build, config={"w": 1}, inputs={"d": "x"}, device="cpu", seed=0, log=log)


def test_a_kill_during_a_stage_build_leaves_it_undone_and_the_next_run_builds_it(home):
    st = stages.stage(home / "cache", "toy", {"w": 1}, {"d": "x"})
    calls: list = []
    with pytest.raises(Killed):
        _run_stage(st, _stage_build(calls, Killed()))
    assert not st.done
    _run_stage(st, _stage_build(calls))
    assert len(calls) == 2 and st.done and st.file("model.pt").read_bytes() == b"weights" * 100


def test_a_kill_during_the_stage_record_write_leaves_it_undone(home, monkeypatch):
    st = stages.stage(home / "cache", "toy", {"w": 1}, {"d": "x"})
    calls: list = []

    def die_mid_write(path, write) -> None:
        real_write(path, lambda fh: (fh.write(b'{"half": '), _raise(Killed())))

    real_write = atomic.write_atomic
    monkeypatch.setattr(atomic, "write_atomic", die_mid_write)
    with pytest.raises(Killed):
        _run_stage(st, _stage_build(calls))
    monkeypatch.undo()
    assert not st.done and _leftovers(st.path) == []
    _run_stage(st, _stage_build(calls))
    assert len(calls) == 2 and json.loads(st.record_path.read_text())["summary"] == {"selected_epoch": 1}


def test_a_damaged_stage_file_is_detected_by_its_hash_and_the_stage_rebuilt(home, capsys):
    st = stages.stage(home / "cache", "toy", {"w": 1}, {"d": "x"})
    calls: list = []
    _run_stage(st, _stage_build(calls))
    data = bytearray(st.file("model.pt").read_bytes())
    data[10] ^= 0xFF
    st.file("model.pt").write_bytes(bytes(data))
    _run_stage(st, _stage_build(calls))
    assert len(calls) == 2 and st.file("model.pt").read_bytes() == b"weights" * 100
    assert "model.pt does not match the hash" in capsys.readouterr().err
    _run_stage(st, _stage_build(calls))
    assert len(calls) == 2  # whole again: used as it is


def test_a_full_disk_during_the_stage_record_write_is_one_line_naming_it(home, monkeypatch):
    st = stages.stage(home / "cache", "toy", {"w": 1}, {"d": "x"})

    def full(path, write) -> None:
        real_write(path, lambda fh: _raise(OSError(errno.ENOSPC, "No space left on device")))

    real_write = atomic.write_atomic
    monkeypatch.setattr(atomic, "write_atomic", full)
    with pytest.raises(atomic.DiskFull) as info:
        _run_stage(st, _stage_build([]))
    _one_line_naming(str(info.value), st.record_path)
    assert not st.done


# ------------------------------------------------------------------------------------------------ bench data synth

MICRO = synth.SynthConfig(videos=(2, 1, 1), corpus_utterances=3, ood_videos=1)


def test_a_kill_during_bench_data_synth_leaves_nothing_that_a_later_build_reads(home, monkeypatch):
    real = synth._write_corpus

    def die_mid_corpus(root: Path, cfg, progress) -> None:
        (root / "corpus").mkdir()
        (root / "corpus" / "subsets.json").write_text('{"10%": [')
        raise Killed

    monkeypatch.setattr(synth, "_write_corpus", die_mid_corpus)
    with pytest.raises(Killed):
        synth.build("tiny", MICRO, progress=False)
    root = synth.root_for("tiny", MICRO)
    assert not root.exists() and _leftovers(root.parent) == []
    abandoned = root.with_name(root.name + ".building-999999999")  # what a SIGKILL leaves: no process has this pid
    (abandoned / "annotations").mkdir(parents=True)
    monkeypatch.setattr(synth, "_write_corpus", real)
    assert synth.build("tiny", MICRO, progress=False) == root
    assert not abandoned.exists() and _leftovers(root.parent) == []
    meta = json.loads((root / "meta.json").read_text())
    assert meta["content_hash"] == synth.content_hash(root)
    assert json.loads((root / "corpus" / "subsets.json").read_text())["100%"]


def test_a_full_disk_during_bench_data_synth_is_one_line_naming_it(home, monkeypatch, capsys):
    def full(*args) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(synth, "_write_features", full)
    assert cli.main(["data", "synth", "--profile", "tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    root = synth.root_for("tiny")
    assert len(err) == 1
    _one_line_naming(err[0], root.with_name(root.name + ".building-"))
    assert not root.exists() and _leftovers(root.parent) == []


def test_two_builds_of_one_benchmark_at_once_generate_it_once(home, monkeypatch):
    calls = []

    def slow_generate(tmp: Path, profile, cfg, progress) -> None:
        calls.append(1)
        time.sleep(0.5)
        (tmp / "meta.json").write_text("{}")

    monkeypatch.setattr(synth, "_generate", slow_generate)
    roots: list[Path] = []
    threads = [threading.Thread(target=lambda: roots.append(synth.build("tiny", MICRO))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and roots == [synth.root_for("tiny", MICRO)] * 2
