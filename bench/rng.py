"""The run's random streams, kept: whatever a cached build draws does not move them.

A run's results must not depend on what the cache held. A build that runs only when its cache is empty (a stage,
a featurized split, the frozen query encodings) may draw random numbers: constructing a module initialises its
weights from torch's stream, a stage reseeds every stream with its own seed. Each such build runs inside
:func:`kept`, so the caller's Python, numpy, torch (CPU and every CUDA device) streams are exactly as they were
before it, built or found cached.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def kept() -> Iterator[None]:
    """Restore Python's, numpy's and torch's random streams on exit (also when the body raises)."""
    import numpy as np
    import torch

    state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
