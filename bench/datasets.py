"""The dataset registry: which benchmarks ``bench run --dataset`` accepts and how each is opened.

A dataset is opened once per process and shared by every method of a ``bench run --table N``; its
``content_hash`` goes into every run's parameters. Datasets that a later issue will build are listed with
that issue, and opening them is a clear error rather than a guess.

A dataset marked ``annotations_only`` holds the annotation files and nothing else (no video features, no speech):
only the blind methods (query ``"none"``) can run on it, and ``bench run`` says so instead of failing deep inside
a method. Its ``check`` runs before any tracked run is opened, so a missing file is one clear error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol


class Dataset(Protocol):
    """What the harness needs of an opened dataset; methods use the richer object they are given."""

    name: str
    content_hash: str


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    open: Callable[[str, Any], Dataset] | None = None  # open(profile, device) -> Dataset
    issue: int | None = None
    annotations_only: bool = False
    check: Callable[[], Any] | None = None  # cheap: raises a DataError naming the missing file and the fix


def _open_synth(profile: str, device: Any) -> Dataset:
    from bench.data.synth import SynthDataset

    return SynthDataset.open(profile, device)


def _open_speech(profile: str, device: Any) -> Dataset:
    from bench.data import speech_root

    return speech_root.open_dataset(profile, device)


def _check_speech() -> Any:
    """Opening the root is the check: layout, wavs, content hash and ``bench data check`` (cached per hash)."""
    from bench.data import speech_root

    return speech_root.open_root()


def _open_real(name: str, profile: str, device: Any) -> Dataset:
    """One of the real annotation datasets of :mod:`bench.data.captions`, by its name."""
    from bench.data.captions import SOURCES, CaptionsDataset

    return CaptionsDataset.open(profile, device, source=SOURCES[name])


def _check_real(name: str) -> Any:
    from bench.data.captions import SOURCES, check_files

    return check_files(source=SOURCES[name])


_DATASETS: dict[str, DatasetSpec] = {
    "synth": DatasetSpec(
        "synth", "the embedded synthetic spoken-grounding benchmark (generated, cached)", open=_open_synth
    ),
    "activitynet-speech": DatasetSpec(
        "activitynet-speech",
        "ActivityNet Speech: C3D features + spoken captions + LibriSpeech + GloVe, from a local data root"
        " (--data-root DIR or $WSVG_DATA)",
        open=_open_speech,
        check=_check_speech,
    ),
    "activitynet-captions": DatasetSpec(
        "activitynet-captions",
        "the real ActivityNet Captions annotations only, from $WSVG_SHARED/data (for the blind rows)",
        open=partial(_open_real, "activitynet-captions"),
        annotations_only=True,
        check=partial(_check_real, "activitynet-captions"),
    ),
    "activitynet-cd": DatasetSpec(
        "activitynet-cd",
        "the real ActivityNet-CD annotations only (val, test-iid, test-ood; the prior tuned on val), from"
        " $WSVG_SHARED/data (for the blind rows)",
        open=partial(_open_real, "activitynet-cd"),
        annotations_only=True,
        check=partial(_check_real, "activitynet-cd"),
    ),
}
DATASET_NAMES: tuple[str, ...] = tuple(_DATASETS)
_OPENED: dict[tuple[str, str, str], Dataset] = {}


def register(spec: DatasetSpec) -> None:
    """Install (or replace, for a dataset listed above that an issue now implements) a dataset."""
    _DATASETS[spec.name] = spec


def spec(name: str) -> DatasetSpec:
    if name not in _DATASETS:
        raise KeyError(f"no dataset named {name!r}; choose one of {', '.join(_DATASETS)}")
    return _DATASETS[name]


def all_datasets() -> dict[str, DatasetSpec]:
    return dict(_DATASETS)


def check_available(name: str) -> None:
    """Raise now, before any run is opened, if ``name`` cannot be opened: a dataset this version does not build
    yet (``NotImplementedError``), or one whose ``check`` finds a file missing (a :class:`DataError` naming it).

    The generated ``synth`` is always available: opening it builds it.
    """
    ds = spec(name)
    if ds.open is None:
        raise NotImplementedError(
            f"dataset {name!r} is not built yet in this version of the suite (issue {ds.issue} adds it); "
            f"`bench data list` shows the datasets that run today"
        )
    if ds.check is not None:
        ds.check()


def open_dataset(name: str, profile: str, device: Any) -> Dataset:
    """Open ``name`` for ``profile`` once per process; later calls return the same object."""
    ds = spec(name)
    if ds.open is None:
        check_available(name)  # raises the not-built error
    key = (name, profile, str(device))
    if key not in _OPENED:
        _OPENED[key] = ds.open(profile, device)
    return _OPENED[key]
