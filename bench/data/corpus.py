"""Speech with both of SIL's inputs: the pre-training corpus (LibriSpeech layout) and the grounding queries' wavs.

SIL's speech encoder reads every utterance twice (§3.3.1): the time-based feature (the wave, downsampled to 4 kHz
and standardised: :func:`bench.data.features.wave_input`) and the frequency-based feature (the 80-band log-mel,
standardised per utterance). :func:`speech_item` computes both from a 16 kHz file.

:func:`load_corpus` featurizes a pre-training subset (``10%``, ``50%`` or ``100%`` of ``corpus/subsets.json``; a
real LibriSpeech root without that file uses every utterance under it) into a device-resident
:class:`~bench.data.loader.PaddedSplit`: ``wave``, ``mel`` and ``words`` (1-based rows of the pre-training
vocabulary, 0 = padding, cut to ``max_words`` when one is given), cached like the grounding splits; a corpus whose
padded tensors would pass 8 GiB (LibriSpeech's 960 h) is kept on disk instead and read by batch, the same batches
(:mod:`bench.data.ondisk`, ``$WSVG_CORPUS_STORAGE``). The vocabulary
is every transcript word of the subset that has a word vector (the original code kept the LibriSpeech words found in
GloVe); the word vectors of those rows come with it. :func:`query_wavs` lists a grounding split's wav files by query id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from bench.data import features, librispeech, loader, ondisk
from bench.data.errors import DataError
from bench.data.world import tokenize

VERSION = 1


def speech_item(path: Path) -> dict[str, torch.Tensor]:
    """``wave`` [ceil(T/4)] at 4 kHz and ``mel`` [frames, 80], both standardised, from one 16 kHz file."""
    wave = librispeech.load_audio(path)
    return {
        "wave": features.wave_input(wave, where=str(path)),
        "mel": features.standardize(features.log_mel(wave, where=str(path))),
    }


def corpus_ids(corpus_root: Path, subset: str) -> list[str] | None:
    """The utterance ids of ``subset`` from ``subsets.json``, or None (every utterance) when the file is absent."""
    listing = Path(corpus_root) / "subsets.json"
    if not listing.exists():
        return None
    subsets = json.loads(listing.read_text())
    if subset not in subsets:
        raise DataError(listing, f"no subset {subset!r} (has {sorted(subsets)})", "choose one of those subsets")
    return list(subsets[subset])


def load_corpus(dataset: Any, cache_dir: str | Path, subset: str, max_words: int | None, device: Any = "cpu",
                progress: bool = True) -> tuple[loader.PaddedSplit, list[str], torch.Tensor]:  # fmt: skip
    """The pre-training utterances of ``subset``, the vocabulary and its word vectors ``[V + 1, D]`` (row 0 zero).

    ``max_words`` cuts each transcript's words (``None``: never cut); an utterance without any word that has a
    vector gets the single word row 0."""
    from bench.data.glove import read_glove

    root = Path(dataset.corpus_root)
    utterances = librispeech.read_librispeech(root, [p.name for p in sorted(root.iterdir()) if p.is_dir()])
    keep = corpus_ids(root, subset)
    if keep is not None:
        wanted = set(keep)
        utterances = [u for u in utterances if u.id in wanted]
    if not utterances:
        raise DataError(root, f"no pre-training utterances in subset {subset!r}", "rebuild or restore the corpus")
    words = sorted({w for u in utterances for w in tokenize(u.text)})
    vectors = read_glove(dataset.word_vectors_path, vocab=words)
    vocab = [w for w in words if w in vectors]
    table = torch.cat([torch.zeros(1, vectors.dim), vectors.lookup(vocab)])
    row = {w: i + 1 for i, w in enumerate(vocab)}
    key = loader.content_key(dataset.content_hash, "corpus", subset, max_words, VERSION)

    def items() -> Iterator[dict[str, torch.Tensor]]:
        from tqdm import tqdm

        for u in tqdm(utterances, desc=f"corpus {subset}", unit="utt", disable=None if progress else True):
            ids = [row[w] for w in tokenize(u.text) if w in row][:max_words] or [0]
            yield {**speech_item(u.path), "words": torch.tensor(ids)}

    ragged = ("wave", "mel", "words")
    cached = ondisk.cached_storage(f"corpus-{key}", cache_dir)
    if ondisk.choose_storage(lambda: padded_bytes([u.path for u in utterances]), cached) == "disk":
        ids = [u.id for u in utterances]
        split = ondisk.disk_cached(f"corpus-{key}", cache_dir, lambda: (ids, items()), ragged, ("wave", "mel"), device)
        return split, vocab, table.to(device)

    def build() -> loader.PaddedSplit:
        return loader.PaddedSplit.from_items([u.id for u in utterances], list(items()), ragged=ragged)

    split = loader.featurize_cached(f"corpus-{key}", cache_dir, build, device)
    return split, vocab, table.to(device)


def padded_bytes(paths: list[Path]) -> int:
    """What :func:`speech_item`'s ``wave`` and ``mel`` of these files take as padded float32 tensors, from their
    headers (the length of each file, nothing decoded): what decides whether the corpus stays in memory."""
    import soundfile as sf

    samples = [sf.info(str(p)).frames for p in paths]
    longest = max(samples, default=0)
    per_row = int(features.wave_len_for(longest)) + int(features.frames_for(longest)) * features.N_MELS
    return len(paths) * per_row * 4


def query_wavs(dataset: Any, split_file: str) -> dict[str, Path]:
    """Query id -> wav path for one annotation file (``train``, ``val_1``, ``val_2``, ``test_ood``), as the grounding
    data finds it (:func:`bench.data.grounding.query_wav`)."""
    from bench.data import grounding

    ann = grounding.read_annotations(dataset, split_file)
    return {m.qid: grounding.query_wav(dataset, m) for m in ann}
