"""Fixed training updates of the grounding methods, for the recorded-reference test of the fast code paths.

Each case builds a method's network at the tiny profile from a fixed seed, a fixed random batch in the harness's
layout, and computes its training loss and the gradient of every parameter, in eval mode (dropout off, so that the
random stream is only the methods' own sampling, reseeded before the loss). :func:`summarise` reduces a case to its
loss and, per parameter, the gradient's norm and its dot product with a fixed random direction: two numbers that
any change of the gradient moves. ``tests/data/update_reference.pt`` holds these summaries as computed by the
straightforward implementations (before the speed work of issue 15); ``test_speed_paths.py`` checks that the code
of today reproduces them to float tolerance. Regenerate only when a method's math changes on purpose, and only
those cases: ``python tests/update_cases.py CASE ...`` records them on the reference paths (and say so in the
commit).
"""

from __future__ import annotations

import dataclasses
import hashlib
import string
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

REFERENCE = Path(__file__).parent / "data" / "update_reference.pt"
B, N_CLIPS, VIDEO_DIM, WORD_DIM, N_WORDS = 6, 64, 40, 12, 30


def batch(seed: int = 0) -> dict[str, Tensor]:
    """A batch of six queries of three videos (two share a video), every field a method may read."""
    g = torch.Generator().manual_seed(seed)
    mel_len = torch.tensor([61, 40, 52, 33, 61, 47])
    words_len = torch.tensor([9, 5, 12, 7, 3, 10])
    sem_len = torch.tensor([14, 9, 11, 6, 14, 8])
    duration = torch.tensor([80.0, 120.0, 80.0, 45.5, 200.0, 120.0])
    start = torch.tensor([5.0, 30.0, 0.0, 10.0, 100.0, 60.0])
    end = torch.tensor([40.0, 50.0, 70.0, 45.5, 190.0, 61.5])

    def padded(lengths: Tensor, *shape: int) -> Tensor:
        x = torch.randn(len(lengths), int(lengths.max()), *shape, generator=g)
        return x * (torch.arange(x.shape[1])[None, :] < lengths[:, None]).view(len(lengths), -1, *[1] * len(shape))

    words = torch.randint(1, N_WORDS + 1, (B, int(words_len.max())), generator=g)
    words = words * (torch.arange(words.shape[1])[None] < words_len[:, None])
    return {
        "video": torch.randn(B, N_CLIPS, VIDEO_DIM, generator=g),
        "video_idx": torch.tensor([0, 1, 0, 2, 3, 1]),
        "mel": padded(mel_len, 80),
        "mel_len": mel_len,
        "words": words,
        "words_len": words_len,
        "sem": padded(sem_len, 16),
        "sem_len": sem_len,
        "span": torch.stack([start, end], 1),
        "duration": duration,
        "index": torch.arange(B),
    }


def word_vectors() -> Tensor:
    wv = torch.randn(N_WORDS + 1, WORD_DIM, generator=torch.Generator().manual_seed(1))
    wv[0] = 0
    return wv


def vocab() -> list[str]:
    """Row i (1-based) is a word; a few function words so SCN's masking has both kinds."""
    function = ["the", "a", "is", "and", "in"]
    return function + [f"w{string.ascii_lowercase[i % 26]}{i}" for i in range(N_WORDS - len(function))]


def _base(query: str, supervision: str = "weak", **kw):
    from methods import base

    c = base.base_config("tiny", query=query, supervision=supervision, **kw)
    model = base.BaseNet(c, VIDEO_DIM, word_vectors(), query_dim=16 if query == "features" else None)
    loss = base.weak_loss if supervision == "weak" else base.full_loss
    return model, lambda b: loss(model, b)


# AVCL's clip selection sorts clip scores that a fresh tiny network makes nearly equal, so the last bits of a
# float sum could swap two clips; with T = N every clip inside the top proposal is a positive and every one outside
# a negative, and the selection depends only on the top proposal (well separated in these cases).
ALL_CLIPS = {"T": N_CLIPS}


def _sil():
    from methods import sil

    c = dataclasses.replace(sil.sil_config("tiny"), **ALL_CLIPS)
    model = sil.SILNet(c, VIDEO_DIM, 16)
    return model, lambda b: sil.sil_loss(model, b)


def _rtbpn(avcl: bool = False, query: str = "words"):
    from methods import rtbpn

    c = rtbpn.rtbpn_config("tiny", avcl=avcl, query=query, **ALL_CLIPS)
    model = rtbpn.RTBPNNet(c, VIDEO_DIM, word_vectors(), query_dim=16 if query == "features" else None)
    return model, lambda b: rtbpn.rtbpn_loss(model, b)


def _wslln(query: str = "words"):
    from methods import wslln

    c = wslln.wslln_config("tiny", query=query)
    model = wslln.WSLLNNet(c, VIDEO_DIM, word_vectors(), query_dim=16 if query == "features" else None)
    return model, lambda b: wslln.wslln_loss(model, b)


def _scn():
    from methods import scn

    b = batch()
    model = scn.SCNNet(scn.scn_config("tiny"), VIDEO_DIM, word_vectors(), vocab(), b["words"], b["words_len"])
    return model, lambda x: scn.scn_loss(model, x)


CASES: dict[str, Callable[[], tuple[nn.Module, Callable]]] = {
    "base": lambda: _base("speech"),
    "base-text": lambda: _base("gold-text"),
    "sbase": lambda: _base("speech", "full"),
    "base-features-pooladd": lambda: _base("features", fusion="pool-add"),
    "sil": lambda: _sil(),
    "rtbpn-text": lambda: _rtbpn(),
    "rtbpn-text+avcl": lambda: _rtbpn(avcl=True),
    "wslln-text": _wslln,
    "scn-text": _scn,
    "wslln+lsem": lambda: _wslln("features"),  # the frozen encoder's features: the batch's 16-d "sem"
    "rtbpn+lsem": lambda: _rtbpn(query="features"),
}


def compute(name: str, reference: bool = False) -> tuple[nn.Module, Tensor]:
    """The case's model (gradients filled in) and its loss, from fixed seeds; with ``reference``, every part that has
    a straightforward reference path runs it (the recording's)."""
    torch.manual_seed(0)
    model, loss_fn = CASES[name]()
    model.eval()
    for module in model.modules():
        if reference and hasattr(type(module), "reference"):
            module.reference = True
    torch.manual_seed(1)
    loss, _ = loss_fn(batch())
    loss.backward()
    return model, loss.detach()


def summarise(model: nn.Module, loss: Tensor, renamed: Callable[[str], str] | None = None) -> dict[str, object]:
    """The loss, and per parameter ``[grad norm, <grad, fixed random direction>]`` (zeros for no gradient).

    ``renamed`` maps a parameter's name today to its name in the recording (the direction is seeded by the name).
    """
    out: dict[str, list[float]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        name = renamed(name) if renamed else name
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
        direction = torch.randn(p.shape, generator=torch.Generator().manual_seed(seed))
        out[name] = [float(grad.norm()), float((grad * direction).sum())]
    return {"loss": float(loss), "grads": out}


if __name__ == "__main__":
    # python tests/update_cases.py [CASE ...]: re-record the named cases (all without names), on the reference paths,
    # keeping the other cases' recordings as they are.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from test_speed_paths import recorded_name  # the recording keeps the parameter names of before the speed work

    names = sys.argv[1:] or list(CASES)
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        sys.exit(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    recorded = torch.load(REFERENCE) if REFERENCE.is_file() and sys.argv[1:] else {}
    for name in names:
        recorded[name] = summarise(*compute(name, reference=True), renamed=partial(recorded_name, case=name))
    REFERENCE.parent.mkdir(exist_ok=True)
    torch.save(recorded, REFERENCE)
    print(f"wrote {', '.join(names)} into {REFERENCE}")
