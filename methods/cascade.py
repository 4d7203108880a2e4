"""The cascades: the words of the ASR output as the query of a text grounding method (Table 1's ASR-WSLLN, ASR-SCN,
ASR-RTBPN; Table 2's ASR-Base; App. B.3).

Builds on: ``methods.asr`` (the wav2vec 2.0 ASR and its cached transcripts), ``methods.base``, ``methods.wslln``,
``methods.rtbpn`` and ``methods.scn`` (the text networks it feeds). Each cascade is its text method's network and
configuration on the gold text, plus the nested ASR configuration (``asr``); only the words change
(:func:`methods.parts.textquery.with_transcripts`), and the run logs the transcripts' OOV rates. Table 1's
fine-tune cells are ``asr-wslln-ft``, ``asr-scn-ft`` and ``asr-rtbpn-ft``: the same on the transcripts of the ASR
fine-tuned on the grounding train split (:mod:`methods.asr`, "Fine-tuning").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

from bench.context import FINETUNE_SUFFIX, MethodSpec, RunContext, register
from bench.data import grounding
from methods import base, rtbpn, scn, wslln
from methods.parts import textquery


def profile_asr_config(profile: str) -> Any:
    """``methods.asr.asr_config(profile)``, imported on use (methods.asr imports transformers, which is slow)."""
    from methods import asr

    return asr.asr_config(profile)


def asr_data(ctx: RunContext, data: grounding.GroundingData) -> grounding.GroundingData:
    """The grounding data on the ASR transcripts of ``ctx.config.asr`` (the ASR stage is built on first use)."""
    from methods import asr

    new, stats = textquery.with_transcripts(data, asr.transcripts(ctx, ctx.config.asr))
    ctx.log.log_params(textquery.oov_params(stats))
    return new


def register_cascade(name: str, title: str, run: Callable[..., Any], config: Callable[[str], Any],
                     description: str, finetune_cell: bool = True) -> None:  # fmt: skip
    """Register ``asr-<name>``: ``run`` (which takes ``prepare``) on the ASR transcripts, ``config`` + ``asr``; and
    with ``finetune_cell``, ``asr-<name>-ft`` (Table 1's fine-tune cell): the same on the transcripts of the ASR
    fine-tuned on the grounding train split (``asr.finetune = true``, :mod:`methods.asr`'s "Fine-tuning")."""

    def asr_config(profile: str, finetune: bool = False) -> Any:
        asr_c = profile_asr_config(profile)
        if finetune:
            asr_c = dataclasses.replace(asr_c, finetune=True)
        return dataclasses.replace(config(profile), asr=asr_c)

    spec = MethodSpec(f"asr-{name}", f"ASR-{title}", ("asr", "ground"), "asr-text", "weak", description,
                      run=partial(run, prepare=asr_data), config=asr_config, issue=6)  # fmt: skip
    register(spec)
    if finetune_cell:
        register(dataclasses.replace(spec, name=f"{spec.name}{FINETUNE_SUFFIX}", title=f"{spec.title} (fine-tuned ASR)",
                                     description=f"{description}; the ASR fine-tuned with CTC on the grounding train "
                                     "split's speech and captions (Table 1)",
                                     config=partial(asr_config, finetune=True), issue=17))  # fmt: skip


register_cascade("base", "Base", base.run, partial(base.base_config, query="asr-text", supervision="weak"),
                 "Base on the words of the ASR output (the cascade of Table 2): wav2vec2 CTC, then Base (gold-text "
                 "form)", finetune_cell=False)  # fmt: skip
register_cascade("scn", "SCN", scn.run, scn.scn_config, f"{scn.DESCRIPTION}; on the ASR transcript")
register_cascade("wslln", "WSLLN", wslln.run, wslln.wslln_config, f"{wslln.DESCRIPTION}; on the ASR transcript")
register_cascade("rtbpn", "RTBPN", rtbpn.run, rtbpn.rtbpn_config, f"{rtbpn.DESCRIPTION}; on the ASR transcript")
