"""Word vectors in GloVe's text format, read and written, so one reader serves GloVe and the synthetic benchmark.

Format: one word per line, ``word v1 v2 ... vD``, single spaces, no header. GloVe 840B has a few "words" that
contain spaces, so a line is split from the right: the last D fields are the vector and the rest is the word,
with D fixed by the first line. A line with fewer than D values, or with more where the field before the last D
is a number (too many values, not a word with a space), or with a non-number, is a :class:`DataError` naming the
line number. A repeated word keeps its first vector, as gensim does, and is listed in ``repeats`` with both line
numbers (``bench data check`` reports it: a reader that fills a dict would keep the last vector instead).

:func:`write_glove` writes ``%.9g``, which round-trips float32 exactly: the synthetic benchmark's vectors read
back bit for bit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.data.errors import DataError, SkipPolicy


@dataclass(frozen=True)
class Repeat:
    """A word listed again on ``line`` after its first listing on ``first_line``; ``same`` if with the same vector."""

    word: str
    line: int
    first_line: int
    same: bool


@dataclass
class WordVectors:
    """``words[i]`` has vector ``vectors[i]`` (float32 ``[V, D]``); ``index`` maps a word to its row.

    ``repeats`` lists the words listed more than once (the first vector is kept); ``unknown`` counts, per word,
    the tokens that :meth:`lookup` replaced with zeros.
    """

    words: list[str]
    vectors: torch.Tensor
    index: dict[str, int]
    path: Path | None = None
    repeats: list[Repeat] = field(default_factory=list)
    unknown: Counter = field(default_factory=Counter)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def duplicates(self) -> int:
        """How many lines repeated an earlier word (and were not used)."""
        return len(self.repeats)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def lookup(self, tokens: Sequence[str], unknown: str = "error") -> torch.Tensor:
        """The ``[len(tokens), D]`` vectors of ``tokens`` (matched exactly; lower-case them first if needed).

        A token without a vector is a :class:`DataError` naming it (``unknown="error"``, the default), or a zero
        vector counted in :attr:`unknown` (``unknown="zero"``, 2D-TAN's out-of-vocabulary rule).
        """
        if unknown not in ("error", "zero"):
            raise ValueError(f"unknown={unknown!r}: choose 'error' or 'zero'")
        out = torch.zeros(len(tokens), self.dim, dtype=self.vectors.dtype)
        for i, tok in enumerate(tokens):
            row = self.index.get(tok)
            if row is not None:
                out[i] = self.vectors[row]
            elif unknown == "zero":
                self.unknown[tok] += 1
            else:
                raise DataError(
                    self.path or "word vectors",
                    f"no vector for the word {tok!r} ({len(self)} words known)",
                    "add the word to the vectors file, or look up with unknown='zero' to use a zero vector",
                )
        return out


def read_glove(path: str | Path, vocab: Iterable[str] | None = None, policy: SkipPolicy | None = None) -> WordVectors:
    """Read a GloVe text file; with ``vocab``, keep only those words (in file order) and parse only their lines.

    Every line's width is checked, so a truncated or mixed file is caught even with a ``vocab``; the numbers of
    lines outside ``vocab`` are not parsed (that is what makes reading a 2-million-word file for a small vocabulary
    fast). Bad lines raise, or under ``policy`` are skipped and counted as ``bad-glove-line``.
    """
    path = Path(path)
    policy = policy or SkipPolicy()
    keep = None if vocab is None else set(vocab)
    if not path.is_file():
        raise DataError(path, "no such file", "point to a GloVe text file (e.g. glove.840B.300d.txt)")
    words: list[str] = []
    rows: list[np.ndarray] = []
    index: dict[str, int] = {}
    dim: int | None = None
    first_line: dict[str, int] = {}
    repeats: list[Repeat] = []
    try:
        with path.open(encoding="utf-8") as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.rstrip("\n").rstrip("\r")
                if not line.strip():
                    continue
                parts = line.rstrip(" ").split(" ")
                if dim is None:
                    dim = len(parts) - 1
                    if dim < 1:
                        raise DataError(f"{path} line {lineno}", "line holds a word and no vector", _FIX)
                    if dim == 1 and parts[0].isdigit() and parts[1].isdigit():
                        raise DataError(
                            f"{path} line 1",
                            f"'{line}' looks like a word2vec header (vocabulary size, dimension)",
                            "delete the first line: GloVe's text format has no header",
                        )
                if len(parts) < dim + 1 or (len(parts) > dim + 1 and _is_number(parts[-dim - 1])):
                    policy.handle(
                        DataError(
                            f"{path} line {lineno}",
                            f"{len(parts) - 1} values, expected {dim} (the width of line 1)",
                            _FIX,
                        ),
                        "bad-glove-line",
                    )
                    continue
                word = " ".join(parts[:-dim])
                if keep is not None and word not in keep:
                    continue
                try:
                    vec = np.array(parts[-dim:], dtype=np.float32)
                except ValueError:
                    bad = next(p for p in parts[-dim:] if not _is_number(p))
                    policy.handle(
                        DataError(f"{path} line {lineno}", f"value {bad!r} of word {word!r} is not a number", _FIX),
                        "bad-glove-line",
                    )
                    continue
                if not np.isfinite(vec).all():
                    policy.handle(
                        DataError(f"{path} line {lineno}", f"word {word!r} has a NaN or infinite value", _FIX),
                        "bad-glove-line",
                    )
                    continue
                if word in index:
                    same = bool(np.array_equal(vec, rows[index[word]]))
                    repeats.append(Repeat(word, lineno, first_line[word], same))
                    continue
                first_line[word] = lineno
                index[word] = len(words)
                words.append(word)
                rows.append(vec)
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text ({e.reason} at byte {e.start})", _FIX) from None
    if dim is None:
        raise DataError(path, "the file is empty", _FIX)
    vectors = torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, dim)
    return WordVectors(words, vectors, index, path=path, repeats=repeats)


_FIX = "restore the file (GloVe text format: 'word v1 ... vD' per line, one width throughout, no header)"


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def write_glove(path: str | Path, words: Sequence[str], vectors: torch.Tensor | np.ndarray) -> None:
    """Write ``words`` and their ``[V, D]`` vectors in GloVe text format (``%.9g``, exact for float32).

    Words must be non-empty, unique and free of white space, and the vectors finite, so that :func:`read_glove`
    reads back exactly what was written.
    """
    vec = vectors.detach().cpu().numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors)
    if vec.ndim != 2 or vec.shape[0] != len(words) or vec.shape[1] < 1:
        raise ValueError(f"vectors of shape {vec.shape} do not match {len(words)} words")
    if not np.isfinite(vec).all():
        raise ValueError("vectors hold NaN or infinite values")
    seen: set[str] = set()
    for w in words:
        if not w or any(c.isspace() for c in w):
            raise ValueError(f"word {w!r} is empty or contains white space")
        if w in seen:
            raise ValueError(f"word {w!r} is repeated")
        seen.add(w)
    vec = vec.astype(np.float32)
    with Path(path).open("w", encoding="utf-8") as f:
        for w, row in zip(words, vec, strict=True):
            f.write(w + " " + " ".join(f"{float(x):.9g}" for x in row) + "\n")
