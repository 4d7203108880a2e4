"""``activitynet-speech``: ActivityNet Speech over a local data root, exposing exactly what ``synth`` exposes.

A researcher who has the real data points the suite at one folder (``bench run --data-root DIR``, or ``$WSVG_DATA``)
laid out as ``bench data check`` expects (:mod:`bench.data.check`)::

    ROOT/annotations/   train.json, val_1.json, val_2.json (ActivityNet Captions) or VGCL's new_*_data.json lists
    ROOT/features/      sub_activitynet_v1-3.c3d.hdf5, or one v_<id>.h5 per video (C3D, 500-d)
    ROOT/wavs/          <youtube id>_<split>_<k>.wav, 16 kHz (ActivityNet Speech's rule, k the 1-based sentence index)
    ROOT/librispeech/   train-clean-100, train-clean-360, train-other-500 (the 960 h of pre-training); others unused
    ROOT/glove.txt      GloVe text (840B.300d in the paper's code)
    ROOT/wav2vec2/      optional: a Wav2Vec2ForCTC save_pretrained directory, used by the ASR and Base + Wav2vec2.0
    ROOT/esc50/         optional: ESC-50's audio/ and meta/, the noise `bench robustness` adds (Table 7); without it
                        the noise is the generated stand-in. No grounding run reads it, so it is not in the hash

:func:`open_root` settles everything a run needs before any tracked run is opened, and fails with one
:class:`DataError` naming the file and the fix, never a FAILED run per seed:

1. the layout (:func:`locate`): a missing folder or file is named;
2. the splits: train / val_1 / val_2 read by the readers' documented rule (spans clipped into ``[0, duration]``; the
   four empty or reversed spans of the real ``train.json`` dropped and counted, which leaves the paper's 37,417
   pairs); every query's wav is named by :func:`bench.data.activitynet.wav_name`, the names of VGCL's released lists.
   A wav absent from ``wavs/`` is an error that says how many, in which split, and the first names, unless
   ``--skip-missing`` (``$WSVG_SKIP_MISSING=1``): those queries are then left out of every method's splits alike
   (:meth:`SpeechDataset.left_out`) and counted in every run's params (``data.missing_wavs.<split>``);
3. the content hash: sha256 over the annotation files' bytes and a manifest of every large file a run reads (its
   relative path, size and sha256: the features, the queries' wavs, the pre-training corpus, glove.txt, the
   checkpoint). The checksums are computed once and cached by (size, mtime) under ``<runs>/cache/activitynet-speech/``,
   so a later open only ``stat``s the files instead of reading about 100 GB again;
4. ``bench data check`` (:func:`bench.data.check.check_root`) on the root, once per content hash (its verdict is
   cached beside the manifest): any error is one :class:`DataError` with the count and the first problems;
5. the pre-training corpus as the methods read it (``corpus_root``): a folder of links to the three LibriSpeech
   subsets of 960 h and a ``subsets.json`` of Table 4's data ratios in the paper's "standard LibriSpeech division that
   includes 100, 460 and 960 hours" (App. B.1): ``10%`` is train-clean-100 (100 h), ``50%`` adds train-clean-360
   (460 h), ``100%`` adds train-other-500 (960 h); ``chapters.json`` lists each one's chapters.

The profile changes nothing here (the files are what they are); it sizes the methods. Under ``torchrun`` the manifest
and the check are done under a file lock, so the ranks checksum and check the data once between them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import atomic
from bench.data import activitynet, c3d, check
from bench.data.errors import DataError, SkipPolicy

NAME = "activitynet-speech"
ROOT_ENV = "WSVG_DATA"
SKIP_ENV = "WSVG_SKIP_MISSING"
SPLITS: tuple[str, ...] = activitynet.SPLITS  # train, val_1 (validation), val_2 (the test split)
PRETRAIN_SUBSETS: tuple[str, ...] = ("train-clean-100", "train-clean-360", "train-other-500")
CORPUS_SUBSETS: dict[str, tuple[str, ...]] = {
    "10%": PRETRAIN_SUBSETS[:1],
    "50%": PRETRAIN_SUBSETS[:2],
    "100%": PRETRAIN_SUBSETS,
}
"""Table 4's pre-training data ratios as LibriSpeech's standard subsets: 100 h, 460 h, 960 h (App. B.1)."""
HASH_SCHEME = 1
_SHOWN = 5  # how many names an error lists before "..."


@dataclass(frozen=True)
class Layout:
    """Where each part of a data root is (resolved once by :func:`locate`; the optional parts may be None)."""

    root: Path
    annotations: dict[str, Path]
    features: Path  # the single C3D file, or the folder of v_<id>.h5
    wav_dir: Path
    librispeech: Path
    glove: Path
    wav2vec2: Path | None
    esc50: Path | None = None


def root_from_env() -> Path:
    """The data root: ``$WSVG_DATA`` (``bench run --data-root DIR`` sets it); unset is a clear error."""
    value = os.environ.get(ROOT_ENV)
    if not value:
        raise DataError(
            f"${ROOT_ENV}",
            f"no data root given for --dataset {NAME}",
            f"pass --data-root DIR (or set {ROOT_ENV}=DIR) to a folder laid out as `bench data check` expects",
        )
    return Path(value).expanduser().resolve()


def skip_missing_from_env() -> bool:
    """Whether queries whose wav is absent are left out (``--skip-missing``, ``$WSVG_SKIP_MISSING=1``)."""
    return os.environ.get(SKIP_ENV, "") not in ("", "0")


def locate(root: Path) -> Layout:
    """The parts of ``root``, or a :class:`DataError` naming the first one that is missing and how to add it."""
    if not root.is_dir():
        raise DataError(root, "no such folder (the data root)", f"point --data-root or {ROOT_ENV} to the data root")
    folder = root / "annotations"
    annotations = {}
    for split, names in check.ANNOTATION_CANDIDATES.items():
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is None:
            fix = f"put {names[0]} (ActivityNet Captions JSON) or {names[1]} (VGCL's list) there"
            raise DataError(folder / names[0], f"missing (the {split} annotations)", fix)
        annotations[split] = path
    store = c3d.open_features(root / "features")  # a DataError names the folder and the two layouts
    with store:
        features = store.path
    wav_dir = next((root / d for d in check.WAV_DIRS if (root / d).is_dir()), None)
    if wav_dir is None:
        raise DataError(root / "wavs", "missing (the ActivityNet Speech wavs)",
                        "put the 16 kHz <youtube id>_<split>_<k>.wav files there")  # fmt: skip
    libri = next((root / d for d in check.LIBRISPEECH_DIRS if (root / d).is_dir()), None)
    absent = [s for s in PRETRAIN_SUBSETS if libri is None or not (libri / s).is_dir()]
    if libri is None or absent:
        where = root / "librispeech" if libri is None else libri / absent[0]
        raise DataError(where, f"missing (LibriSpeech {', '.join(absent)}: the 960 h the pre-training stages read)",
                        "download and unpack them from openslr.org/12 into ROOT/librispeech/")  # fmt: skip
    glove = root / "glove.txt"
    if not glove.is_file():
        raise DataError(glove, "missing (the word vectors)", "put GloVe's text file there (glove.840B.300d.txt)")
    w2v, esc = root / "wav2vec2", root / "esc50"
    return Layout(root, annotations, features, wav_dir, libri, glove, w2v if w2v.is_dir() else None,
                  esc if esc.is_dir() else None)  # fmt: skip


def read_split(layout: Layout, split: str) -> activitynet.Annotations:
    """One split by the readers' rule: bad entries (empty or reversed spans) dropped and counted in ``skipped``."""
    return activitynet.read_annotations(layout.annotations[split], split, SkipPolicy(skip=True))


def missing_wavs(layout: Layout, splits: dict[str, activitynet.Annotations]) -> dict[str, list[activitynet.Moment]]:
    """Per split, the moments whose wav (named by ActivityNet Speech's rule) is not in ``wavs/``."""
    present = set(os.listdir(layout.wav_dir))
    out: dict[str, list[activitynet.Moment]] = {}
    for s, ann in splits.items():
        try:
            out[s] = [m for m in ann if activitynet.wav_name(m.video, s, m.k) not in present]
        except ValueError as e:  # a video id without the 'v_' of the annotation files
            fix = "write video ids as 'v_<youtube id>', as ActivityNet Captions does"
            raise DataError(ann.path, str(e), fix) from None
    return out


def _missing_error(layout: Layout, missing: dict[str, list[activitynet.Moment]]) -> DataError:
    counts = ", ".join(f"{len(ms)} of {s}" for s, ms in missing.items() if ms)
    first = [activitynet.wav_name(m.video, s, m.k) for s, ms in missing.items() for m in ms][:_SHOWN]
    total = sum(len(ms) for ms in missing.values())
    return DataError(
        layout.wav_dir,
        f"{total} wavs of the annotations are absent ({counts}; first: {', '.join(first)}"
        f"{', ...' if total > len(first) else ''})",
        "restore them from the ActivityNet Speech release, or pass --skip-missing to leave those queries out of "
        "every method alike (counted in each run's params)",
    )


# -- the manifest and the content hash --------------------------------------------------------------------------


def cache_dir(root: Path) -> Path:
    """Where this root's manifest, check verdict and corpus view are kept: one folder per root path."""
    from bench import tracking

    tag = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return tracking.runs_home() / "cache" / NAME / f"{root.name}-{tag}"


def large_files(layout: Layout, splits: dict[str, activitynet.Annotations]) -> list[Path]:
    """Every large file a run reads: the features, the kept queries' wavs, the 960 h corpus, GloVe, the checkpoint."""
    files: list[Path] = []
    if layout.features.is_file():
        files.append(layout.features)
    else:  # per-video layout: the files of the annotated videos only
        videos = sorted({v for ann in splits.values() for v in ann.videos})
        files += [layout.features / f"{v}.h5" for v in videos if (layout.features / f"{v}.h5").is_file()]
    files += sorted({layout.wav_dir / activitynet.wav_name(m.video, s, m.k) for s, ann in splits.items() for m in ann})
    for subset in PRETRAIN_SUBSETS:
        files += sorted(p for p in (layout.librispeech / subset).glob("*/*/*") if p.suffix in (".flac", ".txt"))
    files.append(layout.glove)
    if layout.wav2vec2 is not None:
        files += sorted(p for p in layout.wav2vec2.iterdir() if p.is_file())
    return files


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def manifest(layout: Layout, files: list[Path], cache: Path) -> list[tuple[str, int, str]]:
    """``(relative path, size, sha256)`` of every file, the checksums read from the cache where size and mtime agree.

    The cache (``manifest.json``) maps a relative path to ``[size, mtime_ns, sha256]``; a file changed since (another
    size or mtime) is read again."""
    path = cache / "manifest.json"
    known: dict[str, list] = json.loads(path.read_text()) if path.is_file() else {}
    out, fresh, changed = [], {}, False
    for f in files:
        rel = str(f.relative_to(layout.root))
        st = f.stat()
        entry = known.get(rel)
        if entry is None or entry[0] != st.st_size or entry[1] != st.st_mtime_ns:
            entry, changed = [st.st_size, st.st_mtime_ns, _sha256(f)], True
        fresh[rel] = entry
        out.append((rel, entry[0], entry[2]))
    if changed or fresh.keys() != known.keys():
        atomic.write_text_atomic(path, json.dumps(fresh))
    return out


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """Hold ``<cache>/open.lock``: concurrent openers (``torchrun``'s ranks) checksum and check the root once."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "open.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when the process dies
        yield


def content_hash(layout: Layout, entries: list[tuple[str, int, str]], left_out: dict[str, list[str]]) -> str:
    """sha256 over the annotation files' names and bytes, the manifest and the queries left out (12 hex digits)."""
    digest = hashlib.sha256(f"{NAME} scheme {HASH_SCHEME}\n".encode())
    for split, path in layout.annotations.items():
        digest.update(f"{split} {path.name}\n".encode())
        digest.update(path.read_bytes())
    for rel, size, sha in entries:
        digest.update(f"{rel}\t{size}\t{sha}\n".encode())
    digest.update(json.dumps(left_out, sort_keys=True).encode())
    return digest.hexdigest()[:12]


def checked(root: Path, cache: Path, hash_: str, ignore: frozenset[str]) -> None:
    """Run ``bench data check`` on ``root`` unless it passed before for this content hash; any error is one DataError.

    ``ignore`` holds the problem kinds already settled (``missing-wav`` under ``--skip-missing``)."""
    verdict = cache / f"check-{hash_}.json"
    if verdict.is_file():
        return
    report = check.check_root(root)
    errors = [p for p in report.errors if p.kind not in ignore]
    if errors:
        shown = "; ".join(str(p) for p in errors[:3]) + ("; ..." if len(errors) > 3 else "")
        found = f"{len(errors)} error{'s' if len(errors) > 1 else ''}"
        raise DataError(root, f"`bench data check` finds {found} ({shown})",
                        f"run `bench data check {root}` for the full list, and fix each as it says")  # fmt: skip
    atomic.write_text_atomic(verdict, json.dumps({"ok": True, "warnings": len(report.warnings)}))


def corpus_view(layout: Layout, cache: Path, hash_: str) -> Path:
    """A folder that holds just the pre-training corpus, as every method reads one (links + ``subsets.json``)."""
    view = cache / f"corpus-{hash_}"
    if (view / "subsets.json").is_file():
        return view
    tmp = view.with_name(view.name + f".building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    chapters: dict[str, list[str]] = {}
    ids: dict[str, list[str]] = {}
    for subset in PRETRAIN_SUBSETS:
        (tmp / subset).symlink_to(layout.librispeech / subset, target_is_directory=True)
        chapters[subset] = sorted(f"{p.parent.name}-{p.name}" for p in (layout.librispeech / subset).glob("*/*"))
        ids[subset] = sorted(p.stem for p in (layout.librispeech / subset).glob("*/*/*.flac"))
    subsets = {name: sorted(u for s in members for u in ids[s]) for name, members in CORPUS_SUBSETS.items()}
    (tmp / "chapters.json").write_text(json.dumps(
        {name: [f"{s}/{c}" for s in members for c in chapters[s]] for name, members in CORPUS_SUBSETS.items()}))
    (tmp / "subsets.json").write_text(json.dumps(subsets))  # written last: its presence marks the view complete
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(view)
    os.replace(tmp, view)
    return view


# -- the opened dataset ----------------------------------------------------------------------------------------


@dataclass
class SpeechDataset:
    """An opened data root: what ``synth`` exposes (paths, content hash, meta), plus the queries left out."""

    root: Path
    layout: Layout
    profile: str = ""
    name: str = NAME
    content_hash: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    corpus_root: Path = Path()
    skipped_missing: dict[str, frozenset[str]] = field(default_factory=dict)

    def annotation_path(self, split: str) -> Path:
        if split not in self.layout.annotations:
            raise ValueError(f"split {split!r} is not one of {', '.join(self.layout.annotations)}")
        return self.layout.annotations[split]

    def has_split(self, split: str) -> bool:
        """train, val_1 and val_2; ActivityNet Speech has no debiased ``test_ood``."""
        return split in self.layout.annotations

    def left_out(self, split: str) -> frozenset[str]:
        """The query ids of ``split`` left out because their wav is absent (only under ``--skip-missing``)."""
        return self.skipped_missing.get(split, frozenset())

    @property
    def features_path(self) -> Path:
        return self.layout.features

    @property
    def wav_dir(self) -> Path:
        return self.layout.wav_dir

    @property
    def word_vectors_path(self) -> Path:
        return self.layout.glove

    @property
    def wav2vec2_checkpoint(self) -> Path | None:
        """The root's ``wav2vec2/`` checkpoint, which the ASR and Base + Wav2vec2.0 use when their config names none."""
        return self.layout.wav2vec2

    @property
    def noise_dir(self) -> Path | None:
        """The root's ``esc50/`` (ESC-50's release), whose clips ``bench robustness`` adds as Table 7's noise."""
        return self.layout.esc50

    @property
    def run_params(self) -> dict[str, Any]:
        """What every run on this dataset logs beside its own params: the root and the counts of the rules applied."""
        return {f"data.{k}": v for k, v in self.meta["params"].items()}


_OPENED: dict[tuple[Path, bool], SpeechDataset] = {}


def open_root(root: Path | None = None, skip_missing: bool | None = None) -> SpeechDataset:
    """Open (once per process and options) the data root: layout, splits, wavs, content hash, check, corpus view."""
    root = root or root_from_env()
    skip = skip_missing_from_env() if skip_missing is None else skip_missing
    if (root, skip) in _OPENED:
        return _OPENED[(root, skip)]
    layout = locate(root)
    splits = {s: read_split(layout, s) for s in SPLITS}
    missing = missing_wavs(layout, splits)
    if any(missing.values()) and not skip:
        raise _missing_error(layout, missing)
    left_out = {s: sorted(m.qid for m in ms) for s, ms in missing.items()}
    kept = {s: dataclasses.replace(ann, moments=[m for m in ann if m.qid not in set(left_out[s])])
            for s, ann in splits.items()}  # fmt: skip
    cache = cache_dir(root)
    with _locked(cache):
        hash_ = content_hash(layout, manifest(layout, large_files(layout, kept), cache), left_out)
        checked(root, cache, hash_, frozenset({"missing-wav"}) if skip else frozenset())
        corpus = corpus_view(layout, cache, hash_)
    params: dict[str, Any] = {"root": str(root), "skip_missing": skip}
    for s, ann in splits.items():
        params |= {f"{s}_file": ann.path.name, f"{s}_pairs": len(kept[s]), f"{s}_dropped_spans": ann.skipped,
                   f"{s}_clipped": ann.clipped, f"missing_wavs.{s}": len(left_out[s])}  # fmt: skip
    params["wav2vec2"] = str(layout.wav2vec2) if layout.wav2vec2 else "-"
    meta = {"params": params, "summaries": {s: ann.summary() for s, ann in splits.items()}}
    ds = SpeechDataset(root, layout, content_hash=hash_, meta=meta, corpus_root=corpus,
                       skipped_missing={s: frozenset(q) for s, q in left_out.items() if q})  # fmt: skip
    _OPENED[(root, skip)] = ds
    return ds


def open_dataset(profile: str, device: Any = None) -> SpeechDataset:
    """The registry's opener: the root of ``$WSVG_DATA`` under ``profile`` (which changes nothing about the data)."""
    from bench import config as cfg

    cfg.check_profile(profile)
    return dataclasses.replace(open_root(), profile=profile)
