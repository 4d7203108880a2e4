"""The grounding splits every method trains on: clip features, speech features, words, spans, featurized once.

A dataset (synthetic or ActivityNet Speech) exposes the same files: ActivityNet Captions annotations per split,
C3D-format video features, one wav per query named by :func:`bench.data.activitynet.wav_name`, and GloVe-format
word vectors. :func:`load` turns them into :class:`GroundingData`: three :class:`GroundingSplit` (train = the
``train`` file, val = ``val_1``, test = ``val_2``, the paper's protocol) whose query fields live in one
:class:`~bench.data.loader.PaddedSplit` on the run's device:

- ``video_idx`` [Q]: row of the query's video in ``GroundingSplit.videos`` ([V, N, D], the clip features
  resampled to N clips by 2D-TAN's ``average_to_fixed_length``), so a video is stored once, not per query;
- ``mel`` [Q, T, 80] + ``mel_len``: the 80-band log-mel (App. B.2), standardised per utterance;
- ``words`` [Q, L] + ``words_len``: 1-based rows of ``GroundingData.word_vectors`` (row 0 = padding); the
  vocabulary is every caption word of the three splits (the vectors are fixed, so this leaks no labels), and a
  word without a vector gets a zero vector, 2D-TAN's rule, listed in ``GroundingData.meta["oov_words"]``;
- ``span`` [Q, 2] and ``duration`` [Q] in seconds.

The clip features are standardised per dimension with the mean and standard deviation of the train split's clips
(:func:`standardize`), the same for every method and every split (train statistics only, so nothing of val or test
leaks): the pre-processing that lets the models' small initial weights see features of unit scale whatever the
extractor's (C3D's activations or the synthetic prototypes). Measured on synth/small with VSLNet on the gold text:
validation R@1 IoU=0.5 at epoch 4 went from 12.4 on the raw features to 24.7 standardised.

A dataset that also has the debiased test split ``test_ood`` (the synthetic benchmark writes one; ActivityNet-CD's
``anet_test_ood.json`` is the real counterpart) gets it in ``GroundingData.extra_tests``: every grounding run scores
it beside val_2, with the same weights, once. Its speech files follow val_2's naming rule (ActivityNet-CD's test
videos are ActivityNet validation videos).

Each split is built once, cached under ``<runs>/cache/grounding`` by a key over the dataset's content hash and
this module's settings, and kept in memory per process (:func:`load` returns the same object for the same
dataset, so every method of a ``bench run --table N`` shares it).

Every reader of a query's speech finds its file through :func:`query_wav`, and every cache of something computed from
that speech names the split's :func:`speech_tag` in its key. A dataset view may serve other speech for some splits
(``bench robustness`` serves augmented test speech, :class:`bench.robustness.AugmentedSpeech`, whose ``clean`` is the
dataset it wraps); the tag keeps such a split apart from the clean one's cache, and is empty for clean speech, so the
clean keys are the ones they always were.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.data import activitynet, c3d, features, loader
from bench.data.errors import DataError, SkipPolicy
from bench.data.world import tokenize

VERSION = 1  # bump when the featurization changes
SPLIT_FILES = {"train": "train", "val": "val_1", "test": "val_2"}
EXTRA_TESTS = {"test_ood": "test_ood"}  # further test splits a dataset may have: split name -> annotation file
SPEECH_SPLIT = {"test_ood": "val_2"}  # the split label in a file's speech names, where it is not the file's own
_LOADED: dict[tuple[Any, ...], GroundingData] = {}


@dataclass
class GroundingSplit:
    """One split: per-query fields in :attr:`queries`, each video's clips once in :attr:`videos`."""

    name: str
    queries: loader.PaddedSplit
    videos: Tensor  # [V, N, D]

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def qids(self) -> list[str]:
        return self.queries.ids

    def batch(self, fields: dict[str, Tensor]) -> dict[str, Tensor]:
        """Complete a gathered batch with its clip features, ``video`` [B, N, D]."""
        fields["video"] = self.videos.index_select(0, fields["video_idx"])
        return fields

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None, **kw: Any):
        """Batches as dicts of tensors (``index`` = rows of this split), see :class:`loader.BatchIterator`."""
        for b in loader.BatchIterator(self.queries, batch_size, shuffle=shuffle, generator=generator, **kw):
            yield self.batch(b)

    def to(self, device: Any) -> GroundingSplit:
        return GroundingSplit(self.name, self.queries.to(device), self.videos.to(device))


@dataclass
class GroundingData:
    name: str
    content_hash: str
    n_clips: int
    train: GroundingSplit
    val: GroundingSplit
    test: GroundingSplit
    vocab: list[str]  # vocab[i - 1] is the word of row i of word_vectors
    word_vectors: Tensor  # [len(vocab) + 1, D_w], row 0 = zeros (padding and unknown words)
    meta: dict[str, Any] = field(default_factory=dict)
    extra_tests: dict[str, GroundingSplit] = field(default_factory=dict)  # e.g. the debiased test_ood

    def split(self, name: str) -> GroundingSplit:
        return {"train": self.train, "val": self.val, "test": self.test, **self.extra_tests}[name]

    @property
    def split_names(self) -> tuple[str, ...]:
        return ("train", "val", "test", *self.extra_tests)


def split_files(dataset: Any) -> dict[str, str]:
    """The grounding splits of ``dataset`` and their annotation files: train / val / test, and ``test_ood`` where the
    dataset has it (``dataset.has_split``)."""
    has = getattr(dataset, "has_split", lambda split: False)
    return {**SPLIT_FILES, **{name: f for name, f in EXTRA_TESTS.items() if has(f)}}


def query_wav(dataset: Any, m: activitynet.Moment) -> Path:
    """The wav file of moment ``m``'s spoken query: ``dataset.wav_path(m)`` where the dataset serves speech of its own
    (a view with augmented test speech), else the file named by :func:`bench.data.activitynet.wav_name`."""
    if hasattr(dataset, "wav_path"):
        return dataset.wav_path(m)
    return Path(dataset.wav_dir) / activitynet.wav_name(m.video, m.split, m.k)


def speech_tag(dataset: Any, split: str) -> str:
    """What names split ``split``'s speech in a cache key beside the content hash: ``""`` for the dataset's own (clean)
    speech, else the view's ``dataset.speech_tag(split)`` (e.g. ``noise-high-s0``), which a cache key must include."""
    tag = getattr(dataset, "speech_tag", None)
    return tag(split) if tag is not None else ""


def load(dataset: Any, cache_dir: str | Path, device: Any = "cpu", n_clips: int = 64, progress: bool = True):
    """The grounding splits of ``dataset`` (an opened dataset with annotation, feature, wav and word-vector paths).

    Built on first use (log-mels of every wav, clip features of every video), then read from the cache; the clip
    features standardised on train (:func:`standardize`). A view with other speech for some splits
    (:func:`speech_tag`) shares everything else with its clean dataset's data (``dataset.clean``) rather than holding
    a copy: only those splits' queries are its own.
    """
    tags = {s: speech_tag(dataset, s) for s in split_files(dataset)}
    key = (dataset.content_hash, n_clips, str(device), *(tags.values() if any(tags.values()) else ()))
    if key not in _LOADED:
        if any(tags.values()):
            clean = load(dataset.clean, cache_dir, device, n_clips, progress)
            _LOADED[key] = _with_other_speech(clean, dataset, Path(cache_dir) / "grounding", device, progress)
        else:
            _LOADED[key] = standardize(_load(dataset, Path(cache_dir) / "grounding", device, n_clips, progress))
    return _LOADED[key]


def standardize(data: GroundingData, eps: float = 1e-6) -> GroundingData:
    """``data`` with every split's clips ``(x - mean) / std``, per feature dimension, over the train split's clips.

    A dimension constant on train (std below ``eps``) is only centred. The statistics are in ``data.meta``.
    """
    flat = data.train.videos.reshape(-1, data.train.videos.shape[-1]).double()
    mean, std = flat.mean(0), flat.std(0)
    std = torch.where(std < eps, torch.ones_like(std), std)

    def scaled(split: GroundingSplit) -> GroundingSplit:
        videos = ((split.videos.double() - mean) / std).to(split.videos.dtype)
        return GroundingSplit(split.name, split.queries, videos)

    return dataclasses.replace(
        data,
        train=scaled(data.train),
        val=scaled(data.val),
        test=scaled(data.test),
        extra_tests={name: scaled(s) for name, s in data.extra_tests.items()},
        meta={**data.meta, "clip_mean": mean.float(), "clip_std": std.float()},
    )


def read_annotations(dataset: Any, split_file: str) -> activitynet.Annotations:
    """One annotation file of ``dataset`` (``train``, ``val_1``, ``val_2``, ``test_ood``), its moments labelled with
    the split of their speech files' names: the one way every method reads a split, so all see the same queries.

    Either format (ActivityNet Captions JSON or VGCL's lists). Bad entries are dropped and counted (``skipped``), the
    readers' documented rule: the real ``train.json`` has four empty or reversed spans, which leaves the paper's
    37,417 pairs; ``k`` keeps its number, so the wav names still match. A dataset that leaves valid queries out (a
    real root under ``--skip-missing``, whose wav is absent) names them in ``dataset.left_out(split_file)``; they are
    dropped too and counted in ``left_out``.
    """
    path = dataset.annotation_path(split_file)
    ann = activitynet.read_annotations(path, SPEECH_SPLIT.get(split_file, split_file), SkipPolicy(skip=True))
    drop = getattr(dataset, "left_out", lambda split: frozenset())(split_file)
    if drop:
        kept = [m for m in ann if m.qid not in drop]
        ann = dataclasses.replace(ann, moments=kept, left_out=len(ann) - len(kept))
    return ann


def _load(dataset: Any, cache: Path, device: Any, n_clips: int, progress: bool) -> GroundingData:
    annotations = {s: read_annotations(dataset, f) for s, f in split_files(dataset).items()}
    vocab = sorted({w for a in annotations.values() for m in a for w in tokenize(m.sentence)})
    vkey = loader.content_key(dataset.content_hash, "vocab", VERSION)
    vectors = loader.featurize_cached(f"vocab-{vkey}", cache, lambda: _vocab_split(dataset, vocab))
    word_row = {w: i + 1 for i, w in enumerate(vocab)}
    splits = {}
    for name, ann in annotations.items():
        base = (dataset.content_hash, name, n_clips, VERSION)
        q = _queries(dataset, name, ann, n_clips, word_row, cache, device, progress)
        v = loader.featurize_cached(
            f"videos-{name}-{loader.content_key(*base, 'videos')}",
            cache,
            lambda ann=ann: _video_split(dataset, ann, n_clips, progress),
            device,
        )
        splits[name] = GroundingSplit(name, q, v["video"])
    wv = vectors["vector"]
    word_vectors = torch.cat([wv.new_zeros(1, wv.shape[1]), wv]).to(device)
    extra = {name: splits.pop(name) for name in list(splits) if name in EXTRA_TESTS}
    return GroundingData(
        name=getattr(dataset, "name", "?"),
        content_hash=dataset.content_hash,
        n_clips=n_clips,
        vocab=vocab,
        word_vectors=word_vectors,
        meta={"oov_words": vectors.meta.get("oov", [])},
        extra_tests=extra,
        **splits,
    )


def _queries(dataset: Any, name: str, ann: activitynet.Annotations, n_clips: int, word_row: dict[str, int],
             cache: Path, device: Any, progress: bool) -> loader.PaddedSplit:  # fmt: skip
    """One split's query fields (log-mel, words, span), cached under a key that names the split's speech."""
    tag = speech_tag(dataset, name)
    key = loader.content_key(dataset.content_hash, name, n_clips, VERSION, "queries", *([tag] if tag else []))
    return loader.featurize_cached(f"queries-{name}-{tag + '-' if tag else ''}{key}", cache,
                                   lambda: _query_split(dataset, ann, word_row, progress), device)  # fmt: skip


def _with_other_speech(clean: GroundingData, dataset: Any, cache: Path, device: Any,
                       progress: bool) -> GroundingData:  # fmt: skip
    """``clean`` with the queries of each split whose speech ``dataset`` serves otherwise featurized from that speech;
    the videos (standardised already), the vocabulary and the other splits are ``clean``'s own objects."""
    word_row = {w: i + 1 for i, w in enumerate(clean.vocab)}
    splits = {}
    for name, split_file in split_files(dataset).items():
        split = clean.split(name)
        if speech_tag(dataset, name):
            ann = read_annotations(dataset, split_file)
            split = GroundingSplit(name, _queries(dataset, name, ann, clean.n_clips, word_row, cache, device, progress),
                                   split.videos)  # fmt: skip
        splits[name] = split
    extra = {name: splits.pop(name) for name in list(splits) if name in EXTRA_TESTS}
    return dataclasses.replace(clean, extra_tests=extra, **splits)


def _vocab_split(dataset: Any, vocab: list[str]) -> loader.PaddedSplit:
    from bench.data.glove import read_glove

    wv = read_glove(dataset.word_vectors_path, vocab=vocab)
    vectors = wv.lookup(vocab, unknown="zero")
    return loader.PaddedSplit({"vector": vectors}, vocab, {"oov": sorted(wv.unknown)})


def _video_split(dataset: Any, ann: activitynet.Annotations, n_clips: int, progress: bool) -> loader.PaddedSplit:
    from tqdm import tqdm

    videos = list(ann.videos)
    root = Path(dataset.features_path)
    store = c3d.open_features(root.parent if root.is_file() else root)
    with store:
        clips = [
            c3d.resample_to_clips(store.get(v), n_clips)
            for v in tqdm(videos, desc=f"clips {ann.split}", unit="video", disable=None if progress else True)
        ]
    return loader.PaddedSplit({"video": torch.stack(clips).float()}, videos)


def _query_split(
    dataset: Any, ann: activitynet.Annotations, word_row: dict[str, int], progress: bool
) -> loader.PaddedSplit:
    import soundfile as sf
    from tqdm import tqdm

    video_row = {v: i for i, v in enumerate(ann.videos)}
    items = []
    for m in tqdm(list(ann), desc=f"log-mel {ann.split}", unit="query", disable=None if progress else True):
        path = query_wav(dataset, m)
        try:
            wave, rate = sf.read(path, dtype="float32", always_2d=True)
        except (OSError, RuntimeError) as err:
            raise DataError(
                path, f"cannot read the query's speech ({err})", "restore the wav, or rebuild the data"
            ) from None
        mel = features.log_mel(torch.from_numpy(wave.mean(axis=1)), rate, where=str(path))
        words = [word_row[w] for w in tokenize(m.sentence)] or [0]
        items.append(
            {
                "video_idx": torch.tensor(video_row[m.video]),
                "mel": features.standardize(mel),
                "words": torch.tensor(words),
                "span": torch.tensor([m.start, m.end], dtype=torch.float32),
                "duration": torch.tensor(m.duration, dtype=torch.float32),
            }
        )
    return loader.PaddedSplit.from_items([m.qid for m in ann], items, ragged=("mel", "words"), split=ann.split)
