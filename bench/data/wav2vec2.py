"""A local wav2vec 2.0 CTC checkpoint directory: checked file by file, then loaded offline.

Nothing is fetched from a hub: the directory must be complete, as written by ``save_pretrained`` of
``transformers``. Expected files:

* ``config.json`` with ``model_type`` ``wav2vec2`` and ``Wav2Vec2ForCTC`` among ``architectures`` (a
  pre-training-only checkpoint such as ``wav2vec2-base`` has no CTC head: loading it would give a random one);
* weights: ``model.safetensors`` or ``pytorch_model.bin``, or a sharded index (``*.index.json``) and its shards;
* the feature extractor: ``preprocessor_config.json`` (hub checkpoints, older transformers) or
  ``processor_config.json`` with a ``feature_extractor`` entry (transformers 5), at 16 kHz;
* the tokenizer: ``vocab.json`` (token → id) whose size does not exceed the config's ``vocab_size``.

:func:`check_checkpoint` lists every problem (so one look tells all that is wrong); :func:`load_wav2vec2` refuses
a directory with problems rather than letting transformers fail deep inside, or silently initialise weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.data.errors import DataError

WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES: tuple[str, ...] = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_FIX_SAVE = "save the checkpoint with model.save_pretrained(dir) and processor.save_pretrained(dir)"


def _json(path: Path, errors: list[DataError]) -> Any:
    """The parsed JSON of ``path``, or None after recording why not."""
    if not path.is_file():
        errors.append(DataError(path, "missing", _FIX_SAVE))
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        errors.append(DataError(path, f"not valid JSON ({e})", _FIX_SAVE))
        return None


def _is_lfs_pointer(path: Path) -> bool:
    """A Git LFS pointer (a clone without ``git lfs pull``) is a 130-byte text file instead of the weights."""
    if path.stat().st_size > 1024:
        return False
    return path.read_bytes().startswith(b"version https://git-lfs")


def checkpoint_errors(directory: str | Path) -> list[DataError]:
    """Every problem of the checkpoint directory as a :class:`DataError` (path, problem, fix); empty when usable."""
    d = Path(directory)
    if not d.is_dir():
        return [DataError(d, "no such directory", "point to a local wav2vec2 CTC checkpoint directory")]
    errors: list[DataError] = []
    config = _json(d / "config.json", errors)
    vocab_size = None
    if isinstance(config, dict):
        if config.get("model_type") != "wav2vec2":
            errors.append(
                DataError(
                    d / "config.json",
                    f"model_type is {config.get('model_type')!r}, not 'wav2vec2'",
                    "use a wav2vec2 checkpoint",
                )
            )
        archs = config.get("architectures") or []
        if "Wav2Vec2ForCTC" not in archs:
            errors.append(
                DataError(
                    d / "config.json",
                    f"architectures {archs} lack Wav2Vec2ForCTC: the checkpoint has no CTC head",
                    "use a checkpoint fine-tuned for CTC (e.g. facebook/wav2vec2-base-960h)",
                )
            )
        vocab_size = config.get("vocab_size")
    elif config is not None:
        errors.append(DataError(d / "config.json", "is not a JSON object", _FIX_SAVE))

    weights = [d / n for n in WEIGHT_FILES if (d / n).is_file()]
    index = next((d / n for n in INDEX_FILES if (d / n).is_file()), None)
    if weights:
        errors.extend(
            DataError(w, "is a Git LFS pointer, not the weights", "run 'git lfs pull' in the checkpoint")
            for w in weights
            if _is_lfs_pointer(w)
        )
    elif index is not None:
        idx = _json(index, errors)
        shards = sorted(set((idx or {}).get("weight_map", {}).values())) if isinstance(idx, dict) else []
        if not shards and idx is not None:
            errors.append(DataError(index, "names no weight shards", _FIX_SAVE))
        errors.extend(DataError(d / s, "weight shard missing", _FIX_SAVE) for s in shards if not (d / s).is_file())
    else:
        errors.append(DataError(d, f"holds no weights ({' or '.join(WEIGHT_FILES)})", _FIX_SAVE))

    pre = d / "preprocessor_config.json"
    proc = d / "processor_config.json"
    if pre.is_file():
        fe = _json(pre, errors)
        fe_where = pre
    elif proc.is_file():
        fe = _json(proc, errors)
        fe = fe.get("feature_extractor") if isinstance(fe, dict) else None
        fe_where = proc
        if fe is None:
            errors.append(DataError(proc, "has no 'feature_extractor' entry", _FIX_SAVE))
    else:
        fe, fe_where = None, pre
        errors.append(DataError(pre, "missing (nor processor_config.json)", _FIX_SAVE))
    if isinstance(fe, dict) and fe.get("sampling_rate", 16000) != 16000:
        errors.append(
            DataError(
                fe_where,
                f"feature extractor expects {fe.get('sampling_rate')} Hz, the suite's speech is 16 kHz",
                "use a 16 kHz wav2vec2 checkpoint",
            )
        )

    vocab = _json(d / "vocab.json", errors)
    if vocab is not None:
        if not isinstance(vocab, dict) or not vocab:
            errors.append(DataError(d / "vocab.json", "is not a non-empty JSON object token -> id", _FIX_SAVE))
        elif isinstance(vocab_size, int) and len(vocab) > vocab_size:
            errors.append(
                DataError(
                    d / "vocab.json",
                    f"{len(vocab)} tokens but config.json has vocab_size {vocab_size}",
                    "save the tokenizer that belongs to this model",
                )
            )
    return errors


def check_checkpoint(directory: str | Path) -> list[str]:
    """Every problem of the checkpoint directory, one line each (``path: problem. Fix: ...``); empty when usable."""
    return [str(e) for e in checkpoint_errors(directory)]


def load_wav2vec2(directory: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    """``(Wav2Vec2ForCTC, Wav2Vec2Processor)`` from the local directory, in eval mode; never touches the network."""
    errors = checkpoint_errors(directory)
    if errors:
        raise DataError(
            directory,
            f"{len(errors)} problem(s): " + "; ".join(f"{e.where}: {e.problem}" for e in errors),
            "; ".join(dict.fromkeys(e.fix for e in errors)),
        )
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor  # deferred: importing transformers takes seconds

    try:
        model = Wav2Vec2ForCTC.from_pretrained(directory, local_files_only=True)
        processor = Wav2Vec2Processor.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise DataError(directory, f"transformers could not load the checkpoint ({e})", _FIX_SAVE) from None
    return model.to(device).eval(), processor
