"""Device-resident padded splits: gather and trim, batch iteration (shuffle, DDP shards), the on-disk cache."""

from __future__ import annotations

import pytest
import torch

from bench.data.errors import DataError
from bench.data.loader import BatchIterator, PaddedSplit, content_key, featurize_cached, pad_stack


def make_split(n: int = 23, seed: int = 0) -> PaddedSplit:
    g = torch.Generator().manual_seed(seed)
    items, ids = [], []
    for i in range(n):
        t_m = int(torch.randint(3, 40, (), generator=g))
        n_words = int(torch.randint(1, 9, (), generator=g))
        items.append(
            {
                "video": torch.randn(8, 5, generator=g),
                "mel": torch.randn(t_m, 4, generator=g),
                "wave": torch.randn(int(torch.randint(10, 100, (), generator=g)), generator=g),
                "words": torch.randint(1, 50, (n_words,), generator=g),
                "span": torch.tensor([float(i), float(i) + 2.5]),
                "duration": torch.tensor(10.0 + i),
            }
        )
        ids.append(f"v{i}#0")
    return PaddedSplit.from_items(ids, items, ragged=("mel", "wave", "words"), name="toy")


# --------------------------------------------------------------------------------------------- pad_stack


def test_pad_stack_values_and_lengths():
    padded, lengths = pad_stack([torch.tensor([[1, 2]]), torch.tensor([[3, 4], [5, 6], [7, 8]])])
    assert lengths.tolist() == [1, 3]
    assert padded.tolist() == [[[1, 2], [0, 0], [0, 0]], [[3, 4], [5, 6], [7, 8]]]
    with pytest.raises(ValueError, match="tensor 1"):
        pad_stack([torch.zeros(2, 3), torch.zeros(2, 4)])


def test_from_items_builds_companions_and_stacks_the_rest():
    split = make_split()
    assert len(split) == 23 and split.ids[3] == "v3#0"
    assert sorted(split.ragged) == ["mel", "wave", "words"]
    assert split["video"].shape == (23, 8, 5) and split["span"].shape == (23, 2) and split["duration"].shape == (23,)
    assert split["mel"].shape[1] == int(split["mel_len"].max())
    assert split.meta == {"name": "toy"}


def test_inconsistent_fields_are_rejected():
    with pytest.raises(ValueError, match="first dimension 2"):
        PaddedSplit({"a": torch.zeros(2, 3), "b": torch.zeros(3)}, ["x", "y"])
    with pytest.raises(ValueError, match="lengths outside"):
        PaddedSplit({"a": torch.zeros(2, 3), "a_len": torch.tensor([1, 4])}, ["x", "y"])


# --------------------------------------------------------------------------------------------- gather


def test_gather_equals_manual_indexing_and_trims_to_the_batch_max():
    split = make_split()
    short = [i for i in range(len(split)) if all(split[f + "_len"][i] < split[f].shape[1] for f in split.ragged)]
    idx = torch.tensor([short[2], short[0], short[-1], short[2]])  # none of them the longest; one repeated
    batch = split.gather(idx)
    assert set(batch) == set(split.tensors)
    for name in ("video", "span", "duration", "mel_len", "wave_len", "words_len"):
        assert torch.equal(batch[name], split[name][idx]), name
    for name in ("mel", "wave", "words"):
        width = int(split[name + "_len"][idx].max())
        assert batch[name].shape[1] == width, name
        assert width < split[name].shape[1], name  # these rows are not the global longest
        assert torch.equal(batch[name], split[name][idx][:, :width]), name
        for row, i in enumerate(idx.tolist()):  # the real part of each row is the query's own data
            n = int(split[name + "_len"][i])
            assert torch.equal(batch[name][row, :n], split[name][i, :n])
            assert torch.all(batch[name][row, n:] == 0)


def test_gather_of_the_longest_row_keeps_the_full_width_and_empty_gather_works():
    split = make_split()
    longest = int(split["mel_len"].argmax())
    assert split.gather(torch.tensor([longest]))["mel"].shape[1] == split["mel"].shape[1]
    empty = split.gather(torch.tensor([], dtype=torch.long))
    assert empty["mel"].shape == (0, 0, 4) and empty["video"].shape == (0, 8, 5)


def test_to_cpu_round_trip():
    split = make_split()
    back = split.to("cpu")
    assert back.ids == split.ids and back.meta == split.meta
    assert all(torch.equal(back[k], split[k]) for k in split.tensors)
    assert back.device == torch.device("cpu")
    assert back.fingerprint() == split.fingerprint()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_round_trip_and_gather_on_device():
    split = make_split()
    on_gpu = split.to("cuda")
    assert on_gpu.device.type == "cuda"
    idx = torch.tensor([3, 1, 4])
    batch = on_gpu.gather(idx)
    assert batch["mel"].device.type == "cuda"
    assert all(torch.equal(batch[k].cpu(), split.gather(idx)[k]) for k in batch)
    back = on_gpu.to("cpu")
    assert all(torch.equal(back[k], split[k]) for k in split.tensors)


# --------------------------------------------------------------------------------------------- batches


def epoch(it: BatchIterator) -> list[int]:
    return [i for batch in it for i in batch["index"].tolist()]


@pytest.mark.parametrize(("batch_size", "drop_last"), [(4, False), (5, False), (23, False), (4, True), (50, False)])
def test_every_index_once_per_epoch(batch_size, drop_last):
    split = make_split()
    it = BatchIterator(split, batch_size, shuffle=True, generator=torch.Generator().manual_seed(0), drop_last=drop_last)
    for _ in range(3):
        seen = epoch(it)
        if drop_last:
            assert len(seen) == 23 // batch_size * batch_size and len(set(seen)) == len(seen)
        else:
            assert sorted(seen) == list(range(23))
    assert len(it) == len(list(it))


def test_batches_carry_the_rows_they_name():
    split = make_split()
    for batch in BatchIterator(split, 6, shuffle=True, generator=torch.Generator().manual_seed(1)):
        assert torch.equal(batch["span"], split["span"][batch["index"]])
        assert torch.equal(batch["mel"], split.gather(batch["index"])["mel"])


def test_no_shuffle_is_in_order():
    assert epoch(BatchIterator(make_split(), 4)) == list(range(23))


def test_shuffle_is_reproducible_with_the_same_seed_and_changes_across_epochs():
    split = make_split()
    a = BatchIterator(split, 4, shuffle=True, generator=torch.Generator().manual_seed(42))
    b = BatchIterator(split, 4, shuffle=True, generator=torch.Generator().manual_seed(42))
    c = BatchIterator(split, 4, shuffle=True, generator=torch.Generator().manual_seed(43))
    a1, a2 = epoch(a), epoch(a)
    assert (a1, a2) == (epoch(b), epoch(b))
    assert a1 != a2  # the generator advances: a new order each epoch
    assert epoch(c) != a1
    assert a1 != list(range(23))


def test_shuffle_needs_a_generator():
    with pytest.raises(ValueError, match="Generator"):
        BatchIterator(make_split(), 4, shuffle=True)


@pytest.mark.parametrize("n", [24, 23])
def test_ddp_shards_are_disjoint_and_cover_everything(n):
    split = make_split(n)
    shards = []
    for rank in range(2):
        it = BatchIterator(split, 5, shuffle=True, generator=torch.Generator().manual_seed(9), rank=rank, world_size=2)
        shards.append(epoch(it))
        assert len(it) == 3
    assert len(shards[0]) == len(shards[1]) == 12  # equal step counts on every rank
    assert set(shards[0]) | set(shards[1]) == set(range(n))
    overlap = set(shards[0]) & set(shards[1])
    if n % 2 == 0:
        assert not overlap
    else:  # one query repeated to even the shards out, like DistributedSampler
        assert len(overlap) == 1 and len(shards[0]) + len(shards[1]) == n + 1


def test_ddp_shards_follow_the_single_process_permutation():
    split = make_split(24)
    whole = BatchIterator(split, 24, shuffle=True, generator=torch.Generator().manual_seed(5)).epoch_indices()
    for rank in range(3):
        it = BatchIterator(split, 4, shuffle=True, generator=torch.Generator().manual_seed(5), rank=rank, world_size=3)
        assert epoch(it) == whole[rank::3].tolist()


def test_ddp_drop_last_truncates():
    split = make_split(23)
    shards = [
        epoch(BatchIterator(split, 100, rank=r, world_size=2, drop_last=True))  # one short batch each: dropped
        for r in range(2)
    ]
    assert shards == [[], []]
    shards = [epoch(BatchIterator(split, 1, rank=r, world_size=2, drop_last=True)) for r in range(2)]
    assert shards == [list(range(0, 22, 2)), list(range(1, 22, 2))]


# --------------------------------------------------------------------------------------------- cache


def test_featurize_cached_builds_once_and_reloads_equal_tensors(tmp_path):
    calls = []

    def build() -> PaddedSplit:
        calls.append(1)
        return make_split()

    key = content_key("toy", {"n_mels": 4}, 1)
    first = featurize_cached(key, tmp_path, build)
    second = featurize_cached(key, tmp_path, build)
    assert len(calls) == 1
    assert second.ids == first.ids and second.meta == first.meta
    assert all(torch.equal(second[k], first[k]) for k in first.tensors)
    assert second.fingerprint() == first.fingerprint()
    assert [p.name for p in tmp_path.iterdir() if p.name != ".locks"] == [f"{key}.pt"]  # no temporary file left
    featurize_cached(content_key("toy", {"n_mels": 8}, 1), tmp_path, build)
    assert len(calls) == 2  # a different key is a different cache entry


def test_content_key_is_stable_and_sensitive():
    assert content_key("a", {"x": 1, "y": 2}) == content_key("a", {"y": 2, "x": 1})
    assert content_key("a", {"x": 1}) != content_key("a", {"x": 2})
    assert len(content_key("a")) == 16


@pytest.mark.parametrize("junk", [b"", b"not a torch file at all", b"PK\x03\x04 truncated zip"])
def test_corrupt_cache_raises_data_error_naming_the_file(tmp_path, junk):
    path = tmp_path / "abc123.pt"
    path.write_bytes(junk)
    with pytest.raises(DataError, match="delete") as info:
        PaddedSplit.load(path, key="abc123")
    assert str(path) in info.value.where and str(path) in info.value.fix


def test_truncated_cache_file_raises_data_error_and_is_rebuilt(tmp_path, capsys):
    featurize_cached("k1", tmp_path, make_split)
    path = tmp_path / "k1.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="corrupt"):
        PaddedSplit.load(path, key="k1")
    assert featurize_cached("k1", tmp_path, make_split).fingerprint() == make_split().fingerprint()
    assert f"{path}: cache file is corrupt" in capsys.readouterr().err


def test_wrong_payload_or_key_raises_data_error_and_is_rebuilt(tmp_path):
    torch.save({"something": "else"}, tmp_path / "k2.pt")
    with pytest.raises(DataError, match="not a padded-split cache"):
        PaddedSplit.load(tmp_path / "k2.pt", key="k2")
    make_split().save(tmp_path / "k3.pt", key="other")
    with pytest.raises(DataError, match="key"):
        PaddedSplit.load(tmp_path / "k3.pt", key="k3")
    for key in ("k2", "k3"):
        assert featurize_cached(key, tmp_path, make_split).fingerprint() == make_split().fingerprint()
        PaddedSplit.load(tmp_path / f"{key}.pt", key=key)  # rewritten whole


def test_build_must_return_a_split(tmp_path):
    with pytest.raises(TypeError, match="PaddedSplit"):
        featurize_cached("k4", tmp_path, lambda: {"video": torch.zeros(1)})
    assert not (tmp_path / "k4.pt").exists()


def test_clip_features_are_standardised_with_the_train_splits_statistics():
    """Per dimension over train's clips: dim 0 holds 1, 3 (mean 2, sample std sqrt 2), dim 1 is constant 5 (only
    centred); val is scaled with train's numbers, never its own."""
    import math

    from bench.data import grounding

    def split(name: str, videos: list) -> grounding.GroundingSplit:
        return grounding.GroundingSplit(name, PaddedSplit({"video_idx": torch.zeros(1)}, ["q"]), torch.tensor(videos))

    train = split("train", [[[1.0, 5.0], [3.0, 5.0]]])
    val = split("val", [[[2.0, 7.0], [6.0, 5.0]]])
    data = grounding.GroundingData("toy", "h", 2, train, val, val, [], torch.zeros(1, 1))
    out = grounding.standardize(data)
    r2 = math.sqrt(2.0)
    assert out.train.videos[0].flatten().tolist() == pytest.approx([-1 / r2, 0.0, 1 / r2, 0.0])
    assert out.val.videos[0].flatten().tolist() == pytest.approx([0.0, 2.0, 4 / r2, 0.0])
    assert data.train.videos[0, 0, 0] == 1.0  # the input is left as it was
