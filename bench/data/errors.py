"""Bad input gets a clear error naming the file (or key) and the fix, or, when asked, is skipped and counted.

Readers raise :class:`DataError`, never a traceback from deep inside torch or h5py. Where a caller passes a
:class:`SkipPolicy` with ``skip=True``, a reader records the problem and moves on instead; the run then logs
``policy.skipped`` so that nothing is dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class DataError(ValueError):
    """A problem with an input file: ``where`` (file, and key or line), what is wrong, and what to do."""

    def __init__(self, where: str, problem: str, fix: str) -> None:
        self.where, self.problem, self.fix = str(where), problem, fix
        super().__init__(f"{where}: {problem}. Fix: {fix}")


@dataclass
class SkipPolicy:
    """Raise on bad input (the default), or skip it and count it by kind."""

    skip: bool = False
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def handle(self, err: DataError, kind: str) -> None:
        """Re-raise ``err`` unless skipping; otherwise count it under ``kind`` and keep a few examples."""
        if not self.skip:
            raise err
        self.skipped[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(str(err))
