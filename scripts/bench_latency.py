"""Table 2 of SIL: inference latency at batch 1 of SIL, ASR-Base and ASR-RTBPN, measured here (never asserted).

Prints ms per query (median, mean, 10th-90th percentile) for each system and the speed-up ratios, and records one
tracked run per system so that ``bench table 2`` shows the numbers in its "ours" lines.

What one query costs, timed (§4.4: "the average time required to ground one spoken query ... the computation cost
of data pre-processing is excluded"; Table 2: batch size 1):

- **SIL**: the frozen speech encoder (``methods.sil.ASPEncoder.features``: both domains, CIF, the shared layers) on
  the one-query batch, then ``SILNet`` scoring the 153 proposals of the query's video, then the top-1;
- **ASR-Base**: ``Wav2Vec2ForCTC`` forward, greedy CTC decoding to text (``methods.asr``), tokenisation into the
  grounding vocabulary (``methods.parts.textquery.transcript_rows``), then Base on the words (``methods.base``,
  query ``asr-text``) scoring the proposals, then the top-1;
- **ASR-RTBPN**: the same ASR and tokenisation, then RTBPN's network (``methods.rtbpn``).

Not timed (the paper's "data pre-processing"): reading and resampling the wav, the 4 kHz wave and log-mel features
of SIL, the wav2vec2 processor's normalisation, and the query video's clip features, all prepared (and moved to the
device) before the clock starts. On CUDA the device is synchronised before each clock reading.

Why in one process, query by query: a shared 2-core machine drifts (other jobs, frequency scaling, caches). The three
systems take turns on each query, after a warm-up, with the order rotated from query to query, so that each sees the
same conditions and the ratios stay meaningful when the absolute times move.

Weights: latency does not depend on them, so the script never trains. It loads the trained SIL encoder (the ``asp``
stage of ``bench run --method sil``) and the trained ASR (the ``asr`` stage, or ``ASRConfig.checkpoint``) when they
are cached, and otherwise builds freshly initialised networks of the same configuration; the grounding networks are
always freshly initialised (seed 0). The output says which. A fresh ASR emits gibberish, whose length (and so the
tokenisation and the text encoder's cost) can differ from a trained one's: the trained stage is the better setting.

What is recorded (unless ``--no-log``): one FINISHED run per system with params ``method`` (``sil``, ``asr-base``,
``asr-rtbpn``: Table 2's rows), ``dataset``, ``profile``, ``seed`` 0, ``measure = latency`` and the weights used, and
metrics ``test/latency_s`` (mean seconds per query, the paper's "average") and ``test/speedup`` as Table 2 defines it,
relative to ASR-Base (ASR-Base 1.00x, ASR-RTBPN 0.95x, SIL 2.04x in the paper): ASR-Base's mean latency divided by
the row's. Median and percentiles are logged beside them (``test/latency_median_s`` ...), per-query seconds as an
artifact. ``bench.tables`` aggregates latency runs apart from the training runs of the same method and seed, so a
newer latency run never hides a grounding run's accuracy (it only adds the latency cells the training runs lack).

**At the paper's sizes** (``--sizes paper``): latency does not depend on the weights, so the three systems are built
from the ``paper`` profile's configurations with fresh weights: a wav2vec2-base-sized ``Wav2Vec2ForCTC`` (12 layers
of 768), SIL's encoder and grounding network at d = 256 over 64 clips, Base and RTBPN at their paper sizes; they run
on the queries of ``--profile``'s test split (their real speech, their videos' clips at 64) interleaved at batch 1 as
above. The runs are recorded with ``measure = latency-paper-sizes`` and the metrics ``test/latency_paper_s`` and
``test/speedup_paper``, which ``bench table 2`` shows as columns of their own beside the small sizes' and the paper's.

Usage: ``OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_latency.py --profile small --queries 100 [--sizes paper]``
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench import config as cfg
from bench import datasets, tables, tracking
from bench.data import corpus, grounding, loader
from bench.data.librispeech import load_audio
from methods import asr, registry, rtbpn, sil
from methods.base import BaseNet
from methods.parts import proposals, textquery

SYSTEMS: tuple[str, ...] = ("asr-base", "asr-rtbpn", "sil")  # Table 2's rows, in its order
LABELS = {"asr-base": "ASR-Base", "asr-rtbpn": "ASR-RTBPN", "sil": "SIL"}
REFERENCE = "asr-base"  # Table 2's speed-up is relative to ASR-Base (1.00x)
Top1 = dict[str, dict[str, tuple[float, float]]]  # system -> query id -> its top-1 span (start, end) in seconds


@dataclass
class Query:
    """One test query, pre-processed (untimed): every tensor already on the device."""

    qid: str
    video: Tensor  # [1, N, D] clip features of the query's video
    speech: dict[str, Tensor]  # SIL's input: wave, wave_len (4 kHz), mel, mel_len
    values: Tensor  # [1, S] the wav2vec2 processor's normalised 16 kHz wave
    mask: Tensor  # [1, S] its attention mask
    spans: Tensor  # [n_cand, 2] the candidates in seconds (CPU), to name the top-1


@dataclass
class Models:
    """The three systems' networks (eval mode) and what their weights are."""

    encoder: sil.ASPEncoder
    sil_net: sil.SILNet
    asr_model: Any  # Wav2Vec2ForCTC
    processor: Any  # Wav2Vec2Processor
    base_net: BaseNet
    rtbpn_net: rtbpn.RTBPNNet
    word_row: dict[str, int]  # grounding vocabulary word -> row of the word vectors
    weights: dict[str, str]  # encoder / asr / grounding -> "trained (...)" or "fresh (...)"
    configs: dict[str, Any]  # system -> its method configuration (logged as config_hash)

    @property
    def use_mask(self) -> bool:
        """As ``methods.asr.recognise``: the mask only for checkpoints whose feature extractor returns one."""
        return bool(getattr(self.processor.feature_extractor, "return_attention_mask", True))


@dataclass
class LatencyResult:
    """Seconds per query for each system, each query's top-1 span, and where the numbers were recorded."""

    dataset: str
    profile: str  # the dataset's profile (the queries)
    sizes: str  # the systems' profile: the dataset's, or "paper"
    device: str
    threads: int
    commit: str
    queries: list[str]
    seconds: dict[str, list[float]]
    top1: Top1
    transcripts: dict[str, dict[str, str]]  # cascaded system -> qid -> the ASR text it grounded
    models: Models
    run_ids: dict[str, str] = field(default_factory=dict)

    def mean(self, system: str) -> float:
        return statistics.fmean(self.seconds[system])

    def median(self, system: str) -> float:
        return statistics.median(self.seconds[system])

    def percentiles(self, system: str) -> tuple[float, float]:
        """The 10th and 90th percentiles (inclusive method: they stay within the measured range)."""
        values = self.seconds[system]
        if len(values) < 2:
            return values[0], values[0]
        deciles = statistics.quantiles(values, n=10, method="inclusive")
        return deciles[0], deciles[-1]

    @property
    def ratios(self) -> dict[str, float]:
        """Each cascade's mean latency over SIL's: ``{"asr-base": ASR-Base / SIL, "asr-rtbpn": ASR-RTBPN / SIL}``."""
        return {s: self.mean(s) / self.mean("sil") for s in ("asr-base", "asr-rtbpn")}

    def speedup(self, system: str) -> float:
        """Table 2's speed-up of a row: ASR-Base's mean latency over the row's (ASR-Base itself: 1.0)."""
        return self.mean(REFERENCE) / self.mean(system)


# -- pre-processing (untimed) ----------------------------------------------------------------------------------


def prepare_queries(dataset: Any, test: grounding.GroundingSplit, n: int, n_clips: int, device: torch.device
                    ) -> list[Query]:  # fmt: skip
    """The first ``n`` test queries with every input computed and on the device, as the methods' caches hold them."""
    wavs = corpus.query_wavs(dataset, grounding.SPLIT_FILES["test"])
    durations = test.queries["duration"].cpu()
    video_idx = test.queries["video_idx"].cpu()
    out = []
    for i, qid in enumerate(test.qids[:n]):
        speech = loader.PaddedSplit.from_items([qid], [corpus.speech_item(wavs[qid])], ragged=("wave", "mel"))
        values, mask = asr.pad_batch([load_audio(wavs[qid], resample=True)])
        out.append(
            Query(
                qid=qid,
                video=test.videos[int(video_idx[i])][None].to(device),
                speech=speech.to(device).tensors,
                values=values.to(device),
                mask=mask.to(device),
                spans=proposals.candidate_spans(durations[i : i + 1], n_clips)[0],
            )
        )
    return out


# -- the timed paths ------------------------------------------------------------------------------------------------


@torch.no_grad()
def ground_sil(m: Models, q: Query) -> tuple[Tensor, None]:
    """Frozen encoder -> SILNet -> the top-1 candidate (the evaluator's ranking: sigmoid scores, first maximum)."""
    sem, sem_len = m.encoder.features(q.speech)
    logits = m.sil_net({"sem": sem, "sem_len": sem_len, "video": q.video})
    return torch.sigmoid(logits).argmax(1), None


@torch.no_grad()
def transcribe(m: Models, q: Query) -> str:
    """``methods.asr.recognise`` for one pre-processed query: forward, greedy CTC, ids -> lower-case words."""
    logits = m.asr_model(q.values, attention_mask=q.mask if m.use_mask else None).logits
    lengths = m.asr_model._get_feat_extract_output_lengths(q.mask.sum(-1))
    ids = asr.ctc_greedy(logits, lengths, m.processor.tokenizer.pad_token_id)[0]
    return asr.ids_to_text(ids, m.processor.tokenizer)


@torch.no_grad()
def ground_cascade(m: Models, net: torch.nn.Module, q: Query) -> tuple[Tensor, str]:
    """ASR -> grounding-vocabulary rows (``textquery``'s rule: OOV -> 0, empty -> [0]) -> the text network's top-1."""
    text = transcribe(m, q)
    rows, _, _ = textquery.transcript_rows(text, m.word_row)
    words = torch.tensor([rows], device=q.video.device)
    words_len = torch.tensor([len(rows)], device=q.video.device)
    logits = net({"words": words, "words_len": words_len, "video": q.video})
    return torch.sigmoid(logits).argmax(1), text


def runners(m: Models) -> dict[str, Callable[[Query], tuple[Tensor, str | None]]]:
    return {
        "asr-base": lambda q: ground_cascade(m, m.base_net, q),
        "asr-rtbpn": lambda q: ground_cascade(m, m.rtbpn_net, q),
        "sil": lambda q: ground_sil(m, q),
    }


# -- the models -------------------------------------------------------------------------------------------------------


def build_models(profile: str, data: grounding.GroundingData, dataset_hash: str, cache_dir: Path,
                 device: torch.device) -> Models:  # fmt: skip
    """Trained weights where their stage is cached (never built here), fresh ones otherwise; grounding nets fresh."""
    sil_c = registry.get("sil").config(profile)
    base_c = registry.get("asr-base").config(profile)
    # asr-rtbpn's registered config is RTBPN's plus the nested ASR (methods/cascade.py); built here from the
    # same parts, with ASR-Base's ASR, since both cascades of Table 2 share one recogniser
    rtbpn_c = dataclasses.replace(rtbpn.rtbpn_config(profile), asr=base_c.asr)
    configs = {"sil": sil_c, "asr-base": base_c, "asr-rtbpn": rtbpn_c}
    weights: dict[str, str] = {}

    st = sil.asp_stage(cache_dir, sil_c.asp, dataset_hash)
    if st.done:
        encoder = sil.load_encoder(st, sil_c.asp, device)
        weights["encoder"] = f"trained (asp stage {st.key})"
    else:
        torch.manual_seed(0)
        encoder = sil.ASPEncoder(sil_c.asp).to(device).eval()
        weights["encoder"] = f"fresh (asp stage {st.key} not built: `bench run --method sil` builds it)"

    c = base_c.asr
    from bench.data.wav2vec2 import load_wav2vec2

    if c.checkpoint:
        asr_model, processor = load_wav2vec2(c.checkpoint, str(device))
        weights["asr"] = f"checkpoint {c.checkpoint}"
    else:
        ast = asr.asr_stage(cache_dir, c, dataset_hash)
        if ast.done:
            asr_model, processor = load_wav2vec2(ast.path / "model", str(device))
            weights["asr"] = f"trained (asr stage {ast.key})"
        else:
            torch.manual_seed(0)
            asr_model = asr.new_model(c).to(device).eval()
            with tempfile.TemporaryDirectory() as tmp:  # the tokenizer reads vocab.json once, at construction
                processor = asr.new_processor(Path(tmp))
            weights["asr"] = f"fresh (asr stage {ast.key} not built: `bench run --method asr-wav2vec2` builds it)"

    video_dim = data.test.videos.shape[-1]
    torch.manual_seed(0)
    sil_net = sil.SILNet(sil_c, video_dim, sil_c.asp.d).to(device).eval()
    torch.manual_seed(0)
    base_net = BaseNet(base_c, video_dim, data.word_vectors.cpu()).to(device).eval()
    torch.manual_seed(0)
    rtbpn_net = rtbpn.RTBPNNet(rtbpn_c, video_dim, data.word_vectors.cpu()).to(device).eval()
    weights["grounding"] = "fresh (seed 0; latency does not depend on the weights)"
    word_row = {w: i + 1 for i, w in enumerate(data.vocab)}
    return Models(encoder, sil_net, asr_model, processor, base_net, rtbpn_net, word_row, weights, configs)


# -- measuring, printing, recording -----------------------------------------------------------------------------------


def measure(m: Models, queries: Sequence[Query], warmup: int, device: torch.device
            ) -> tuple[dict[str, list[float]], Top1, dict[str, dict[str, str]]]:  # fmt: skip
    """Round-robin over the systems for each query (order rotated per query), after ``warmup`` unmeasured queries."""
    run = runners(m)
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    for q in queries[:warmup]:
        for name in SYSTEMS:
            run[name](q)
    sync()
    gc.collect()
    seconds: dict[str, list[float]] = {s: [] for s in SYSTEMS}
    top1: Top1 = {s: {} for s in SYSTEMS}
    texts: dict[str, dict[str, str]] = {"asr-base": {}, "asr-rtbpn": {}}
    for i, q in enumerate(queries):
        k = i % len(SYSTEMS)
        for name in SYSTEMS[k:] + SYSTEMS[:k]:
            sync()
            t0 = time.perf_counter()
            top, text = run[name](q)
            sync()
            seconds[name].append(time.perf_counter() - t0)
            start, end = q.spans[int(top)].tolist()
            top1[name][q.qid] = (start, end)
            if text is not None:
                texts[name][q.qid] = text
    return seconds, top1, texts


def report(r: LatencyResult, warmup: int) -> str:
    """The printed table: ms per query for each system, the speed-ups, and the paper's numbers beside them."""
    paper = {row.method: row.paper for row in tables.load_table(2).rows}
    lines = [
        f"Table 2 latency: {r.dataset}/{r.profile}, systems at the {r.sizes} profile's sizes, device {r.device}, "
        f"{r.threads} thread(s), batch 1, {len(r.queries)} test queries (after {warmup} warm-up), commit {r.commit}",
        *[f"  weights, {k}: {v}" for k, v in r.models.weights.items()],
        "",
        "| System | median ms | mean ms | p10-p90 ms | speed-up vs ASR-Base (mean) | paper: latency, speed-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in SYSTEMS:
        p10, p90 = r.percentiles(s)
        pp = paper[s]
        lines.append(
            f"| {LABELS[s]} | {1000 * r.median(s):.2f} | {1000 * r.mean(s):.2f} | {1000 * p10:.2f}-{1000 * p90:.2f} "
            f"| {r.speedup(s):.2f}x | {pp['latency_s']:.3f} s, {pp['speedup']:.2f}x |"
        )
    paper_sil = paper["sil"]["latency_s"]
    ratio = r.ratios
    lines += [
        "",
        f"ASR-Base / SIL = {ratio['asr-base']:.2f}x   ASR-RTBPN / SIL = {ratio['asr-rtbpn']:.2f}x   "
        f"(ratios of mean latencies; the paper's: {paper['asr-base']['latency_s'] / paper_sil:.2f}x and "
        f"{paper['asr-rtbpn']['latency_s'] / paper_sil:.2f}x)",
        f"by medians: {r.median('asr-base') / r.median('sil'):.2f}x and {r.median('asr-rtbpn') / r.median('sil'):.2f}x",
    ]
    return "\n".join(lines)


def record(r: LatencyResult, dataset_hash: str, warmup: int) -> dict[str, str]:
    """One FINISHED tracked run per system, read by ``bench table 2``; returns the run ids."""
    run_ids = {}
    paper_sizes = r.sizes == "paper" and r.profile != "paper"
    suffix = "_paper" if paper_sizes else ""  # latency_s / latency_paper_s: Table 2's columns, small and paper sizes
    for s in SYSTEMS:
        p10, p90 = r.percentiles(s)
        params = {
            "method": s,
            "dataset": r.dataset,
            "profile": r.profile,
            "seed": 0,
            "device": r.device,
            "table": 2,
            "measure": "latency-paper-sizes" if paper_sizes else "latency",
            "latency.sizes": r.sizes,
            "config_hash": cfg.config_hash(r.models.configs[s]),
            "dataset_hash": dataset_hash,
            "latency.queries": len(r.queries),
            "latency.warmup": warmup,
            "latency.batch_size": 1,
            "latency.threads": r.threads,
            "latency.preprocessing": "excluded",
            "latency.reference": REFERENCE,
            **{f"weights.{k}": v for k, v in r.models.weights.items()},
        }
        with tracking.start_run(f"{s}/{r.dataset}/{r.profile}/latency{suffix}", params,
                                tags={"wsvg.rows": f"table2:{s}"}) as log:  # fmt: skip
            log.log_metrics({f"latency{suffix}_s": r.mean(s), f"speedup{suffix}": r.speedup(s),
                             f"latency{suffix}_median_s": r.median(s), f"latency{suffix}_p10_s": p10,
                             f"latency{suffix}_p90_s": p90}, prefix="test/")  # fmt: skip
            log.log_dict({"queries": r.queries, "seconds": r.seconds[s]}, "latency/seconds.json")
            run_ids[s] = log.run_id or ""
    return run_ids


def main(argv: list[str] | None = None) -> LatencyResult:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="small", choices=cfg.PROFILES)
    p.add_argument("--dataset", default="synth", choices=datasets.DATASET_NAMES)
    p.add_argument("--queries", type=int, default=100, help="the first N queries of the test split (default 100)")
    p.add_argument("--warmup", type=int, default=5, help="unmeasured queries first (default 5)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--no-log", action="store_true", help="print only; record no tracked runs")
    p.add_argument("--sizes", default=None, choices=cfg.PROFILES,
                   help="build the systems at this profile's sizes (paper: wav2vec2-base, d = 256, 64 clips; fresh "
                   "weights) on --profile's queries; default: --profile's own")  # fmt: skip
    args = p.parse_args(argv)
    sizes = args.sizes or args.profile

    if datasets.spec(args.dataset).annotations_only:
        p.error(f"dataset {args.dataset!r} has no speech or video features; Table 2 needs both (use synth)")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cache_dir = tracking.runs_home() / "cache"
    dataset = datasets.open_dataset(args.dataset, args.profile, torch.device("cpu"))
    n_clips = registry.get("sil").config(sizes).ground.n_clips
    data = grounding.load(dataset, cache_dir, "cpu", n_clips, progress=False)
    models = build_models(sizes, data, dataset.content_hash, cache_dir, device)
    queries = prepare_queries(dataset, data.test, args.queries, n_clips, device)
    seconds, top1, texts = measure(models, queries, args.warmup, device)
    git = tracking.git_state()
    commit = git["commit"][:7] + ("+dirty" if git["dirty"] == "true" else "")
    result = LatencyResult(args.dataset, args.profile, sizes, str(device), torch.get_num_threads(), commit,
                           [q.qid for q in queries], seconds, top1, texts, models)  # fmt: skip
    print(report(result, args.warmup))
    if not args.no_log:
        result.run_ids = record(result, dataset.content_hash, args.warmup)
        print(f"recorded runs {', '.join(f'{s} {i[:8]}' for s, i in result.run_ids.items())}: "
              f"`bench table 2 --dataset {args.dataset} --profile {args.profile}` shows them")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
