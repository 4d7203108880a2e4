"""The real ActivityNet Captions annotations as a dataset of their own, for the rows that need nothing else.

``bench run --dataset activitynet-captions`` opens only the three annotation files (``train.json``,
``val_1.json``, ``val_2.json``): no video features, no speech. Only the blind rows (``methods/blind.py``) can run
on it; they are the one part of the paper's Table 1 that this suite computes on real data, and they show how much
of a reported number the dataset's moment statistics alone give.

Where the files are. ``<shared>/data/activitynet-captions/``, where ``<shared>`` is ``$WSVG_SHARED`` or, by
default, the folder ``shared`` beside the repository (``<repo>/../shared``, the project's shared read-only
material; the tests find it the same way). ``shared/data/README.md`` says where the files come from and lists
their checksums. The default assumes a source checkout (``pip install -e .``); elsewhere set ``WSVG_SHARED``.

Splits: ``train`` (the prior is chosen on it), ``val_1`` (validation), ``val_2`` (the test split: the moments of
the paper's ActivityNet Speech test set). The profile does not change anything here: the files are the same under
every profile. The content hash every run logs is taken over the three files' names and bytes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import config as cfg
from bench.data.activitynet import CAPTIONS_FILES, SPLITS
from bench.data.errors import DataError

NAME = "activitynet-captions"
SHARED_ENV = "WSVG_SHARED"
SUBDIR = Path("data") / "activitynet-captions"
REPO = Path(__file__).resolve().parents[2]


def shared_root() -> Path:
    """The project's shared folder: ``$WSVG_SHARED``, else ``<repo>/../shared``; always absolute."""
    return Path(os.environ.get(SHARED_ENV, REPO.parent / "shared")).expanduser().resolve()


def default_root() -> Path:
    """The folder holding ``train.json``, ``val_1.json`` and ``val_2.json``."""
    return shared_root() / SUBDIR


def _fix(root: Path) -> str:
    return (
        f"put ActivityNet Captions' {', '.join(CAPTIONS_FILES.values())} into {root} (shared/data/README.md "
        f"gives their source and checksums), or set {SHARED_ENV} to the folder that holds {SUBDIR}/"
    )


def check_files(root: Path | None = None) -> Path:
    """Return ``root`` when all three files are there; otherwise a :class:`DataError` naming what is missing.

    Cheap (no file is read), so that ``bench run`` can check before it opens any tracked run: a missing file is
    one clear error, not one FAILED run per method and seed.
    """
    root = root or default_root()
    if not root.is_dir():
        raise DataError(root, "no such folder (the ActivityNet Captions annotations are not there)", _fix(root))
    missing = [name for name in CAPTIONS_FILES.values() if not (root / name).is_file()]
    if missing:
        where = root / missing[0] if len(missing) == 1 else f"{root} ({', '.join(missing)})"
        raise DataError(where, f"no such file{'s' if len(missing) > 1 else ''}", _fix(root))
    return root


def content_hash(root: Path) -> str:
    """sha256 over each split file's name and bytes, in split order (12 hex digits, as for synth)."""
    digest = hashlib.sha256()
    for split in SPLITS:
        name = CAPTIONS_FILES[split]
        digest.update(name.encode())
        digest.update((root / name).read_bytes())
    return digest.hexdigest()[:12]


@dataclass
class CaptionsDataset:
    """The opened annotations: where each split's file is, and the content hash every run logs."""

    root: Path
    name: str = NAME
    content_hash: str = ""
    files: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def open(cls, profile: str, device: Any = None, root: Path | None = None) -> CaptionsDataset:
        """Check the three files and hash them; ``profile`` is validated but changes nothing (see the module doc)."""
        cfg.check_profile(profile)
        root = check_files(root)
        files = {split: root / CAPTIONS_FILES[split] for split in SPLITS}
        return cls(root=root, content_hash=content_hash(root), files=files)

    def annotation_path(self, split: str) -> Path:
        """The ActivityNet Captions JSON file of ``split`` (train, val_1 or val_2)."""
        if split not in self.files:
            raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        return self.files[split]
