"""``oracle-concept``: what the clip features allow, for a reader who knows the hidden concept (synthetic data only).

A reference row, not a method: it sees what no grounding method is given, the (verb, object) concept that the
synthetic benchmark planted in the queried moment (``bench/data/synth.py``), and scores the candidates with that
concept's prototype as a matched filter:

- per clip: the dot product of the clip feature, less the video's mean clip (which removes the scene vector shared
  by the whole video), with the concept's prototype;
- per candidate: the mean of the clip scores inside it minus the mean outside it (0 outside the whole video);
- candidates ranked by that score, the same candidate set as Base (:func:`methods.parts.proposals.candidates` at the
  profile's clip count), scored by the one evaluator.

It trains nothing and reads no speech or text. Its row says how far the features carry the moment: a learned
method far below it is limited by what it learns, not by the features (issue 14). Deterministic: every seed gives
the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from bench import config as cfg
from bench.context import MethodSpec, RunContext, RunResult, register
from bench.data import grounding
from methods.parts import proposals, recipe


@dataclass(frozen=True)
class OracleConfig:
    n_clips: int = 64


def oracle_config(profile: str) -> OracleConfig:
    return OracleConfig(n_clips=cfg.GROUNDING_CLIPS[cfg.check_profile(profile)])


def candidate_scores(clips: Tensor, prototype: Tensor, n_clips: int) -> Tensor:
    """Matched-filter scores ``[Q, n_cand]`` of clips ``[Q, N, D]`` against each query's prototype ``[Q, D]``."""
    x = clips - clips.mean(dim=1, keepdim=True)
    per_clip = torch.einsum("qnd,qd->qn", x, prototype)  # [Q, N]
    cand = proposals.candidates(n_clips).to(clips.device)
    steps = torch.arange(n_clips, device=clips.device)
    inside = ((steps[None] >= cand[:, :1]) & (steps[None] <= cand[:, 1:])).to(clips.dtype)  # [n_cand, N]
    n_in, n_out = inside.sum(1), (1 - inside).sum(1)
    mean_in = per_clip @ inside.T / n_in
    mean_out = torch.where(n_out > 0, per_clip @ (1 - inside).T / n_out.clamp_min(1), 0.0)
    return mean_in - mean_out


def run(ctx: RunContext) -> RunResult:
    from bench.data import synth

    c: OracleConfig = ctx.config
    if not isinstance(ctx.data, synth.SynthDataset):
        raise ValueError("oracle-concept needs the planted concepts of the synthetic benchmark: use --dataset synth")
    data = grounding.load(ctx.data, ctx.cache_dir, ctx.device, c.n_clips)
    protos, _ = synth.prototypes(synth.SynthConfig(**_config_fields(ctx.data.meta["config"])))
    protos = torch.from_numpy(protos).to(ctx.device)

    def score(split: grounding.GroundingSplit, split_file: str, path: Path | None) -> dict[str, float]:
        concept = torch.tensor(ctx.data.query_concepts(split_file, split.qids), device=ctx.device)
        clips = split.videos.index_select(0, split.queries["video_idx"])
        scores = candidate_scores(clips, protos[concept], c.n_clips)
        order = scores.argsort(dim=1, descending=True, stable=True)
        spans = proposals.candidate_spans(split.queries["duration"], c.n_clips)
        spans = spans.gather(1, order[..., None].expand(-1, -1, 2))
        return recipe.score_ranked(split, spans, scores.gather(1, order), path)

    files = grounding.split_files(ctx.data)
    val = score(data.val, files["val"], None)
    paths = {name: Path(ctx.workdir) / f"{name}_predictions.jsonl" for name in ("test", *data.extra_tests)}
    tests = {name: score(data.split(name), files[name], path) for name, path in paths.items()}
    return RunResult(test=tests.pop("test"), val_best=val, predictions=paths.pop("test"),
                     dataset_hash=data.content_hash, extra_tests=tests, extra_predictions=paths)  # fmt: skip


def _config_fields(raw: dict) -> dict:
    """``meta.json``'s config as SynthConfig's field types (JSON turns tuples into lists)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


register(
    MethodSpec(
        "oracle-concept",
        "Oracle (knows the planted concept)",
        ("ground",),
        "concept",
        "none",
        "reference, not a method: the true concept's prototype as a matched filter over Base's candidates "
        "(synthetic data only)",
        run=run,
        config=oracle_config,
        issue=14,
        seed_free=True,
    )
)  # fmt: skip (no randomness: one seed stands for all)
