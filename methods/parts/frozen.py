"""Frozen query features attached to every grounding split: what a method with a pre-trained speech encoder feeds
its grounding network (SIL's ``S~``, wav2vec 2.0's latent frames), encoded once per encoder and cached on disk."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from bench.context import RunContext
from bench.data import corpus, grounding, loader

# (split name, the split, query id -> its wav) -> one [steps, dim] tensor per query, in the split's order
Encode = Callable[[str, grounding.GroundingSplit, dict[str, Path]], list[Tensor]]
# a batch of speech items (log-mel and wave, padded) -> (features [B, T, D], lengths [B])
Features = Callable[[dict[str, Tensor]], tuple[Tensor, Tensor]]


def encode_speech(features: Features, name: str, split: grounding.GroundingSplit, wavs: dict[str, Path], device,
                  batch_size: int = 32) -> list[Tensor]:  # fmt: skip
    """Each query's frozen features ``[steps, D]`` in the split's order, ``batch_size`` utterances at a time read as
    the corpus reads speech (:func:`bench.data.corpus.speech_item`) and passed through ``features``."""
    from tqdm import tqdm

    rows = []
    bars = dict(desc=f"encode {name}", unit="batch", leave=False, disable=None)
    for lo in tqdm(range(0, len(split), batch_size), **bars):
        qids = split.qids[lo : lo + batch_size]
        items = [corpus.speech_item(wavs[q]) for q in qids]
        b = loader.PaddedSplit.from_items(qids, items, ragged=("wave", "mel")).to(device).tensors
        feats, lengths = features(b)
        rows.extend(feats[i, : lengths[i]].cpu() for i in range(len(qids)))
    return rows


def with_query_features(ctx: RunContext, data: grounding.GroundingData, prefix: str, key: Callable[[str], str],
                        encode: Encode) -> grounding.GroundingData:  # fmt: skip
    """``data`` with each query's features as ``sem`` / ``sem_len`` beside its other tensors.

    ``key(split name)`` names the cache entry (``<prefix>-<split>-<key>`` under ``<cache>/features``): it must change
    with the encoder and the data, since a cached entry is used as found; a split whose speech is not the dataset's
    own (:func:`bench.data.grounding.speech_tag`) gets an entry of its own. ``encode`` runs only on a cache miss, so
    an encoder it loads lazily is never loaded when every split is cached.
    """

    def rows(name: str, split: grounding.GroundingSplit, wavs: dict[str, Path]) -> list[dict[str, Tensor]]:
        return [{"sem": r} for r in encode(name, split, wavs)]

    return with_query_fields(ctx, data, prefix, key, rows, ragged=("sem",))


def with_query_fields(ctx: RunContext, data: grounding.GroundingData, prefix: str, key: Callable[[str], str],
                      rows: Callable[[str, grounding.GroundingSplit, dict[str, Path]], list[dict[str, Tensor]]],
                      ragged: tuple[str, ...]) -> grounding.GroundingData:  # fmt: skip
    """``data`` with the fields of ``rows(split name, split, query id -> wav)`` (one dict per query, in the split's
    order; the ``ragged`` ones padded with an ``_len`` companion) beside each split's query tensors, or in place
    of a field of the same name; cached as :func:`with_query_features` says."""
    out = {}
    for name, split_file in grounding.split_files(ctx.data).items():
        split = data.split(name)

        def build(split: grounding.GroundingSplit = split, split_file: str = split_file,
                  name: str = name) -> loader.PaddedSplit:  # fmt: skip
            items = rows(name, split, corpus.query_wavs(ctx.data, split_file))
            return loader.PaddedSplit.from_items(split.qids, items, ragged=ragged)

        cache = Path(ctx.cache_dir) / "features"
        tag = grounding.speech_tag(ctx.data, name)  # augmented speech never meets the clean split's entry
        entry = f"{prefix}-{name}-{key(name)}"
        if tag:
            entry = f"{prefix}-{name}-{tag}-{loader.content_key(key(name), tag)}"
        fields = loader.featurize_cached(entry, cache, build, ctx.device)
        queries = loader.PaddedSplit({**split.queries.tensors, **fields.tensors}, split.qids, split.queries.meta)
        out[name] = grounding.GroundingSplit(name, queries, split.videos)
    extra = {name: out.pop(name) for name in list(out) if name in data.extra_tests}
    return dataclasses.replace(data, extra_tests=extra, **out)


def with_stage_speech_features(ctx: RunContext, data: grounding.GroundingData, prefix: str, stage_key: str,
                               load: Callable[[], Any], batch_size: int = 32) -> grounding.GroundingData:  # fmt: skip
    """:func:`with_query_features` for an encoder saved by a pre-training stage that reads log-mel and wave: the
    encoder (``load()``, its ``features(batch)`` giving features and lengths) is loaded on the first cache miss,
    and the cache key names the stage, the data, the split and the speech featurizer's version."""
    encoder = None

    def encode(name: str, split: grounding.GroundingSplit, wavs: dict[str, Path]) -> list[Tensor]:
        nonlocal encoder
        encoder = encoder or load()
        return encode_speech(encoder.features, name, split, wavs, ctx.device, batch_size)

    def key(name: str) -> str:
        return loader.content_key(stage_key, data.content_hash, name, corpus.VERSION)

    return with_query_features(ctx, data, prefix, key, encode)
