"""The ASR-text swap: a copy of the grounding data whose queries are the words of ASR transcripts, for the cascaded
rows (Table 1's ASR-WSLLN, ASR-SCN, ASR-RTBPN, Table 2's ASR-Base; App. B.3); and the text methods' word cut.

A cascaded method grounds the ASR transcript of each spoken query with a text-based grounding network. The
network and its word vectors are the same as on the gold text; only the words change. :func:`with_transcripts`
returns a copy of the grounding data whose every split has its ``words`` / ``words_len`` replaced by the
tokenised transcripts:

- tokenised with :func:`bench.data.world.tokenize`, the rule the grounding vocabulary was built with;
- mapped through the grounding vocabulary (``GroundingData.vocab``); a word outside it becomes row 0, the zero
  vector (2D-TAN's OOV rule, as for gold words without a vector);
- an empty transcript becomes the single padding row ``[0]`` of length 1, as an empty gold caption does
  (``bench.data.grounding``), so every query keeps at least one step for the recurrent encoders.

The share of transcript tokens outside the vocabulary is returned per split and overall (:class:`OovStats`);
:func:`oov_params` turns it into run parameters (``asr_oov_rate`` and ``asr_oov_rate_<split>``), which
``methods/cascade.py`` logs. The original data object is never modified: :func:`bench.data.grounding.load` shares it
between every method of a process. This module imports no method and registers none: the cascades that use it are
registered in ``methods/cascade.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bench.data import grounding, loader
from bench.data.world import tokenize


@dataclass(frozen=True)
class OovStats:
    """Token counts of one split's transcripts: all tokens, those outside the vocabulary, empty transcripts."""

    tokens: int
    oov: int
    empty: int

    @property
    def rate(self) -> float:
        return self.oov / self.tokens if self.tokens else 0.0


def transcript_rows(text: str, word_row: dict[str, int]) -> tuple[list[int], int, int]:
    """One transcript -> its vocabulary rows (OOV -> 0; empty -> ``[0]``), its token count and its OOV count."""
    rows = [word_row.get(w, 0) for w in tokenize(text)]
    return (rows or [0]), len(rows), sum(r == 0 for r in rows)


def replace_words(split: grounding.GroundingSplit, transcripts: dict[str, str],
                  word_row: dict[str, int]) -> tuple[grounding.GroundingSplit, OovStats]:  # fmt: skip
    """A copy of ``split`` whose ``words`` / ``words_len`` are the transcripts' rows; every query needs one."""
    missing = [q for q in split.qids if q not in transcripts]
    if missing:
        raise KeyError(
            f"split {split.name}: {len(missing)} queries have no ASR transcript (first: {missing[0]!r}); "
            "rebuild the ASR stage's transcripts for this dataset"
        )
    rows, tokens, oov, empty = [], 0, 0, 0
    for qid in split.qids:
        r, n_tokens, n_oov = transcript_rows(transcripts[qid], word_row)
        rows.append(torch.tensor(r, dtype=torch.long))
        tokens, oov, empty = tokens + n_tokens, oov + n_oov, empty + (n_tokens == 0)
    words, words_len = loader.pad_stack(rows)
    device = split.queries.device
    tensors = {**split.queries.tensors, "words": words.to(device), "words_len": words_len.to(device)}
    queries = loader.PaddedSplit(tensors, split.qids, {**split.queries.meta, "query_text": "asr"})
    return grounding.GroundingSplit(split.name, queries, split.videos), OovStats(tokens, oov, empty)


def with_transcripts(
    data: grounding.GroundingData, transcripts: dict[str, dict[str, str]]
) -> tuple[grounding.GroundingData, dict[str, OovStats]]:
    """A copy of ``data`` with every split's words replaced by its ASR transcripts (``{split: {qid: text}}``)."""
    word_row = {w: i + 1 for i, w in enumerate(data.vocab)}
    splits, stats = {}, {}
    for name in data.split_names:
        if name not in transcripts:
            raise KeyError(f"the ASR transcripts have no {name!r} split (they have {sorted(transcripts)})")
        splits[name], stats[name] = replace_words(data.split(name), transcripts[name], word_row)
    extra = {name: splits.pop(name) for name in data.extra_tests}
    return dataclasses.replace(data, meta={**data.meta, "query_text": "asr"}, extra_tests=extra, **splits), stats


def oov_params(stats: dict[str, OovStats]) -> dict[str, Any]:
    """Run parameters: the OOV rate over all transcript tokens and per split, and the empty transcripts."""
    tokens, oov = sum(s.tokens for s in stats.values()), sum(s.oov for s in stats.values())
    params: dict[str, Any] = {"asr_oov_rate": round(oov / tokens, 6) if tokens else 0.0}
    params |= {f"asr_oov_rate_{k}": round(s.rate, 6) for k, s in stats.items()}
    params["asr_empty_transcripts"] = sum(s.empty for s in stats.values())
    return params


def clip_words(batch: dict[str, Tensor], max_words: int | None) -> tuple[Tensor, Tensor]:
    """The batch's words cut to the first ``max_words`` (RTBPN's and SCN's loaders keep at most 20)."""
    words, length = batch["words"], batch["words_len"]
    if max_words is None:
        return words, length
    return words[:, :max_words], length.clamp(max=max_words)
