"""ASR accuracy: WER and CER (jiwer), BLEU and chrF (sacrebleu), per utterance and in total; ``bench wer``.

Table 8 of the paper reports one number per ASR system, the WER on ActivityNet Speech ("5.2817", presumably percent;
the split is not stated). This suite measures it on the grounding **test** split's speech (``val_2``, the queries
that the cascaded rows of Table 1 ground), with the caption as the reference.

Text normalisation, applied alike to references and hypotheses before every metric (:data:`NORMALISE`, jiwer
transforms): lower case; hyphens, dashes and slashes become spaces (so ``t-shirt`` is two words on both sides, as a
character-level ASR spells it); every other punctuation character is removed (``don't`` -> ``dont``); runs of
whitespace collapse to one space; leading and trailing whitespace is stripped. WER counts word edits over reference
words, CER character edits (the space between words included) over reference characters, both summed over the
corpus (not a mean of per-utterance rates). BLEU (sacrebleu's default 13a tokenisation, 4-grams) and chrF (character
6-grams, beta 2) are corpus scores on the normalised text. Every metric is logged as a **fraction** (sacrebleu's
0-100 scores divided by 100), as recalls are; :mod:`bench.tables` shows WER x 100 next to the paper's 5.2817.

A reference that is empty after normalisation cannot have a WER: such utterances are left out and counted
(``n_empty_ref``). The per-utterance errors (id, reference, hypothesis, wer, cer) are written as CSV and JSON lines
into ``<runs>/wer/...`` and logged as artifacts of the tracked run that ``bench wer`` opens.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jiwer

_TEXT = [
    jiwer.ToLowerCase(),
    jiwer.SubstituteRegexes({r"[-\u2010-\u2015/]": " "}),
    jiwer.RemovePunctuation(),
    jiwer.RemoveMultipleSpaces(),
    jiwer.Strip(),
]
NORMALISE = jiwer.Compose(_TEXT)
"""The normalisation as a string -> string transform (what :func:`normalise` applies)."""
WORDS = jiwer.Compose([*_TEXT, jiwer.ReduceToListOfListOfWords()])
CHARS = jiwer.Compose([*_TEXT, jiwer.ReduceToListOfListOfChars()])
METRICS: tuple[str, ...] = ("WER", "CER", "BLEU", "chrF")
NORMALISATION_TEXT = "lower case; hyphens/dashes/slashes to spaces; punctuation removed; whitespace collapsed"


def normalise(text: str) -> str:
    """The text every metric compares: lower case, punctuation stripped, whitespace collapsed."""
    return NORMALISE(text)


def utterance_errors(ref: str, hyp: str) -> dict[str, Any]:
    """One utterance's word and character error rates and edit counts (the reference must not normalise to '')."""
    w = jiwer.process_words(ref, hyp, reference_transform=WORDS, hypothesis_transform=WORDS)
    c = jiwer.process_characters(ref, hyp, reference_transform=CHARS, hypothesis_transform=CHARS)
    return {
        "wer": w.wer,
        "cer": c.cer,
        "word_edits": w.substitutions + w.deletions + w.insertions,
        "ref_words": w.substitutions + w.deletions + w.hits,
    }


def score(refs: Mapping[str, str], hyps: Mapping[str, str]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Corpus totals and per-utterance rows of ``hyps`` against ``refs`` (both id -> text; every ref id needs a hyp).

    Totals: WER, CER, BLEU, chrF as fractions, plus counts (``n``, ``n_empty_ref``, ``ref_words``) and the share of
    utterances recognised exactly (``exact``). Rows, in the order of ``refs``: id, reference, hypothesis (both
    normalised), wer, cer.
    """
    import sacrebleu

    missing = [k for k in refs if k not in hyps]
    if missing:
        raise KeyError(f"{len(missing)} utterance(s) have no hypothesis, e.g. {missing[:3]}")
    ids = [k for k in refs if normalise(refs[k])]
    if not ids:
        raise ValueError("every reference is empty after normalisation: nothing to score")
    r = [normalise(refs[k]) for k in ids]
    h = [normalise(hyps[k]) for k in ids]
    words = jiwer.process_words(r, h, reference_transform=WORDS, hypothesis_transform=WORDS)
    chars = jiwer.process_characters(r, h, reference_transform=CHARS, hypothesis_transform=CHARS)
    rows = []
    for k, ref, hyp in zip(ids, r, h, strict=True):
        e = utterance_errors(ref, hyp)
        rows.append({"id": k, "reference": ref, "hypothesis": hyp, "wer": e["wer"], "cer": e["cer"]})
    totals = {
        "WER": words.wer,
        "CER": chars.cer,
        "BLEU": sacrebleu.corpus_bleu(h, [r]).score / 100,
        "chrF": sacrebleu.corpus_chrf(h, [r]).score / 100,
        "exact": sum(a == b for a, b in zip(r, h, strict=True)) / len(ids),
        "n": float(len(ids)),
        "n_empty_ref": float(len(refs) - len(ids)),
        "ref_words": float(words.hits + words.substitutions + words.deletions),
    }
    return totals, rows


def worst(rows: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The ``n`` rows of highest WER (then CER, then id, so the list is stable)."""
    return sorted(rows, key=lambda x: (-x["wer"], -x["cer"], x["id"]))[:n]


def write_errors(rows: Sequence[dict[str, Any]], directory: Path, stem: str = "utterance_errors") -> list[Path]:
    """``rows`` as ``<stem>.csv`` and ``<stem>.jsonl`` in ``directory``; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    fields = ["id", "reference", "hypothesis", "wer", "cer"]
    csv_path, jsonl_path = directory / f"{stem}.csv", directory / f"{stem}.jsonl"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: row[k] for k in fields} for row in rows)
    with jsonl_path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps({k: row[k] for k in fields}) + "\n")
    return [csv_path, jsonl_path]


def format_totals(totals: Mapping[str, float]) -> str:
    """``WER 12.34 %  CER ...`` in percent, as a person reads them."""
    parts = [f"{k} {100 * totals[k]:.2f} %" for k in METRICS if k in totals and not math.isnan(totals[k])]
    return "  ".join(parts) + f"  (exact {100 * totals.get('exact', 0):.1f} %, {int(totals.get('n', 0))} utterances)"


def format_worst(rows: Sequence[dict[str, Any]], n: int) -> str:
    lines = [f"worst {min(n, len(rows))} utterances by WER:"]
    for row in worst(rows, n):
        lines.append(f"  {row['id']}  WER {100 * row['wer']:.1f} %  CER {100 * row['cer']:.1f} %")
        lines.append(f"    ref: {row['reference']}")
        lines.append(f"    hyp: {row['hypothesis']}")
    return "\n".join(lines)
