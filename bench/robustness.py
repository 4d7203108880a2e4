"""``bench robustness``: a trained model scored on augmented test speech, without retraining (§4.4, Figure 4).

"To showcase the robustness of our model in real-life scenes, we add augmentation at different levels (low, medium,
high), including time stretching, pitch shifting and noise addition" (§4.4; the ranges are Table 7's, read by
:mod:`bench.data.augment`). The text does not say whether the three were applied one at a time or together, so both
are offered: the kinds ``stretch``, ``pitch`` and ``noise`` alone, and ``all``, the three in Table 7's order on the
same utterance at the same level.

How a model is reused. A ``bench run`` of (method, dataset, profile, seed, config) keeps its checkpoint in
:func:`bench.run.work_dir`, holding the weights it selected on val. A robustness run finds the newest FINISHED run of
the same identity (:func:`source_run`), runs the method's own ``run`` with ``RunContext.evaluate_from`` set to that
checkpoint, so the training loop loads the selected weights, trains nothing, validates nothing and scores the test
splits once (:func:`bench.train.evaluate_checkpoint`); nothing is chosen on test. Its stages (SIL's pre-trained
encoder, the cascades' ASR) are found in the stage cache as the source run left them.

Where the augmented speech enters. The method reads the dataset through :class:`AugmentedSpeech`, a view that serves
the clean wavs of train and val and augmented copies of every test wav (val_2's speech, which ``test`` and
``test_ood`` both read), written once under ``<cache>/speech/``. Every reader of query speech finds its file through
:func:`bench.data.grounding.query_wav`, and every cache computed from speech (the log-mel splits, SIL's frozen
features, the cascades' ASR transcripts) adds :meth:`AugmentedSpeech.speech_tag` to its key, so an augmented split is
never served from the clean split's cache and the clean entries are never rewritten.

The augmentation of an utterance is drawn from a generator seeded by (augmentation seed, kind, level, file name), the
same for every method and grounding seed: the methods of Figure 4 are compared on the same augmented speech.
The noise is ESC-50 (the paper's) where the dataset has it (``noise_dir``: a data root's ``esc50/``), every clip its
index lists (read once per view), each clip read as drawn (:func:`bench.data.esc50.bank`); elsewhere (synth) it is
:meth:`bench.data.augment.NoiseBank.generate`'s synthetic stand-in. The run says which (``augment.noise``), and the
augmented speech is keyed by it: ESC-50 by its index's checksum, so another release is another cache entry.

Each (method, seed, kind, level) is a tracked run of its own: the source run's identity params, ``measure =
robustness``, ``source_run``, ``augment.kind``, ``augment.level``, ``augment.seed``, ``augment.noise`` and
``augment.splits``, with the metrics under ``test/`` and ``test_ood/`` as any run. :mod:`bench.tables` and
:mod:`bench.compare` leave such runs out (they are not the method's clean numbers); :mod:`bench.figures` plots them.
"""

from __future__ import annotations

import hashlib
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import config as cfg
from bench import datasets, tracking
from bench.atomic import DiskFull, write_atomic
from bench.context import RunContext, set_seed
from bench.data import activitynet, augment, esc50, grounding, loader
from bench.run import Outcome, pick_device, work_dir
from methods import registry

MEASURE = "robustness"
KINDS = (*augment.KINDS, "all")
LEVELS = augment.LEVELS
VERSION = 1  # bump when the augmentation of a file changes
TEST_SPEECH = grounding.SPLIT_FILES["test"]  # the speech label of the test splits' wavs (test_ood reads val_2's too)
TEST_SPLITS = ("test", *grounding.EXTRA_TESTS)
NOISE = "generated stand-in for ESC-50 (bench.data.augment.NoiseBank.generate(seed=0): 7 categories, 2 clips each)"


@dataclass(frozen=True)
class Augmentation:
    """One column of Table 7 (``level``) for one row (``kind``), or ``all`` three rows in turn; ``seed`` draws them."""

    kind: str
    level: str
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown augmentation {self.kind!r}; choose from {', '.join(KINDS)}")
        if self.level not in LEVELS:
            raise ValueError(f"unknown augmentation level {self.level!r}; choose from {', '.join(LEVELS)}")

    @property
    def kinds(self) -> tuple[str, ...]:
        """The augmentations applied in turn: Table 7's order for ``all``."""
        return augment.KINDS if self.kind == "all" else (self.kind,)

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.level}-s{self.seed}"

    def utterance_seed(self, file_name: str) -> int:
        """The generator seed of one file's augmentation: the same file is augmented alike in every run."""
        digest = hashlib.sha256(f"{self.seed}:{self.kind}:{self.level}:{file_name}".encode()).hexdigest()
        return int(digest[:15], 16)


class AugmentedSpeech:
    """The opened dataset ``clean`` with its test speech augmented by ``augmentation``; everything else is ``clean``'s.

    The content hash stays the clean one, so stages keyed by it (SIL's encoder, the ASR) are the source run's; what is
    computed from the test speech is keyed by :meth:`speech_tag` too (:mod:`bench.data.grounding`).
    """

    def __init__(self, clean: Any, augmentation: Augmentation, cache_dir: str | Path) -> None:
        self.clean = clean
        self.augmentation = augmentation
        self.noise, noise_key, self._clips = noise_source(clean)
        self._tag = f"{augmentation.name}-{loader.content_key(augmentation.name, noise_key, VERSION)[:8]}"
        self.folder = Path(cache_dir) / "speech" / f"{clean.content_hash[:16]}-{self._tag}"
        self._bank: augment.NoiseBank | None = None

    def __getattr__(self, name: str) -> Any:  # paths, name, content hash, has_split: the clean dataset's
        if name == "clean":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.clean, name)

    def speech_tag(self, split: str) -> str:
        """``""`` for train and val (clean speech), the augmentation's tag for the test splits."""
        return self._tag if split in TEST_SPLITS else ""

    def wav_path(self, m: activitynet.Moment) -> Path:
        """The clean wav of a train or val query; the augmented copy of a test query's, written on first use."""
        source = Path(self.clean.wav_dir) / activitynet.wav_name(m.video, m.split, m.k)
        if m.split != TEST_SPEECH:
            return source
        target = self.folder / source.name
        if not target.exists():
            self._write(source, target)
        return target

    def _write(self, source: Path, target: Path) -> None:
        import soundfile as sf
        import torch

        from bench.data.librispeech import load_audio

        wave = load_audio(source)
        rng = torch.Generator().manual_seed(self.augmentation.utterance_seed(source.name))
        for kind in self.augmentation.kinds:
            wave = augment.augment(wave, self.augmentation.level, kind, rng, self._noise() if kind == "noise" else None)
        # 32-bit float keeps what noise and pitch shifting push past full scale; the readers take any subtype
        write_atomic(target, lambda fh: sf.write(fh, wave.numpy(), augment.SAMPLE_RATE, format="WAV", subtype="FLOAT"))

    def _noise(self) -> augment.NoiseBank:
        if self._bank is None:
            self._bank = augment.NoiseBank.generate(seed=0) if self._clips is None else esc50.bank(self._clips)
        return self._bank


def noise_source(clean: Any) -> tuple[str, str, list[esc50.NoiseClip] | None]:
    """``(what the run logs as augment.noise, what keys the augmented speech, ESC-50's clips or None)`` for the
    dataset ``clean``; None: the generated stand-in, whose description is its key, so that the keys of synth's
    augmented speech are as before.
    """
    folder = getattr(clean, "noise_dir", None)
    if folder is None:
        return NOISE, NOISE, None
    clips = esc50.read_esc50(folder)  # a bad index is one DataError naming the file, before any speech is written
    index = hashlib.sha256((Path(folder) / esc50.META).read_bytes()).hexdigest()
    categories = len({c.category for c in clips})
    described = f"ESC-50 at {folder} ({len(clips)} clips, {categories} categories; index sha256 {index[:12]})"
    return described, index, clips


def source_run(method: str, dataset: str, profile: str, seed: int, config_hash: str) -> dict[str, Any]:
    """The newest FINISHED training run of this identity (``measure`` unset) as a row of params; an error says which
    ``bench run`` makes one."""
    runs = tracking.finished_runs(
        {"method": method, "dataset": dataset, "profile": profile, "seed": str(seed), "config_hash": config_hash}
    )
    if len(runs) and "params.measure" in runs:
        runs = runs[runs["params.measure"].isna()]
    if not len(runs):
        raise ValueError(
            f"no finished run of {method} seed {seed} on {dataset}/{profile} with this configuration (config hash "
            f"{config_hash}) to evaluate: run `bench run --method {method} --dataset {dataset} --profile {profile} "
            f"--seeds {seed}` (with the same --set options) first"
        )
    return runs.sort_values("start_time", ascending=False).iloc[0].to_dict()


def check_method(name: str) -> Any:
    """The registry entry of a method that reads speech and trains a grounding network; others are an error."""
    spec = registry.get(name)
    if not spec.implemented or spec.query not in ("speech", "asr-text") or "ground" not in spec.stages:
        raise ValueError(
            f"method {name!r} does not ground a spoken query with a trained network ({spec.query} query, stages "
            f"{', '.join(spec.stages) or 'none'}); bench robustness evaluates those that do (e.g. sil, asr-rtbpn)"
        )
    return spec


def run(
    methods: Sequence[str],
    *,
    dataset: str,
    profile: str,
    seeds: Sequence[int],
    kinds: Sequence[str] = KINDS,
    levels: Sequence[str] = LEVELS,
    augment_seed: int = 0,
    device: str = "auto",
    overrides: dict[str, str] | None = None,
) -> list[Outcome]:
    """One robustness run per (method, seed, kind, level); a failure is logged FAILED and the others still run.

    Every source run is looked up before anything is opened, so a missing one is one error, not a FAILED run each.
    """
    cfg.check_profile(profile)
    datasets.check_available(dataset)
    if datasets.spec(dataset).annotations_only:
        raise ValueError(f"dataset {dataset!r} holds no speech to augment; use one with query wavs (e.g. synth)")
    augmentations = [Augmentation(k, lv, augment_seed) for k in kinds for lv in levels]
    jobs = []
    for name in methods:
        spec = check_method(name)
        method_cfg = cfg.apply_overrides(spec.config(profile), overrides or {})
        chash = cfg.config_hash(method_cfg)
        for seed in seeds:
            jobs.append((spec, method_cfg, seed, source_run(name, dataset, profile, seed, chash)))
    dev = pick_device(device)
    outcomes = []
    for spec, method_cfg, seed, source in jobs:
        for aug in augmentations:
            outcomes.append(_evaluate(spec, method_cfg, seed, source, aug, dataset, profile, dev, overrides or {}))
    return outcomes


def _evaluate(spec: Any, method_cfg: Any, seed: int, source: dict[str, Any], aug: Augmentation, dataset: str,
              profile: str, device: Any, overrides: dict[str, str]) -> Outcome:  # fmt: skip
    from bench import evaluate

    chash = source["params.config_hash"]
    checkpoint = work_dir(spec.name, dataset, profile, seed, chash) / "checkpoint.pt"
    home = tracking.runs_home()
    workdir = home / "work" / MEASURE / spec.name / dataset / profile / f"seed{seed}" / chash / aug.name
    workdir.mkdir(parents=True, exist_ok=True)
    params = {
        "method": spec.name,
        "dataset": dataset,
        "profile": profile,
        "seed": seed,
        "device": str(device),
        "table": "-",
        "config_hash": chash,
        "overrides": cfg.overrides_param(overrides, method_cfg, spec.config(profile)),
        "evaluator": evaluate.DEFINITION,
        "measure": MEASURE,
        "source_run": source["run_id"],
        "augment.kind": aug.kind,
        "augment.level": aug.level,
        "augment.seed": aug.seed,
        "augment.splits": "test and test_ood speech augmented (val_2's wavs); train and val clean, nothing selected",
        "checkpoint": str(checkpoint),
    }
    run_id = None
    try:
        tags = {"wsvg.rows": "figure4", "wsvg.source_run": source["run_id"]}
        name = f"{MEASURE}/{spec.name}/{dataset}/{profile}/seed{seed}/{aug.kind}-{aug.level}"
        with tracking.start_run(name, params, tags=tags) as log:
            run_id = log.run_id
            log.log_dict({"method": spec.name, "profile": profile, "overrides": overrides,
                          "config": cfg.to_dict(method_cfg)}, "config/resolved.json")  # fmt: skip
            set_seed(seed)
            view = AugmentedSpeech(datasets.open_dataset(dataset, profile, device), aug, home / "cache")
            log.log_params({"augment.noise": view.noise})
            ctx = RunContext(spec, method_cfg, dataset, profile, seed, device, log, workdir, home / "cache",
                             preloaded=view, evaluate_from=checkpoint)  # fmt: skip
            result = spec.run(ctx)
            log.log_params({"dataset_hash": result.dataset_hash or view.content_hash,
                            "selected_epoch": result.selected_epoch})  # fmt: skip
            log.log_metrics(result.test, prefix="test/")
            for split, metrics in result.extra_tests.items():
                log.log_metrics(metrics, prefix=f"{split}/")
            for path in [result.predictions, *result.extra_predictions.values()]:
                if path is not None:
                    log.log_artifact(path, "predictions")
    except (KeyboardInterrupt, DiskFull):
        raise
    except Exception as err:  # noqa: BLE001 - reported, logged FAILED, and the others go on
        detail = "".join(traceback.format_exception_only(err)).strip()
        print(f"bench robustness: {spec.name} seed {seed} {aug.name} FAILED: {detail}", file=sys.stderr)
        return Outcome(spec.name, seed, "FAILED", run_id, error=detail)
    return Outcome(spec.name, seed, "FINISHED", run_id, test=result.test)
