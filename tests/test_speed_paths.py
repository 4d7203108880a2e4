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
# Parameters that moved to another module since the recording (the speed work, then issue 16's one proposal head for
# Base and RTBPN): a part of the new name -> the recorded one's. The head's fusion was Base's ``interaction`` and
# RTBPN's own ``attend``, ``gate`` and ``fuse_gru``.
MOVED = {"head.scorer.sparse.conv.": "map_conv.conv.", "head.scorer.head.": "head."}
FUSION_MOVED = {"base": {"head.fusion.": "interaction."},
                "rtbpn": {"head.fusion.gru.": "fuse_gru.", "head.fusion.": ""}}  # fmt: skip


def recorded_name(name: str, case: str) -> str:
    """``name`` as case ``case``'s recording spells it."""
    moved = {**MOVED, **FUSION_MOVED["rtbpn" if case.startswith("rtbpn") else "base"]}
    for new, old in moved.items():
        name = name.replace(new, old)
    return name


@pytest.mark.parametrize("name", sorted(update_cases.CASES))
def test_loss_and_gradients_match_the_recorded_reference(name):
    got = update_cases.summarise(*update_cases.compute(name), renamed=lambda param: recorded_name(param, name))
    want = REFERENCE[name]
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-6)
    assert sorted(got["grads"]) == sorted(want["grads"])
    for param, (norm, projection) in want["grads"].items():
        g_norm, g_proj = got["grads"][param]
        assert g_norm == pytest.approx(norm, rel=1e-4, abs=1e-6), param
        assert g_proj == pytest.approx(projection, rel=1e-4, abs=1e-5 * max(1.0, norm)), param


# -- each fast part against its straightforward form, values and gradients ---------------------------------------


@pytest.mark.parametrize("n", [64, 32])
def test_cell_max_is_the_max_over_each_cells_clips_with_the_same_gradient(n):
    from methods.parts import proposals

    torch.manual_seed(0)
    cells = proposals.valid_cells(n)
    x = torch.randn(n, 3, 5, requires_grad=True)  # clips first
    got = proposals.CellMax(cells, n)(x)
    want = torch.stack([x[s : e + 1].max(dim=0).values for s, e in cells.tolist()])
    assert torch.equal(got, want)
    weights = torch.randn_like(want)
    (g_got,) = torch.autograd.grad((got * weights).sum(), x)
    (g_want,) = torch.autograd.grad((want * weights).sum(), x)
    torch.testing.assert_close(g_got, g_want)


@pytest.mark.parametrize(("n", "kernel"), [(64, 3), (64, 5), (32, 3), (32, 5)])
def test_proposal_scorer_fast_path_equals_the_reference_path(n, kernel):
    from methods.parts import proposals

    torch.manual_seed(0)
    scorer = proposals.ProposalScorer(6, kernel, n)
    m = torch.randn(4, n, 6, requires_grad=True)
    outputs = []
    for reference in (False, True):
        scorer.reference = reference
        logits, clips = scorer(m, clip_rows=2)
        assert logits.shape == (4, len(proposals.candidates(n))) and clips.shape == (2, n)
        grads = torch.autograd.grad(logits.sum() + 2 * clips.sum(), [m, *scorer.parameters()])
        outputs.append((logits, clips, grads))
    (l1, c1, g1), (l2, c2, g2) = outputs
    torch.testing.assert_close(l1, l2)
    torch.testing.assert_close(c1, c2)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_additive_scores_equal_the_full_tensor_on_real_steps_and_refuse_other_masks():
    from methods.parts import fusion

    torch.manual_seed(0)
    a, c, u = torch.randn(5, 7, 4), torch.randn(5, 9, 4), torch.randn(4)
    for t in (a, c, u):
        t.requires_grad_(True)
    lengths = torch.tensor([9, 3, 5, 1, 9])
    mask = torch.arange(9)[None] < lengths[:, None]
    got = fusion.additive_scores(a, c, u, mask, budget=50)  # small groups: several rows of different lengths
    want = (torch.tanh(a[:, :, None] + c[:, None]) @ u).masked_fill(~mask[:, None], float("-inf"))
    assert torch.equal(torch.isinf(got), ~mask[:, None].expand_as(got))
    torch.testing.assert_close(got[mask[:, None].expand_as(got)], want[mask[:, None].expand_as(want)])
    weights = torch.randn_like(want).masked_fill(~mask[:, None], 0.0)
    g_got = torch.autograd.grad((got.masked_fill(~mask[:, None], 0.0) * weights).sum(), [a, c, u])
    g_want = torch.autograd.grad((want.masked_fill(~mask[:, None], 0.0) * weights).sum(), [a, c, u])
    for x, y in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(x, y)
    holes = mask.clone()
    holes[0, 2] = False
    with pytest.raises(ValueError, match="prefix"):
        fusion.additive_scores(a, c, u, holes)


def test_32_clips_scale_the_sparse_map_and_keep_the_candidate_fractions():
    from collections import Counter

    from methods.parts import proposals

    cells, cand = proposals.valid_cells(32), proposals.candidates(32)
    assert len(cells) == 280 and len(cand) == 80
    lengths = Counter((cand[:, 1] - cand[:, 0] + 1).tolist())
    assert lengths == {4: 29, 8: 25, 12: 11, 16: 9, 24: 3, 28: 2, 32: 1}  # 1/8, 1/4, 3/8, 1/2, 3/4, 7/8, 1 of 32
    assert proposals.scales(64) == ((16, 1, 0), (8, 2, 17), (8, 4, 35))  # 2D-TAN's [16, 8, 8] at 64 clips
    with pytest.raises(ValueError, match="multiple of 8"):
        proposals.scales(30)
