"""Text-query grounding methods (WSLLN, RTBPN, SCN): ASR transcripts as queries, the L_sem speech encoder in place
of the text encoder, registration, the shared run.

**ASR output as the query** (Table 1's cascaded rows ASR-WSLLN, ASR-SCN, ASR-RTBPN; App. B.3).

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
:func:`asr_data` logs it as run parameters (``asr_oov_rate`` and ``asr_oov_rate_<split>``). The original data
object is never modified: :func:`bench.data.grounding.load` shares it between every method of a process.

**Registration** (:func:`register_pair`): each text method is registered twice, on the gold transcript
(``<name>-text``: Table 9's bracketed numbers) and on the ASR output (``asr-<name>``: Table 1, Table 9), with
the same network and configuration plus the nested ASR configuration. **The run** (:func:`run_text_grounding`):
data (and transcripts), model, :class:`bench.train.Task`, :func:`bench.train.fit`, as Base does it.

**The L_sem-pre-trained speech encoder as the query** (Table 1's WSLLN + L_sem and RTBPN + L_sem; §4.2: "we keep
almost all architecture as same as the original backbones but replace the text encoder with the speech encoder").
:func:`register_lsem` registers ``<name>+lsem``: the backbone's configuration with ``query = "features"`` and, as
``asp``, the encoder configuration of ``base+lsem`` (:data:`methods.sil.SEM` at the profile's sizes), so the
pre-training is the same cached stage as ``base+lsem``'s (same key: one build serves every row and seed) and the
frozen features are the same cached encodings. :func:`speech_feature_data` adds them to every split as ``sem`` /
``sem_len`` (SIL's :func:`methods.sil.with_speech_features`); the backbone reads them through a trainable FC layer
(:class:`methods.parts.encoders.FeatureEncoder`) in place of its word vectors, then its own Bi-GRU (App. B.3's
recipe for a frozen pre-trained encoder). Seeding follows SIL's (``asp.seeding``), and the run logs ``spread``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.context import RunContext, RunResult
from bench.data import grounding, loader
from bench.data.world import tokenize
from bench.train import fit_grounding
from methods.registry import MethodSpec, register


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


def asr_data(ctx: Any, data: grounding.GroundingData, asr_cfg: Any) -> grounding.GroundingData:
    """The grounding data on the ASR transcripts of ``methods.asr`` (the ASR stage is built on first use)."""
    from methods import asr

    new, stats = with_transcripts(data, asr.transcripts(ctx, asr_cfg))
    ctx.log.log_params(oov_params(stats))
    return new


def profile_asr_config(profile: str) -> Any:
    """``methods.asr.asr_config(profile)``, imported on use (methods.asr imports transformers, which is slow)."""
    from methods import asr

    return asr.asr_config(profile)


# -- shared training pieces -------------------------------------------------------------------------------------


def partner(video_idx: Tensor) -> tuple[Tensor, Tensor]:
    """Base's negative sampling (``methods.base.weak_loss``): a random cyclic shift of the batch gives each sample a
    partner ``other[b] != b``; ``distinct[b]`` is False where the partner shows the same video (not a negative)."""
    b = video_idx.shape[0]
    shift = int(torch.randint(1, b, (1,))) if b > 1 else 0
    other = torch.roll(torch.arange(b, device=video_idx.device), shift)
    return other, video_idx[other] != video_idx


def clip_words(batch: dict[str, Tensor], max_words: int | None) -> tuple[Tensor, Tensor]:
    """The batch's words cut to the first ``max_words`` (RTBPN's and SCN's loaders keep at most 20)."""
    words, length = batch["words"], batch["words_len"]
    if max_words is None:
        return words, length
    return words[:, :max_words], length.clamp(max=max_words)


def speech_feature_data(ctx: Any, data: grounding.GroundingData, asp_cfg: Any) -> grounding.GroundingData:
    """The grounding data with each query's frozen speech features as ``sem`` / ``sem_len``: SIL's pre-training
    stage of ``asp_cfg`` (built on first use, then reused) and its cached encodings, as ``methods.sil.run`` does."""
    from methods import sil

    asp_c = sil.pretrain_config(asp_cfg, ctx.seed)
    ctx.log.log_params({"spread": sil.SPREAD[asp_cfg.seeding], "asp.pretrain_seed": asp_c.seed})
    st, _ = sil.pretrain_stage(ctx, asp_c)
    return sil.with_speech_features(ctx, data, st, asp_c)


def run_text_grounding(
    ctx: RunContext,
    build: Callable[[grounding.GroundingData], nn.Module],
    loss: Callable[[nn.Module, dict[str, Tensor]], tuple[Tensor, dict[str, float]]],
    evaluate_split: Callable[[nn.Module, grounding.GroundingSplit, Path | None], dict[str, float]],
) -> RunResult:
    """Train on train, select on val, test once (``bench.train.fit``); on ASR transcripts for an ``asr-text`` spec,
    on the frozen speech encoder's features for a ``speech`` one (``<name>+lsem``).

    ``ctx.config`` needs ``n_clips``, ``train``, ``select_on`` and ``asr`` (and ``asp`` for a ``speech`` spec).
    """
    c = ctx.config
    data = grounding.load(ctx.data, ctx.cache_dir, ctx.device, c.n_clips)
    if ctx.spec.query == "asr-text":
        data = asr_data(ctx, data, c.asr)
    elif ctx.spec.query == "speech":
        data = speech_feature_data(ctx, data, c.asp)
    model = build(data).to(ctx.device)
    ctx.log.log_params({"parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)})
    return fit_grounding(ctx, model, lambda batch: loss(model, batch), data, c.train, c.select_on,
                         lambda split, path: evaluate_split(model, split, path))  # fmt: skip


def register_pair(name: str, title: str, run: Callable[[RunContext], RunResult], config: Callable[[str], Any],
                  text_rows: tuple[str, ...], asr_rows: tuple[str, ...], description: str) -> None:  # fmt: skip
    """Register ``<name>-text`` (gold transcript) and ``asr-<name>`` (ASR output, the same config + ``asr``)."""

    def asr_config(profile: str) -> Any:
        return dataclasses.replace(config(profile), asr=profile_asr_config(profile))

    register(MethodSpec(f"{name}-text", f"{title} (gold text)", ("ground",), "gold-text", "weak", text_rows,
                        f"{description}; on the gold transcript", run=run, config=config, issue=6))  # fmt: skip
    register(MethodSpec(f"asr-{name}", f"ASR-{title}", ("asr", "ground"), "asr-text", "weak", asr_rows,
                        f"{description}; on the ASR transcript", run=run, config=asr_config, issue=6))  # fmt: skip


def lsem_encoder_config(profile: str) -> Any:
    """The encoder configuration of ``base+lsem`` at ``profile``: L_sem alone (``methods.sil.SEM``)."""
    from methods import sil

    return sil.sil_config(profile, asp=sil.SEM).asp


def register_lsem(name: str, title: str, run: Callable[[RunContext], RunResult], config: Callable[[str], Any],
                  rows: tuple[str, ...], description: str) -> None:  # fmt: skip
    """Register ``<name>+lsem``: the backbone on the frozen L_sem speech encoder's features (``query = "features"``),
    pre-trained by the same cached stage as ``base+lsem``."""

    def lsem_config(profile: str) -> Any:
        return dataclasses.replace(config(profile), query="features", asp=lsem_encoder_config(profile))

    register(MethodSpec(f"{name}+lsem", f"{title} + L_sem", ("pretrain", "ground"), "speech", "weak", rows,
                        f"{description}; on the frozen L_sem speech encoder (FC + Bi-GRU in place of the word "
                        "vectors)", run=run, config=lsem_config, issue=17))  # fmt: skip
