"""A split kept on disk (``bench.data.ondisk``) gives the batches the in-memory split gives, checks its files, and
the corpus goes there when it is too large for memory (or when asked)."""

from __future__ import annotations

import pytest
import torch

from bench.data import corpus, loader, ondisk
from bench.data.errors import DataError


def _items() -> tuple[list[str], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    ids = ["a", "b", "c", "d", "e"]
    items = [
        {"wave": torch.randn(n, generator=g), "mel": torch.randn(m, 3, generator=g),
         "words": torch.arange(1, w + 1), "span": torch.tensor([0.5 * i, i + 1.0])}
        for i, (n, m, w) in enumerate([(3, 2, 1), (7, 4, 3), (1, 3, 2), (5, 1, 4), (2, 2, 2)])
    ]  # fmt: skip
    return ids, items


RAGGED = ("wave", "mel", "words")


@pytest.fixture
def pair(tmp_path) -> tuple[loader.PaddedSplit, ondisk.DiskSplit]:
    ids, items = _items()
    memory = loader.PaddedSplit.from_items(ids, items, ragged=RAGGED)
    ondisk.write(tmp_path / "s.disk", "k", ids, iter(items), RAGGED, ("wave", "mel"))
    return memory, ondisk.load(tmp_path / "s.disk", "k")


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_a_disk_split_gathers_what_the_padded_split_gathers(pair):
    memory, disk = pair
    assert len(disk) == 5 and disk.ids == memory.ids and set(disk.ragged) == set(RAGGED)
    for idx in ([2, 0, 3], [1], [4, 4, 0, 1, 2, 3]):
        _same(memory.gather(torch.tensor(idx)), disk.gather(torch.tensor(idx)))
    assert torch.equal(disk["words"], memory["words"]) and "wave" in disk and "nothing" not in disk
    with pytest.raises(KeyError, match="on disk .*read it by batch"):
        disk["wave"]
    # a selection is a view of the same files, rows in the selected order, as PaddedSplit.select gives them
    rows = torch.tensor([3, 1, 4])
    sub_m, sub_d = memory.select(rows), disk.select(rows)
    assert sub_d.ids == sub_m.ids == ["d", "b", "e"]
    _same(sub_m.gather(torch.tensor([2, 0])), sub_d.gather(torch.tensor([2, 0])))
    _same(sub_m.select(torch.tensor([1])).gather(torch.tensor([0])),
          sub_d.select(torch.tensor([1])).gather(torch.tensor([0])))  # fmt: skip
    # the shuffled epochs of the loop's iterator: the same batches from the same generator
    it_m = loader.BatchIterator(memory, 2, shuffle=True, generator=torch.Generator().manual_seed(3))
    it_d = loader.BatchIterator(disk, 2, shuffle=True, generator=torch.Generator().manual_seed(3))
    for _ in range(2):
        for bm, bd in zip(it_m, it_d, strict=True):
            _same(bm, bd)


def test_a_disk_split_whose_files_do_not_check_out_is_named_and_rebuilt(tmp_path, capsys):
    ids, items = _items()
    directory = tmp_path / "corpus-k.disk"
    ondisk.write(directory, "corpus-k", ids, iter(items), RAGGED, ("wave", "mel"))
    wave = directory / "wave.f32"
    raw = bytearray(wave.read_bytes())
    raw[5] ^= 0xFF
    wave.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="does not match the hash"):
        ondisk.load(directory, "corpus-k")
    wave.write_bytes(bytes(raw[:-4]))
    with pytest.raises(DataError, match="cut short or replaced"):
        ondisk.load(directory, "corpus-k")
    with pytest.raises(DataError, match="of key 'other'"):
        ondisk.load(directory, "other")
    built = []

    def again():
        built.append(1)
        return ids, iter(items)

    split = ondisk.disk_cached("corpus-k", tmp_path, again, RAGGED, ("wave", "mel"))
    assert built == [1] and "wave.f32" in capsys.readouterr().err
    memory = loader.PaddedSplit.from_items(ids, items, ragged=RAGGED)
    _same(split.gather(torch.arange(5)), memory.gather(torch.arange(5)))
    assert ondisk.disk_cached("corpus-k", tmp_path, again, RAGGED, ("wave", "mel")).ids == ids and built == [1]
    assert not list(tmp_path.glob(".*tmp"))  # no temporary directory left behind


def test_the_storage_is_what_the_environment_says_else_chosen_by_size(monkeypatch):
    asked = []

    def size() -> int:
        asked.append(1)
        return ondisk.MEMORY_LIMIT_BYTES + 1

    monkeypatch.delenv(ondisk.STORAGE_ENV, raising=False)
    assert ondisk.choose_storage(size) == "disk" and ondisk.choose_storage(lambda: 10) == "memory"
    assert ondisk.choose_storage(size, cached="memory") == "memory" and len(asked) == 1  # a built cache is kept
    assert ondisk.choose_storage(lambda: 10, cached="disk") == "disk"
    monkeypatch.setenv(ondisk.STORAGE_ENV, "memory")
    assert ondisk.choose_storage(size, cached="disk") == "memory" and len(asked) == 1  # not measured when the user says
    monkeypatch.setenv(ondisk.STORAGE_ENV, "Disk")
    assert ondisk.choose_storage(lambda: 10) == "disk"
    monkeypatch.setenv(ondisk.STORAGE_ENV, "ssd")
    with pytest.raises(ValueError, match="WSVG_CORPUS_STORAGE='ssd'"):
        ondisk.choose_storage(size)


def test_the_tiny_corpus_gives_the_same_pre_training_splits_from_disk(tiny, monkeypatch, tmp_path):
    from methods import sil

    _, data = tiny
    splits = {}
    for storage in ("memory", "disk"):
        monkeypatch.setenv(ondisk.STORAGE_ENV, storage)
        full, vocab, vectors = corpus.load_corpus(data, tmp_path / storage, "100%", None, progress=False)
        assert isinstance(full, ondisk.DiskSplit) == (storage == "disk")
        splits[storage] = (full, vocab, vectors, sil.corpus_splits(data, tmp_path / storage, "100%", 20, 0.1, 0, "cpu"))
    (fm, vm, tm, cm), (fd, vd, td, cd) = splits["memory"], splits["disk"]
    assert fd.ids == fm.ids and vd == vm and torch.equal(td, tm)
    _same(fm.gather(torch.arange(len(fm))), fd.gather(torch.arange(len(fd))))
    assert cd.dropped == cm.dropped and cd.train.ids == cm.train.ids and cd.held.ids == cm.held.ids
    for a, b in ((cm.train, cd.train), (cm.held, cd.held)):
        it_a = loader.BatchIterator(a, 4, shuffle=True, generator=torch.Generator().manual_seed(1))
        it_b = loader.BatchIterator(b, 4, shuffle=True, generator=torch.Generator().manual_seed(1))
        for ba, bb in zip(it_a, it_b, strict=True):
            _same(ba, bb)
    assert corpus.padded_bytes([]) == 0
    monkeypatch.delenv(ondisk.STORAGE_ENV)  # auto: each cache is opened in the storage it was built in, and the
    monkeypatch.setattr(corpus, "padded_bytes", lambda paths: 1 / 0)  # headers are not read to estimate the size
    for storage in ("memory", "disk"):
        again, _, _ = corpus.load_corpus(data, tmp_path / storage, "100%", None, progress=False)
        assert isinstance(again, ondisk.DiskSplit) == (storage == "disk") and again.ids == fm.ids
