"""Frozen query features attached to every grounding split: what a method with a pre-trained speech encoder feeds
its grounding network (SIL's ``S~``, wav2vec 2.0's latent frames), encoded once per encoder and cached on disk."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from torch import Tensor

from bench.context import RunContext
from bench.data import corpus, grounding, loader

# (split name, the split, query id -> its wav) -> one [steps, dim] tensor per query, in the split's order
Encode = Callable[[str, grounding.GroundingSplit, dict[str, Path]], list[Tensor]]


def with_query_features(ctx: RunContext, data: grounding.GroundingData, prefix: str, key: Callable[[str], str],
                        encode: Encode) -> grounding.GroundingData:  # fmt: skip
    """``data`` with each query's features as ``sem`` / ``sem_len`` beside its other tensors.

    ``key(split name)`` names the cache entry (``<prefix>-<split>-<key>`` under ``<cache>/features``): it must change
    with the encoder and the data, since a cached entry is used as found; a split whose speech is not the dataset's
    own (:func:`bench.data.grounding.speech_tag`) gets an entry of its own. ``encode`` runs only on a cache miss, so
    an encoder it loads lazily is never loaded when every split is cached.
    """
    out = {}
    for name, split_file in grounding.split_files(ctx.data).items():
        split = data.split(name)

        def build(split: grounding.GroundingSplit = split, split_file: str = split_file,
                  name: str = name) -> loader.PaddedSplit:  # fmt: skip
            rows = encode(name, split, corpus.query_wavs(ctx.data, split_file))
            return loader.PaddedSplit.from_items(split.qids, [{"sem": r} for r in rows], ragged=("sem",))

        cache = Path(ctx.cache_dir) / "features"
        tag = grounding.speech_tag(ctx.data, name)  # augmented speech never meets the clean split's entry
        entry = f"{prefix}-{name}-{key(name)}"
        if tag:
            entry = f"{prefix}-{name}-{tag}-{loader.content_key(key(name), tag)}"
        sem = loader.featurize_cached(entry, cache, build, ctx.device)
        queries = loader.PaddedSplit({**split.queries.tensors, **sem.tensors}, split.qids, split.queries.meta)
        out[name] = grounding.GroundingSplit(name, queries, split.videos)
    extra = {name: out.pop(name) for name in list(out) if name in data.extra_tests}
    return dataclasses.replace(data, extra_tests=extra, **out)
