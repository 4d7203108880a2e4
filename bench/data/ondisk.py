"""A split too large for memory: its long ragged fields memory-mapped on disk, read by batch.

The shared loaders hold a split as padded tensors on the run's device (:mod:`bench.data.loader`). That suits the
grounding splits and synth's corpus; it does not suit LibriSpeech's 960 h, which SIL's, LUT's and VILT's
pre-training read: the 4 kHz wave and the log-mel of 281,241 utterances are about 110 GB before padding, and padded to
the longest utterance (35 s against a mean of 12 s) about three times that. A :class:`DiskSplit` keeps the same
contract as :class:`~bench.data.loader.PaddedSplit` where the pre-training stages use it (``len``, ``ids``,
``split["words"]``, :meth:`~DiskSplit.select`, :meth:`~DiskSplit.gather`, :class:`~bench.data.loader.BatchIterator`),
with its heavy fields (``wave``, ``mel``) written once, row after row, into one flat file each and read back through
``numpy.memmap``: a batch reads only its own rows and pads them to its own longest, so memory stays at one batch
whatever the corpus. Every other field (``words`` and the lengths) stays in memory as a ``PaddedSplit``.

Layout of ``<cache>/<key>.disk/``: ``small.pt`` (the in-memory fields, a ``PaddedSplit`` file with its own hash),
``<field>.f32`` (float32 rows of the field, concatenated in row order; the row lengths are ``<field>_len`` of
``small.pt``) and ``index.json`` (format, version, key, each field's trailing shape and SHA-256). The directory is
written under a temporary name and renamed into place, so a reader never sees half of it; on load, every file's size
and SHA-256 are checked (about a second per GB) and a directory that does not check out is named on stderr and
built again, never used.

:func:`disk_cached` is :func:`~bench.data.loader.featurize_cached` for such splits; :func:`choose_storage` decides
between the two for the corpus (``$WSVG_CORPUS_STORAGE``: ``memory``, ``disk``, or ``auto``, the default: disk when
the padded tensors would pass :data:`MEMORY_LIMIT_BYTES`). Where a split is kept does not change its content: the
batches are the same tensors either way (tested), and no cache or stage key depends on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bench import rng
from bench.data.errors import DataError
from bench.data.loader import LEN_SUFFIX, PaddedSplit, cache_file

FORMAT = "wsvg-disk-split"
VERSION = 1
STORAGE_ENV = "WSVG_CORPUS_STORAGE"
STORAGES = ("auto", "memory", "disk")
MEMORY_LIMIT_BYTES = 8 * 2**30
"""``auto`` keeps a split in memory up to 8 GiB of padded tensors (synth's corpora: tens of MB), on disk beyond."""
_BLOCK = 1 << 24  # bytes hashed at a time


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class DiskSplit:
    """Rows of a split whose ``disk`` fields are read from memory-mapped files (module docstring).

    ``small`` holds every other field, one row per row of this split, on the split's device; ``rows[i]`` is the
    stored row behind row ``i`` (a :meth:`select` of a split is a view of the same files).
    """

    small: PaddedSplit
    directory: Path
    trailing: dict[str, tuple[int, ...]]  # disk field -> the shape of one time step ((), or (80,) for the log-mel)
    offsets: dict[str, np.ndarray]  # disk field -> [stored rows + 1] start of each stored row, in time steps
    rows: np.ndarray  # [len(self)] int64: stored row of each row

    def __post_init__(self) -> None:
        self._maps: dict[str, np.memmap] = {}

    # -- the PaddedSplit contract --------------------------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        return self.small.ids

    def __len__(self) -> int:
        return len(self.small)

    def __getitem__(self, name: str) -> Tensor:
        if name in self.trailing:
            raise KeyError(f"field {name!r} of this split is on disk ({self.directory}); read it by batch (gather)")
        return self.small[name]

    def __contains__(self, name: object) -> bool:
        return name in self.trailing or name in self.small

    @property
    def ragged(self) -> list[str]:
        return [*self.small.ragged, *self.trailing]

    @property
    def device(self) -> torch.device:
        return self.small.device

    def nbytes(self) -> int:
        """Bytes held in memory (the disk fields are not)."""
        return self.small.nbytes()

    def to(self, device: str | torch.device, non_blocking: bool = False) -> DiskSplit:
        return DiskSplit(self.small.to(device, non_blocking), self.directory, self.trailing, self.offsets, self.rows)

    def select(self, rows: Tensor) -> DiskSplit:
        """Rows ``rows`` of this split, in that order (a view of the same files)."""
        picked = rows.detach().cpu().long()
        return DiskSplit(self.small.select(rows), self.directory, self.trailing, self.offsets,
                         self.rows[picked.numpy()])  # fmt: skip

    def _map(self, name: str) -> np.memmap:
        if name not in self._maps:  # opened on first use, so that a forked DDP rank opens its own
            flat = np.memmap(self.directory / f"{name}.f32", dtype=np.float32, mode="r")
            self._maps[name] = flat.reshape(-1, *self.trailing[name])
        return self._maps[name]

    def gather(self, idx: Tensor) -> dict[str, Tensor]:
        """Rows ``idx`` as :meth:`PaddedSplit.gather` gives them: every ragged field cut to the batch's longest row,
        the disk fields read from their files and padded with zeros."""
        out = self.small.gather(idx)
        stored = self.rows[idx.detach().cpu().long().numpy()]
        for name, trailing in self.trailing.items():
            start, stop = self.offsets[name][stored], self.offsets[name][stored + 1]
            lengths = stop - start
            batch = np.zeros((len(stored), int(lengths.max(initial=0)), *trailing), dtype=np.float32)
            data = self._map(name)
            for j, (a, b) in enumerate(zip(start.tolist(), stop.tolist(), strict=True)):
                batch[j, : b - a] = data[a:b]  # the only read of these rows: the page cache does the rest
            out[name] = torch.from_numpy(batch).to(self.device)
        return out


def write(directory: Path, key: str, ids: Sequence[str], items: Iterable[dict[str, Tensor]], ragged: Sequence[str],
          disk: Sequence[str], **meta: Any) -> None:  # fmt: skip
    """Stream ``items`` (one dict per id, in order) into ``directory``: the ``disk`` fields row after row into their
    files, every other field kept (``ragged`` ones padded) for ``small.pt``; written under a temporary name, then
    renamed, so that ``directory`` is either absent or whole."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    handles = {name: (tmp / f"{name}.f32").open("wb") for name in disk}
    try:
        digests = {name: hashlib.sha256() for name in disk}
        trailing: dict[str, tuple[int, ...]] = {}
        kept: list[dict[str, Tensor]] = []
        for item in items:
            small = {k: v for k, v in item.items() if k not in handles}
            for name, fh in handles.items():
                value = torch.as_tensor(item[name], dtype=torch.float32).contiguous()
                shape = tuple(value.shape[1:])
                if trailing.setdefault(name, shape) != shape:
                    raise ValueError(f"field {name!r}: a row of shape {tuple(value.shape)}, others [T, {shape}]")
                raw = value.numpy().tobytes()
                fh.write(raw)
                digests[name].update(raw)
                small[name + LEN_SUFFIX] = torch.tensor(value.shape[0])
            kept.append(small)
        for fh in handles.values():
            fh.flush()
            os.fsync(fh.fileno())
        split = PaddedSplit.from_items(ids, kept, ragged=[r for r in ragged if r not in handles], **meta)
        split.save(tmp / "small.pt", key=key)
        index = {
            "format": FORMAT,
            "version": VERSION,
            "key": key,
            "fields": {n: {"trailing": list(trailing[n]), "sha256": digests[n].hexdigest()} for n in disk},
        }
        (tmp / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))  # fmt: skip
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(tmp, directory)
    finally:
        for fh in handles.values():
            fh.close()
        shutil.rmtree(tmp, ignore_errors=True)


def load(directory: Path, key: str, device: str | torch.device = "cpu") -> DiskSplit:
    """Open a directory :func:`write` made; anything missing, of another key or version, of the wrong size or
    hash raises :class:`DataError` naming the file."""
    directory = Path(directory)
    fix = f"delete {directory}; it is rebuilt on the next run"
    index_path = directory / "index.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(index_path, f"unreadable ({type(err).__name__}: {err})", fix) from None
    if index.get("format") != FORMAT or index.get("version") != VERSION or index.get("key") != key:
        raise DataError(index_path, f"not a {FORMAT} v{VERSION} directory of key {key!r}", fix)
    try:
        small = PaddedSplit.load(directory / "small.pt", key=key)
    except FileNotFoundError:
        raise DataError(directory / "small.pt", "missing", fix) from None
    trailing, offsets = {}, {}
    for name, field in index["fields"].items():
        trailing[name] = tuple(field["trailing"])
        lengths = small[name + LEN_SUFFIX].numpy().astype(np.int64)
        offsets[name] = np.concatenate([[0], np.cumsum(lengths)])
        path = directory / f"{name}.f32"
        want = int(offsets[name][-1]) * int(np.prod(trailing[name], dtype=np.int64)) * 4
        if not path.is_file() or path.stat().st_size != want:
            have = path.stat().st_size if path.is_file() else "no"
            raise DataError(path, f"holds {have} bytes where its rows need {want} (cut short or replaced)", fix)
        if _sha256(path) != field["sha256"]:
            raise DataError(path, "its content does not match the hash stored with it (corrupt)", fix)
    rows = np.arange(len(small), dtype=np.int64)
    return DiskSplit(small.to(device), directory, trailing, offsets, rows)


Items = Callable[[], tuple[Sequence[str], Iterable[dict[str, Tensor]]]]
"""``() -> (ids, one dict of fields per id)``: how :func:`disk_cached` builds a split, streamed row by row."""


def cache_folder(key: str, cache_dir: str | Path) -> Path:
    """Where :func:`disk_cached` keeps the split of ``key``."""
    return Path(cache_dir) / f"{key}.disk"


def disk_cached(key: str, cache_dir: str | Path, items: Items, ragged: Sequence[str], disk: Sequence[str],
                device: str | torch.device = "cpu") -> DiskSplit:  # fmt: skip
    """:func:`bench.data.loader.featurize_cached` for a split kept on disk: ``cache_dir/<key>.disk`` loaded when it
    checks out, else built from ``items() -> (ids, items)`` (with the caller's random streams kept) and loaded."""
    directory = cache_folder(key, cache_dir)
    if directory.exists():
        try:
            return load(directory, key, device)
        except DataError as err:
            print(f"{err.where}: {err.problem}; building it again", file=sys.stderr)
    with rng.kept():
        ids, stream = items()
        write(directory, key, ids, stream, ragged, disk)
    return load(directory, key, device)


def choose_storage(padded_bytes: Callable[[], int], cached: str | None = None) -> str:
    """``memory`` or ``disk`` for a split whose padded tensors would take ``padded_bytes()`` bytes:
    ``$WSVG_CORPUS_STORAGE`` when it names one; else (``auto``) the storage it is ``cached`` in already
    (:func:`cached_storage`), so that a later open does not estimate the size again (reading every file's header,
    about a minute for LibriSpeech's 281k files); else disk above :data:`MEMORY_LIMIT_BYTES`."""
    choice = os.environ.get(STORAGE_ENV, "auto").strip().lower() or "auto"
    if choice not in STORAGES:
        raise ValueError(f"${STORAGE_ENV}={choice!r}: choose one of {', '.join(STORAGES)}")
    if choice == "auto":
        return cached or ("disk" if padded_bytes() > MEMORY_LIMIT_BYTES else "memory")
    return choice


def cached_storage(key: str, cache_dir: str | Path) -> str | None:
    """``disk`` when :func:`disk_cached` holds ``key``, ``memory`` when :func:`bench.data.loader.featurize_cached`
    does, None when neither has built it yet."""
    if cache_folder(key, cache_dir).is_dir():
        return "disk"
    return "memory" if cache_file(key, cache_dir).is_file() else None
