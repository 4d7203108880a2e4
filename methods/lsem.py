"""The text backbones on SIL's L_sem-pre-trained speech encoder (Table 1's WSLLN + L_sem and RTBPN + L_sem; §4.2: "we
keep almost all architecture as same as the original backbones but replace the text encoder with the speech encoder").

Builds on: ``methods.sil`` (the pre-training stage and frozen features of ``base+lsem``), ``methods.wslln`` and
``methods.rtbpn`` (the backbones). ``<name>+lsem`` is the backbone's configuration with ``query = "features"`` and, as
``asp``, the encoder configuration of ``base+lsem`` (:data:`methods.sil.SEM` at the profile's sizes), so the
pre-training is the same cached stage as ``base+lsem``'s (same key: one build serves every row and seed) and the
frozen features are the same cached encodings. :func:`lsem_run` adds them to every split as ``sem`` /
``sem_len`` (SIL's :func:`methods.sil.with_speech_features`), or with ``finetune = true`` (``<name>+lsem-ft``,
Table 1's fine-tune column) puts the encoder itself in front of the backbone; the backbone reads them through a
trainable FC layer (:class:`methods.parts.encoders.FeatureEncoder`) in place of its word vectors, then its own
Bi-GRU (App. B.3's recipe for a frozen pre-trained encoder). Seeding follows SIL's (``asp.seeding``), and the run
logs ``spread``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

from bench.context import MethodSpec, RunContext, RunResult, finetuned, register
from bench.data import grounding
from methods import rtbpn, sil, wslln
from methods.parts.finetune import Finetune


def lsem_run(run: Callable[..., RunResult], ctx: RunContext) -> RunResult:
    """The backbone's ``run`` on SIL's pre-training stage of ``ctx.config.asp`` (built on first use, then reused):
    on its cached frozen encodings as ``sem`` / ``sem_len`` (``methods.sil.run``'s features), or with
    ``finetune = true`` on the encoder itself, trained with the backbone (:mod:`methods.parts.finetune`)."""
    asp_cfg = ctx.config.asp
    asp_c = sil.pretrain_config(asp_cfg, ctx.seed)
    ctx.log.log_params({"spread": sil.SPREAD[asp_cfg.seeding], "asp.pretrain_seed": asp_c.seed})
    st, _ = sil.pretrain_stage(ctx, asp_c)
    if ctx.config.finetune:
        return run(ctx, finetune=Finetune(lambda: sil.load_encoder(st, asp_c, ctx.device)))

    def speech_features(ctx: RunContext, data: grounding.GroundingData) -> grounding.GroundingData:
        return sil.with_speech_features(ctx, data, st, asp_c)

    return run(ctx, prepare=speech_features)


def lsem_encoder_config(profile: str) -> Any:
    """The encoder configuration of ``base+lsem`` at ``profile``: L_sem alone (``methods.sil.SEM``)."""
    return sil.sil_config(profile, asp=sil.SEM).asp


def register_lsem(name: str, title: str, run: Callable[..., Any], config: Callable[[str], Any],
                  description: str) -> None:  # fmt: skip
    """Register ``<name>+lsem``: the backbone on the frozen L_sem speech encoder's features (``query = "features"``),
    pre-trained by the same cached stage as ``base+lsem``; and ``<name>+lsem-ft``, Table 1's fine-tune column of
    the row."""

    def lsem_config(profile: str) -> Any:
        return dataclasses.replace(config(profile), query="features", asp=lsem_encoder_config(profile))

    spec = register(MethodSpec(f"{name}+lsem", f"{title} + L_sem", ("pretrain", "ground"), "speech", "weak",
                               f"{description}; on the frozen L_sem speech encoder (FC + Bi-GRU in place of the word "
                               "vectors)", run=partial(lsem_run, run), config=lsem_config, issue=17))  # fmt: skip
    register(finetuned(spec))


register_lsem("wslln", "WSLLN", wslln.run, wslln.wslln_config, wslln.DESCRIPTION)
register_lsem("rtbpn", "RTBPN", rtbpn.run, rtbpn.rtbpn_config, rtbpn.DESCRIPTION)
