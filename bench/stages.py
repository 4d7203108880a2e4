"""Cached stages: a pre-trained speech encoder or a trained ASR model is built once and reused by every run.

A stage is a pure function of its configuration and its inputs (each input named by a content hash, e.g. the
dataset's). Its key is a hash of ``(name, config, inputs)``; its files live in ``<runs>/cache/stages/<name>/<key>/``:

- ``stage.json``: written last, atomically. Its presence means the stage is done; it records the configuration,
  the inputs, the seconds the build took, the build's summary (for example the selected epoch) and the SHA-256 of
  every file the build wrote (``files``).
- whatever the build writes there (``model.pt``, transcripts, ...). A build killed while writing them leaves no
  ``stage.json``, so the next run builds the stage again; a file that no longer matches its recorded hash (a
  flipped byte, a truncated copy) is named on stderr and the stage is built again, never used.
- ``work/``: the build's training checkpoint. A killed build started again resumes from it (the training loop's
  resume), so nothing already computed is lost.

Every grounding run that needs the stage calls :func:`run_stage`: the first one builds it (its curves are logged
into that run under ``<name>/``), every later one finds ``stage.json``; each logs the stage key and the record's
summary, so two runs with the same key used the same weights. A build never moves the calling run's random streams
(:mod:`bench.rng`): cold cache or warm, the same seed gives the same numbers. Under ``torchrun`` every rank takes
part in the build (the training loop shards it), rank 0 alone writes files, and no rank reads the stage before rank
0 has written ``stage.json``. Two processes of one machine that need one stage at once (``bench run --jobs 2``, or two
``bench run`` commands) take turns on the stage's lock file: the first builds, the second waits and
then finds it done, so a stage is never built twice at once (the locks live in ``<runs>/cache/stages/.locks/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import config as cfg
from bench import rng, tracking
from bench.atomic import exclusive, write_text_atomic


@dataclass(frozen=True)
class Stage:
    name: str
    key: str
    path: Path

    @property
    def record_path(self) -> Path:
        return self.path / "stage.json"

    @property
    def done(self) -> bool:
        return self.record_path.exists()

    def file(self, name: str) -> Path:
        return self.path / name

    def load(self, name: str) -> Any:
        """The object a build saved as ``name`` (``torch.save``), read onto the CPU: an encoder's weights and the
        sizes it was built with, as the method's ``load_encoder`` rebuilds it."""
        import torch

        return torch.load(self.file(name), map_location="cpu", weights_only=False)

    def record(self) -> dict[str, Any]:
        return json.loads(self.record_path.read_text())

    def outputs(self) -> dict[str, str]:
        """``{path relative to the stage: SHA-256}`` of every file the build wrote (not its ``work/`` checkpoints)."""
        files = sorted(p for p in self.path.rglob("*") if p.is_file() and p != self.record_path)
        kept = [p for p in files if p.relative_to(self.path).parts[0] != "work" and not _temporary(p)]
        return {str(p.relative_to(self.path)): _sha256(p) for p in kept}

    def damaged(self) -> str | None:
        """What is wrong with a done stage's files against its record (``None`` when they match, or for a record
        written before hashes were kept)."""
        recorded = self.record().get("files")
        if recorded is None:
            return None
        found = self.outputs()
        for name, digest in recorded.items():
            if name not in found:
                return f"{self.path / name} is missing"
            if found[name] != digest:
                return f"{self.path / name} does not match the hash recorded in {self.record_path.name}"
        return None


def _temporary(path: Path) -> bool:
    """A writer's temporary file (``bench.atomic.temporary_name``), left by a process killed mid-write."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def stage_key(name: str, config: Any, inputs: dict[str, str]) -> str:
    """12 hex digits over the stage name, its whole configuration and its inputs' hashes."""
    data = cfg.to_dict(config) if not isinstance(config, dict) else config
    return cfg.config_hash({"stage": name, "config": data, "inputs": dict(sorted(inputs.items()))})


def stage(cache_dir: str | Path, name: str, config: Any, inputs: dict[str, str]) -> Stage:
    key = stage_key(name, config, inputs)
    return Stage(name, key, Path(cache_dir) / "stages" / name / key)


@dataclass
class StageContext:
    """What a stage's build sees: the same fields the training loop reads from a run's context."""

    device: Any
    seed: int
    log: tracking.RunLogger
    workdir: Path  # the build's checkpoints (``bench.train.fit`` resumes from here)
    out: Path  # where the build writes its outputs


class PrefixLogger(tracking.RunLogger):
    """A run's logger that files a stage's metrics and parameters under ``<prefix>/`` in the same run."""

    def __init__(self, inner: tracking.RunLogger, prefix: str) -> None:
        super().__init__(inner._mlflow, inner.run_id)
        self.prefix = prefix

    def log_metrics(self, metrics: dict[str, float], step: int | None = None, prefix: str = "") -> None:
        super().log_metrics(metrics, step, f"{self.prefix}/{prefix}")

    def log_params(self, params: dict[str, Any]) -> None:
        super().log_params({f"{self.prefix}.{k}": v for k, v in params.items()})


def run_stage(st: Stage, build: Callable[[StageContext], dict[str, Any]], *, config: Any, inputs: dict[str, str],
              device: Any, seed: int, log: tracking.RunLogger) -> dict[str, Any]:  # fmt: skip
    """Build ``st`` unless done, and return its record; the run logs which stage (key) it used either way.

    The caller's random streams are left as they were (a build reseeds them with the stage's ``seed``;
    :func:`bench.rng.kept`), so a run's results do not depend on whether it found the stage cached. Every run logs
    the same description of the stage (its key, build seconds and the summary's scalars, e.g. the selected epoch);
    only the building run also has the build's curves and ``stage.<name>.built_here``."""
    from bench import dist

    shard = dist.init(device)
    # under torchrun the ranks build together (barriers inside); one process alone takes the stage's lock
    with _locked(st) if shard.world == 1 else contextlib.nullcontext():
        problem = st.damaged() if st.done else None
        if problem is not None:
            print(f"stage {st.name} {st.key}: {problem}; building it again", file=sys.stderr)
            dist.barrier()  # every rank has read the old record before rank 0 removes it
            if shard.main:
                st.record_path.unlink(missing_ok=True)
            dist.barrier()
        if not st.done:
            with rng.kept():  # the caller's streams stay as they were, built here or found cached
                _build(st, build, config, inputs, device, seed, log, shard.main)
            built = True
        else:
            built = False
        record = st.record()
    params = {f"stage.{st.name}": st.key, f"stage.{st.name}.seconds": record["seconds"]}
    summary = record.get("summary") or {}
    params.update({f"stage.{st.name}.{k}": v for k, v in summary.items() if isinstance(v, int | float | str | bool)})
    if built:  # logged only by the run that built it (a param once logged cannot change, so never "False" after)
        params[f"stage.{st.name}.built_here"] = True
    log.log_params(params)
    return record


def _locked(st: Stage) -> contextlib.AbstractContextManager[None]:
    """Hold ``stages/.locks/<name>-<key>.lock`` while the stage is checked and built (``atomic.exclusive``)."""
    return exclusive(st.path.parent.parent / ".locks" / f"{st.name}-{st.key}.lock",
                     f"stage {st.name} {st.key}: another process is building it; waiting")  # fmt: skip


def _build(st: Stage, build: Callable[[StageContext], dict[str, Any]], config: Any, inputs: dict[str, str],
           device: Any, seed: int, log: tracking.RunLogger, main: bool) -> None:  # fmt: skip
    from bench import dist
    from bench.context import set_seed

    workdir = st.path / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"stage {st.name} {st.key}: building in {st.path}", flush=True)
    set_seed(seed)
    t0 = time.perf_counter()
    summary = build(StageContext(device, seed, PrefixLogger(log, st.name), workdir, st.path))
    record = {
        "name": st.name,
        "key": st.key,
        "config": cfg.to_dict(config) if not isinstance(config, dict) else config,
        "inputs": inputs,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
        "summary": summary,
        "commit": tracking.git_state()["commit"],
    }
    dist.barrier()  # every rank's outputs are written before rank 0 hashes them
    if main:
        record["files"] = st.outputs()
        write_text_atomic(st.record_path, json.dumps(record, indent=2, sort_keys=True, default=str))
    dist.barrier()
