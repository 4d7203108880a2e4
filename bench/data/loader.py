"""Shared device-resident loaders: a split is featurized once, cached on disk, held as padded tensors.

A :class:`PaddedSplit` is a dict of named tensors with the same first dimension (one row per query) plus the
query ids. A ragged field ``x`` (``[N, T_max, ...]``) has a companion ``x_len`` (``[N]``, integer) giving each
row's real length along dim 1; fields without a companion (``span`` ``[N, 2]``, ``duration`` ``[N]``) are
plain. The whole split lives on one device; a batch is an index gather (:meth:`PaddedSplit.gather`) that also
trims every ragged field to the batch's longest row, so a batch of short queries does not carry the split's
global padding. There is no per-sample Python anywhere on the batch path; the only host sync per batch is
one ``.tolist()`` of the batch's maximum lengths (all ragged fields at once).

:class:`BatchIterator` walks a split in batches, shuffled by a caller's ``torch.Generator`` (reproducible),
and under DDP yields its rank's shard of each epoch's permutation. :func:`featurize_cached` builds a split
once, writes it atomically under a content-hash key and reloads it on later runs. One split instance,
created once per ``bench run`` process, serves every method of a table.

Conventions, as used across the suite (other names are allowed):

``video`` [N, T_v, D] + ``video_len``, ``mel`` [N, T_m, 80] + ``mel_len``, ``wave`` [N, T_w] + ``wave_len``,
``words`` [N, L] (int64) + ``words_len``, ``span`` [N, 2] (seconds), ``duration`` [N] (seconds).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench import dist, rng
from bench.atomic import (
    exclusive,
    save_atomic,  # noqa: F401 - where the methods' stages find it (``loader.save_atomic``)
)
from bench.data.errors import DataError

LEN_SUFFIX = "_len"
CACHE_FORMAT = "wsvg-padded-split"
CACHE_VERSION = 2  # 2: the file holds its content hash (``sha256``), checked on every load


def pad_stack(tensors: Sequence[Tensor], value: float = 0.0) -> tuple[Tensor, Tensor]:
    """Stack ``[T_i, ...]`` tensors into ``[N, max T_i, ...]`` padded with ``value``; also the lengths ``[N]``.

    The trailing dimensions and dtype must agree. An empty list raises ``ValueError`` (no shape to give).
    """
    if not tensors:
        raise ValueError("pad_stack needs at least one tensor")
    first = tensors[0]
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
    out = first.new_full((len(tensors), int(lengths.max()), *first.shape[1:]), value)
    for i, t in enumerate(tensors):
        if t.shape[1:] != first.shape[1:] or t.dtype != first.dtype:
            expected = ", ".join(["T", *map(str, first.shape[1:])])
            raise ValueError(
                f"pad_stack: tensor {i} is {tuple(t.shape)} {t.dtype}, expected [{expected}] {first.dtype}"
            )
        out[i, : t.shape[0]] = t
    return out, lengths


@dataclass
class PaddedSplit:
    """Named padded tensors with the same first dimension, the query ids, and JSON-able metadata."""

    tensors: dict[str, Tensor]
    ids: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = list(self.ids)
        n = len(self.ids)
        for name, t in self.tensors.items():
            if not isinstance(t, Tensor) or t.dim() == 0 or t.shape[0] != n:
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"PaddedSplit field {name!r} is {shape}; every field needs first dimension {n}")
        for name in self.ragged:
            lens = self.tensors[name + LEN_SUFFIX]
            t = self.tensors[name]
            if lens.dim() != 1 or lens.is_floating_point() or lens.is_complex():
                raise ValueError(f"PaddedSplit field {name + LEN_SUFFIX!r} must be an integer [N] tensor")
            if t.dim() < 2:
                raise ValueError(f"PaddedSplit field {name!r} has a length companion but no time dimension")
            if n and (int(lens.min()) < 0 or int(lens.max()) > t.shape[1]):
                raise ValueError(f"PaddedSplit field {name + LEN_SUFFIX!r} has lengths outside 0..{t.shape[1]}")

    @classmethod
    def from_items(
        cls, ids: Sequence[str], items: Sequence[dict[str, Tensor]], ragged: Sequence[str] = (), **meta: Any
    ) -> PaddedSplit:
        """Build from per-query dicts: ``ragged`` fields are padded (with an ``x_len`` companion), the rest stacked."""
        if len(ids) != len(items) or not items:
            raise ValueError(f"need one item per id and at least one item, got {len(items)} items / {len(ids)} ids")
        tensors: dict[str, Tensor] = {}
        for name in items[0]:
            values = [torch.as_tensor(item[name]) for item in items]
            if name in ragged:
                tensors[name], tensors[name + LEN_SUFFIX] = pad_stack(values)
            else:
                tensors[name] = torch.stack(values)
        return cls(tensors, list(ids), dict(meta))

    # -- basics ----------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, name: str) -> Tensor:
        return self.tensors[name]

    def __contains__(self, name: object) -> bool:
        return name in self.tensors

    @property
    def ragged(self) -> list[str]:
        """The fields with an ``x_len`` companion (padded along dim 1)."""
        return [k for k in self.tensors if k + LEN_SUFFIX in self.tensors]

    @property
    def device(self) -> torch.device:
        return next(iter(self.tensors.values())).device if self.tensors else torch.device("cpu")

    def to(self, device: str | torch.device, non_blocking: bool = False) -> PaddedSplit:
        """A copy on ``device`` (tensors already there are shared, not copied)."""
        moved = {k: v.to(device, non_blocking=non_blocking) for k, v in self.tensors.items()}
        return PaddedSplit(moved, self.ids, dict(self.meta))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def fingerprint(self) -> str:
        """SHA-256 (16 hex) over ids, field names, shapes, dtypes and bytes: equal splits, equal fingerprints."""
        h = hashlib.sha256(json.dumps(self.ids).encode())
        for name in sorted(self.tensors):
            t = self.tensors[name].detach().cpu().contiguous()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().data if t.numel() else b"")  # the bytes in place, not a copy
        return h.hexdigest()[:16]

    def select(self, rows: Tensor) -> PaddedSplit:
        """Rows ``rows`` of every field, in that order (ids and meta with them); padding is kept as it is."""
        rows = rows.to(self.device, torch.long)
        picked = rows.tolist()
        tensors = {k: v.index_select(0, rows) for k, v in self.tensors.items()}
        return PaddedSplit(tensors, [self.ids[i] for i in picked], dict(self.meta))

    # -- batches ---------------------------------------------------------------------------------------------

    def gather(self, idx: Tensor) -> dict[str, Tensor]:
        """Rows ``idx`` of every field, each ragged field trimmed to the batch's longest real length.

        Vectorised: one index per field and one host sync (the batch's max lengths, read together).
        """
        idx = idx.to(self.device, torch.long)
        ragged = self.ragged
        lens = {name: self.tensors[name + LEN_SUFFIX].index_select(0, idx) for name in ragged}
        if ragged and idx.numel():
            widths = torch.stack([lens[name].max().long() for name in ragged]).tolist()
        else:
            widths = [0] * len(ragged)
        width = dict(zip(ragged, widths, strict=True))
        out: dict[str, Tensor] = {}
        for name, t in self.tensors.items():
            if name in width:
                out[name] = t[:, : width[name]].index_select(0, idx)
            elif name.endswith(LEN_SUFFIX) and name[: -len(LEN_SUFFIX)] in lens:
                out[name] = lens[name[: -len(LEN_SUFFIX)]]
            else:
                out[name] = t.index_select(0, idx)
        return out

    # -- disk ------------------------------------------------------------------------------------------------

    def save(self, path: str | Path, key: str | None = None) -> None:
        """``torch.save`` of a plain dict (CPU tensors, ids, meta, the cache ``key`` and the content's
        :meth:`fingerprint`), written atomically (:func:`bench.atomic.save_atomic`)."""
        path = Path(path)
        payload = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "key": key,
            "sha256": self.fingerprint(),
            "tensors": {k: v.detach().cpu() for k, v in self.tensors.items()},
            "ids": self.ids,
            "meta": self.meta,
        }
        save_atomic(payload, path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", key: str | None = None) -> PaddedSplit:
        """Read a file written by :meth:`save`; anything unreadable raises :class:`DataError` naming the file.

        With ``key``, the key stored in the file must match (a file renamed by hand is caught). The content must
        hash to the fingerprint stored when it was written: a flipped byte in a tensor, which unpickles without
        complaint, is caught too.
        """
        path = Path(path)
        fix = f"delete {path}; the split is rebuilt on the next run"
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:  # any unpickling, zip or EOF error means the same thing here
            raise DataError(path, f"cache file is corrupt or unreadable ({type(err).__name__}: {err})", fix) from None
        if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
            raise DataError(path, "not a padded-split cache file", fix)
        if payload.get("version") != CACHE_VERSION:
            raise DataError(path, f"cache format version {payload.get('version')}, expected {CACHE_VERSION}", fix)
        if key is not None and payload.get("key") != key:
            raise DataError(path, f"cache file holds key {payload.get('key')!r}, expected {key!r}", fix)
        try:
            split = cls(dict(payload["tensors"]), list(payload["ids"]), dict(payload.get("meta") or {}))
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(path, f"cache file is inconsistent ({err})", fix) from None
        if split.fingerprint() != payload.get("sha256"):
            raise DataError(path, "cache file is corrupt (its content does not match the hash stored with it)", fix)
        return split.to(device)


def content_key(*parts: Any) -> str:
    """A cache key: SHA-256 (16 hex) of the JSON of ``parts`` (dataset content hash, feature config, version...)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_file(key: str, cache_dir: str | Path) -> Path:
    """Where :func:`featurize_cached` keeps the split of ``key``."""
    return Path(cache_dir) / f"{key}.pt"


def featurize_cached(
    key: str, cache_dir: str | Path, build: Callable[[], PaddedSplit], device: str | torch.device = "cpu"
) -> PaddedSplit:
    """The split cached as ``cache_dir/<key>.pt``: built by ``build()`` and written atomically the first time,
    loaded (onto ``device``) every later time. A file that does not load whole and intact (unreadable, truncated, of
    another key or format version, or content that no longer matches its stored hash) is never used: it is named on
    stderr and built again.

    ``key`` must change whenever the content would (see :func:`content_key`); it is also stored in the file and
    checked on load. Concurrent builders (DDP ranks) each write their own temporary file and ``os.replace`` it,
    so a reader never sees a half-written cache. Processes that are not DDP ranks (``bench run --jobs N``'s
    workers) take the file lock ``cache_dir/.locks/<key>.lock`` first, so that the first builds the split and the
    others load it rather than each featurising it again (ranks do not: a build may hold collectives).
    ``build()`` runs with the caller's random streams kept (:func:`bench.rng.kept`): a run gets the same numbers
    whether it built the split or found it cached.
    """
    if not key or any(c in key for c in "/\\") or key.startswith("."):
        raise ValueError(f"cache key must be a plain file-name stem, got {key!r}")
    path = cache_file(key, cache_dir)
    if (split := _load_whole(path, key, device)) is not None:
        return split
    if dist.launched():  # torchrun's ranks: each builds (see above)
        return _build_cached(key, path, build, device)
    with exclusive(Path(cache_dir) / ".locks" / f"{key}.lock", f"{key}: another process is building it; waiting"):
        if (split := _load_whole(path, key, device)) is not None:  # built by the process that held the lock before
            return split
        return _build_cached(key, path, build, device)


def _load_whole(path: Path, key: str, device: str | torch.device) -> PaddedSplit | None:
    """The cached split at ``path`` if it loads whole and intact; ``None`` if absent or damaged (named on stderr)."""
    if not path.exists():
        return None
    try:
        return PaddedSplit.load(path, device=device, key=key)
    except DataError as err:
        print(f"{err.where}: {err.problem}; building it again", file=sys.stderr)
        return None


def _build_cached(key: str, path: Path, build: Callable[[], PaddedSplit], device: str | torch.device) -> PaddedSplit:
    with rng.kept():  # a build may draw (e.g. a model's initialisation): the run's streams must not see it
        split = build()
    if not isinstance(split, PaddedSplit):
        raise TypeError(f"featurize_cached: build() returned {type(split).__name__}, expected PaddedSplit")
    split.save(path, key=key)
    return split.to(device)


class BatchIterator:
    """Batches of a :class:`PaddedSplit` as gathered dicts, plus ``"index"`` (the rows, to map back to ``ids``).

    Each ``iter()`` is one epoch. With ``shuffle``, the epoch's permutation is ``torch.randperm(N, generator)``
    drawn on the CPU, so a generator seeded the same way gives the same batches, and the generator advances
    epoch to epoch. Without ``shuffle`` the order is ``0..N-1``.

    DDP: with ``world_size > 1`` every rank must hold a generator seeded identically (they then draw the same
    permutation) and takes ``perm[rank::world_size]``. So that every rank runs the same number of steps, the
    permutation is first made a multiple of ``world_size`` like ``DistributedSampler``: with ``drop_last=False``
    by repeating its first few entries (at most ``world_size - 1`` queries seen twice per epoch), with
    ``drop_last=True`` by dropping its tail. ``drop_last`` also drops each rank's last incomplete batch.
    """

    def __init__(
        self,
        split: PaddedSplit,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        if shuffle and generator is None:
            raise ValueError("shuffle=True needs a torch.Generator, so that the run is reproducible")
        self.split, self.batch_size, self.shuffle = split, batch_size, shuffle
        self.generator, self.drop_last = generator, drop_last
        self.rank, self.world_size = rank, world_size

    def shard_size(self) -> int:
        n, w = len(self.split), self.world_size
        return n // w if self.drop_last else -(-n // w)

    def __len__(self) -> int:
        m = self.shard_size()
        return m // self.batch_size if self.drop_last else -(-m // self.batch_size)

    def epoch_indices(self) -> Tensor:
        """This rank's rows for one epoch, in order (draws from the generator when shuffling); CPU int64."""
        n = len(self.split)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        if self.world_size > 1:
            total = self.shard_size() * self.world_size
            order = order[:total] if total <= n else order.repeat(-(-total // n))[:total]
            order = order[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        order = self.epoch_indices().to(self.split.device)
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, order.shape[0]), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self.split.gather(idx)
            batch["index"] = idx
            yield batch
