"""Real annotation files as datasets of their own, for the rows that need nothing else.

Two datasets are made this way, each described by one :class:`Source`: which file plays which part of the suite's
protocol, and how to say so in a caption. Both are in the ActivityNet Captions format, so one reader
(:func:`bench.data.activitynet.read_captions`), one set of checks and one content hash serve them.

- ``activitynet-captions`` (:data:`CAPTIONS`): ``train.json``, ``val_1.json``, ``val_2.json``. The prior is chosen on
  train, val_1 is validation, val_2 is the test split (the moments of the paper's ActivityNet Speech test set).
- ``activitynet-cd`` (:data:`CD`): ActivityNet-CD (Yuan et al. 2021), ActivityNet Captions re-split so that the test
  moments of ``anet_test_ood.json`` are distributed differently from the training ones. Its training split is not
  available here, so ``anet_val.json`` (drawn from the training distribution) is both the split the prior's span is
  tuned on and the validation split; ``anet_test_iid.json`` is the test split (i.i.d.), ``anet_test_ood.json`` the
  extra test split ``test_ood`` that every run also scores, as on synth.

Only the blind rows (``methods/blind.py``) can run on these datasets: no video features, no speech. They are the one
part of the paper's Table 1 that this suite computes on real data, and they show how much of a reported number the
moment statistics alone give.

Where the files are. ``<shared>/data/<dataset name>/``, where ``<shared>`` is ``$WSVG_SHARED`` or, by default, the
folder ``shared`` beside the repository (``<repo>/../shared``, the project's shared read-only material; the tests
find it the same way). ``shared/data/README.md`` says where the files come from and lists their checksums. The
default assumes a source checkout (``pip install -e .``); elsewhere set ``WSVG_SHARED``.

Split names. A source maps the suite's split names to files: ``train`` (where the prior is fitted), ``val_1``
(validation), ``val_2`` (the test split, logged under ``test/``) and, where there is one, ``test_ood`` (logged under
``test_ood/``). These are the names the blind methods ask for; :meth:`CaptionsDataset.split_label` gives the
dataset's own name for each (``val``, ``test-iid`` and ``test-ood`` for ActivityNet-CD). The profile changes nothing
here: the files are the same under every profile. The content hash every run logs is taken over the distinct
files' names and bytes, in split order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import config as cfg
from bench.data.activitynet import CAPTIONS_FILES
from bench.data.errors import DataError

SHARED_ENV = "WSVG_SHARED"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Source:
    """One set of real annotation files and the part each plays: everything that differs between the two datasets.

    ``files`` maps the suite's split names (``train``, ``val_1``, ``val_2``, optionally ``test_ood``; see the module
    docstring) to file names, several names may share one file; ``labels`` gives the dataset's own name of each
    split. ``about`` says in one clause what the splits are (for table captions), ``versus_paper`` how the numbers
    relate to the paper's.
    """

    name: str
    title: str
    files: dict[str, str]
    labels: dict[str, str]
    about: str
    versus_paper: str

    @property
    def subdir(self) -> Path:
        """The folder under ``<shared>`` that holds the files: ``data/<dataset name>``."""
        return Path("data") / self.name

    @property
    def distinct_files(self) -> list[str]:
        """Each file once, in split order (ActivityNet-CD's ``anet_val.json`` serves two splits)."""
        return list(dict.fromkeys(self.files.values()))


CAPTIONS = Source(
    name="activitynet-captions",
    title="ActivityNet Captions",
    files=dict(CAPTIONS_FILES),
    labels={split: split for split in CAPTIONS_FILES},
    about=(
        "scored on its val_2 split, the test split whose moments the paper's ActivityNet Speech test set shares;"
        " the prior's span chosen on train alone"
    ),
    versus_paper="The 'paper' lines are the paper's reported numbers, not reproduced here.",
)
_CD_FILES = {
    "train": "anet_val.json",  # ActivityNet-CD's training split is not available: the prior is tuned on val
    "val_1": "anet_val.json",
    "val_2": "anet_test_iid.json",
    "test_ood": "anet_test_ood.json",
}
CD = Source(
    name="activitynet-cd",
    title="ActivityNet-CD (Yuan et al. 2021)",
    files=_CD_FILES,
    labels={"train": "val", "val_1": "val", "val_2": "test-iid", "test_ood": "test-ood"},
    about=(
        f"its training split is not available, so the prior's span is tuned on val ({_CD_FILES['train']}, drawn"
        " from the training distribution), which is also the validation split; test/ is test-iid"
        f" ({_CD_FILES['val_2']}, distributed as training), test_ood/ is test-ood ({_CD_FILES['test_ood']}, moments"
        " placed and sized differently)"
    ),
    versus_paper=(
        "The paper reports no ActivityNet-CD numbers: its lines are its ActivityNet Speech numbers, these rows are"
        " not a reproduction of the paper, and Δ compares two different benchmarks."
    ),
)
SOURCES: dict[str, Source] = {s.name: s for s in (CAPTIONS, CD)}
NAME = CAPTIONS.name
"""The ActivityNet Captions dataset's name, the default of the functions below."""


def shared_root() -> Path:
    """The project's shared folder: ``$WSVG_SHARED``, else ``<repo>/../shared``; always absolute."""
    return Path(os.environ.get(SHARED_ENV, REPO.parent / "shared")).expanduser().resolve()


def default_root(source: Source = CAPTIONS) -> Path:
    """The folder holding ``source``'s files (ActivityNet Captions' ``train.json``, ``val_1.json``, ``val_2.json``)."""
    return shared_root() / source.subdir


def _fix(root: Path, source: Source) -> str:
    return (
        f"put the {source.title} files {', '.join(source.distinct_files)} into {root} (shared/data/README.md "
        f"gives their source and checksums), or set {SHARED_ENV} to the folder that holds {source.subdir}/"
    )


def check_files(root: Path | None = None, source: Source = CAPTIONS) -> Path:
    """Return ``root`` when all of ``source``'s files are there; otherwise a :class:`DataError` naming what is missing.

    Cheap (no file is read), so that ``bench run`` can check before it opens any tracked run: a missing file is
    one clear error, not one FAILED run per method and seed. A file that is there but not valid JSON is the
    reader's error, naming the file and line (each run that reads it fails with that one line).
    """
    root = root or default_root(source)
    if not root.is_dir():
        raise DataError(root, f"no such folder (the {source.title} annotations are not there)", _fix(root, source))
    missing = [name for name in source.distinct_files if not (root / name).is_file()]
    if missing:
        where = root / missing[0] if len(missing) == 1 else f"{root} ({', '.join(missing)})"
        raise DataError(where, f"no such file{'s' if len(missing) > 1 else ''}", _fix(root, source))
    return root


def content_hash(root: Path, source: Source = CAPTIONS) -> str:
    """sha256 over each distinct file's name and bytes, in split order (12 hex digits, as for synth)."""
    digest = hashlib.sha256()
    for name in source.distinct_files:
        digest.update(name.encode())
        digest.update((root / name).read_bytes())
    return digest.hexdigest()[:12]


@dataclass
class CaptionsDataset:
    """The opened annotations: where each split's file is, and the content hash every run logs."""

    root: Path
    source: Source = CAPTIONS
    name: str = NAME
    content_hash: str = ""
    files: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def open(
        cls, profile: str, device: Any = None, root: Path | None = None, source: Source = CAPTIONS
    ) -> CaptionsDataset:
        """Check ``source``'s files and hash them; ``profile`` is validated but changes nothing (see the module doc)."""
        cfg.check_profile(profile)
        root = check_files(root, source)
        files = {split: root / name for split, name in source.files.items()}
        return cls(root=root, source=source, name=source.name, content_hash=content_hash(root, source), files=files)

    def annotation_path(self, split: str) -> Path:
        """The ActivityNet Captions JSON file of ``split`` (one of the source's split names)."""
        if split not in self.files:
            raise ValueError(f"split {split!r} is not one of {', '.join(self.files)}")
        return self.files[split]

    def has_split(self, split: str) -> bool:
        """Whether the dataset has ``split``: only ActivityNet-CD has the extra test split ``test_ood``."""
        return split in self.files

    def split_label(self, split: str) -> str:
        """The dataset's own name of ``split`` (``train`` is ActivityNet-CD's ``val``), for run params."""
        self.annotation_path(split)
        return self.source.labels[split]
