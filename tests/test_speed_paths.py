"""The fast code paths compute what the straightforward ones computed: losses and gradients on fixed updates.

``tests/data/update_reference.pt`` was recorded from the implementations before the speed work (issue 15), on the
cases of ``tests/update_cases.py`` (every grounding method's training loss on a fixed batch, at the tiny profile,
dropout off). A fast path that changes a loss or any gradient beyond float tolerance fails here.
"""

from __future__ import annotations

import pytest
import torch
import update_cases

REFERENCE = torch.load(update_cases.REFERENCE)
# Parameters that moved to another module in the speed work: new name -> the recorded one.
RENAMED: dict[str, str] = {}


@pytest.mark.parametrize("name", sorted(update_cases.CASES))
def test_loss_and_gradients_match_the_recorded_reference(name):
    got = update_cases.summarise(*update_cases.compute(name), renamed=RENAMED)
    want = REFERENCE[name]
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-6)
    assert sorted(got["grads"]) == sorted(want["grads"])
    for param, (norm, projection) in want["grads"].items():
        g_norm, g_proj = got["grads"][param]
        assert g_norm == pytest.approx(norm, rel=1e-4, abs=1e-6), param
        assert g_proj == pytest.approx(projection, rel=1e-4, abs=1e-5 * max(1.0, norm)), param
