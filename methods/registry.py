"""The method registry: one entry per runnable configuration of the paper (or of this suite).

A method is registered once, with what a reader needs to place it in the paper: its stages, its query
input, its supervision and the table rows it implements. Tables (``tables/*.toml``) name methods by
registry name; ``bench run --method NAME`` looks them up here.

Methods that a later issue will implement are declared in :data:`PLANNED` with the issue that brings
them, so that every paper row names a method that is either runnable or openly not yet built. Nothing
in ``PLANNED`` can be run: ``bench run`` refuses it with the issue number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Stage = Literal["pretrain", "asr", "ground"]
Query = Literal["speech", "asr-text", "gold-text", "concept", "none"]
Supervision = Literal["weak", "full", "none"]

STAGES: tuple[str, ...] = ("pretrain", "asr", "ground")
QUERIES: tuple[str, ...] = ("speech", "asr-text", "gold-text", "concept", "none")  # concept: the oracle's hidden label
SUPERVISIONS: tuple[str, ...] = ("weak", "full", "none")


@dataclass(frozen=True)
class MethodSpec:
    """What the harness and the tables need to know about a method, without building it.

    ``run`` is the method's entry point: ``run(ctx) -> RunResult`` (see :mod:`bench.run`); it is
    ``None`` for planned methods. ``config`` maps a profile name to the method's typed configuration.
    """

    name: str
    title: str
    stages: tuple[str, ...]
    query: str
    supervision: str
    rows: tuple[str, ...] = ()
    description: str = ""
    run: Callable[..., Any] | None = None
    config: Callable[[str], Any] | None = None
    issue: int | None = None
    # its predictions do not depend on the seed (a fixed span, a deterministic fit): ``bench run`` runs one seed
    seed_free: bool = False

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip().lower() or " " in self.name:
            raise ValueError(f"method name {self.name!r} must be lower-case with no spaces")
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise ValueError(f"method {self.name}: unknown stage(s) {bad}; choose from {STAGES}")
        if self.query not in QUERIES:
            raise ValueError(f"method {self.name}: query {self.query!r} not in {QUERIES}")
        if self.supervision not in SUPERVISIONS:
            raise ValueError(f"method {self.name}: supervision {self.supervision!r} not in {SUPERVISIONS}")

    @property
    def blind(self) -> bool:
        """Reads only the annotations: no query input, no supervision (random, prior, whole video and variants)."""
        return self.query == "none" and self.supervision == "none"

    @property
    def implemented(self) -> bool:
        return self.run is not None


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a runnable method. Registering a name twice is an error, never a silent override."""
    if spec.run is None:
        raise ValueError(f"method {spec.name}: a registered method needs a run function")
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _planned(
    name: str, title: str, stages: tuple[str, ...], query: str, supervision: str, issue: int | None, desc: str
) -> MethodSpec:
    return MethodSpec(name, title, stages, query, supervision, description=desc, issue=issue)


# Every method a paper table or figure names, with the issue that will implement it (None: no issue
# has been filed yet). Kept in the order of the paper's Table 1, then the ablations.
PLANNED: dict[str, MethodSpec] = {
    s.name: s
    for s in [
        # blind rows, shown under every table
        _planned(
            "random",
            "Random proposal",
            (),
            "none",
            "none",
            4,
            "uniform over the 2D-TAN candidate set, averaged over many draws",
        ),
        _planned(
            "prior",
            "Fixed-moment prior",
            (),
            "none",
            "none",
            4,
            "the single span (fractions of the duration) that maximises a metric on train",
        ),
        _planned("whole-video", "Whole video", (), "none", "none", 4, "predicts [0, duration] for every query"),
        # supervised references
        _planned(
            "vgcl",
            "VGCL",
            ("pretrain", "ground"),
            "speech",
            "full",
            None,
            "video-guided contrastive predictive coding, then supervised grounding",
        ),
        _planned(
            "sbase",
            "SBase",
            ("ground",),
            "speech",
            "full",
            4,
            "the Base network trained with 2D-TAN's scaled-IoU BCE (App. C.1)",
        ),
        _planned(
            "sbase+asp",
            "SBase + ASP",
            ("pretrain", "ground"),
            "speech",
            "full",
            5,
            "SBase with the ASP-pre-trained speech encoder (Table 10)",
        ),
        # cascaded
        _planned(
            "asr-wav2vec2",
            "wav2vec 2.0 ASR",
            ("asr",),
            "speech",
            "none",
            6,
            "Wav2Vec2ForCTC through transformers; scored by bench wer (Table 8)",
        ),
        _planned("asr-base", "ASR-Base", ("asr", "ground"), "asr-text", "weak", 6, "Base on ASR text (Table 2)"),
        _planned("asr-wslln", "ASR-WSLLN", ("asr", "ground"), "asr-text", "weak", 6, "WSLLN on ASR text"),
        _planned("asr-scn", "ASR-SCN", ("asr", "ground"), "asr-text", "weak", 6, "SCN on ASR text"),
        _planned("asr-rtbpn", "ASR-RTBPN", ("asr", "ground"), "asr-text", "weak", 6, "RTBPN on ASR text"),
        # text references (gold transcripts)
        _planned(
            "base-text",
            "Base (gold text)",
            ("ground",),
            "gold-text",
            "weak",
            4,
            "Base with word vectors + Bi-GRU over the gold transcript: the ceiling for speech",
        ),
        _planned("wslln-text", "WSLLN (gold text)", ("ground",), "gold-text", "weak", 6, "Table 9 brackets"),
        _planned("scn-text", "SCN (gold text)", ("ground",), "gold-text", "weak", 6, "Table 9 brackets"),
        _planned("rtbpn-text", "RTBPN (gold text)", ("ground",), "gold-text", "weak", 6, "Tables 6 and 9"),
        _planned("rtbpn-text+avcl", "RTBPN + AVCL (gold text)", ("ground",), "gold-text", "weak", 6, "Table 6"),
        # end to end, weakly supervised
        _planned("base", "Base", ("ground",), "speech", "weak", 4, "Appendix A, no pre-training"),
        _planned(
            "base+vilt",
            "Base + VILT",
            ("pretrain", "ground"),
            "speech",
            "weak",
            None,
            "ViLT-style text-speech pre-training",
        ),
        _planned(
            "base+lut",
            "Base + LUT",
            ("pretrain", "ground"),
            "speech",
            "weak",
            None,
            "LUT-style distillation pre-training",
        ),
        _planned(
            "wslln+lsem",
            "WSLLN + L_sem",
            ("pretrain", "ground"),
            "speech",
            "weak",
            17,
            "WSLLN with the frozen L_sem speech encoder",
        ),
        _planned(
            "rtbpn+lsem",
            "RTBPN + L_sem",
            ("pretrain", "ground"),
            "speech",
            "weak",
            17,
            "RTBPN with the frozen L_sem speech encoder",
        ),
        _planned(
            "base+lsem",
            "Base + L_sem",
            ("pretrain", "ground"),
            "speech",
            "weak",
            5,
            "Base with only the semantic task as pre-training",
        ),
        _planned(
            "base+asp",
            "Base + L_ASP",
            ("pretrain", "ground"),
            "speech",
            "weak",
            5,
            "Base with the full ASP pre-training, no AVCL",
        ),
        _planned(
            "sil",
            "SIL (Base + L_AVCL, L_ASP)",
            ("pretrain", "ground"),
            "speech",
            "weak",
            5,
            "the full method: ASP pre-training and AVCL",
        ),
        # ablations (Tables 3, 4, 5, 11; Figures 4, 5, 9)
        _planned(
            "base+lconc+lsem", "Base + L_conc + L_sem", ("pretrain", "ground"), "speech", "weak", 5, "Table 3 row 3"
        ),
        _planned(
            "base+lsem+avcl", "Base + L_sem + L_AVCL", ("pretrain", "ground"), "speech", "weak", 5, "Table 3 row 4"
        ),
        _planned("sil-no-rob", "SIL without L_rob", ("pretrain", "ground"), "speech", "weak", 5, "Table 3 row 5"),
        _planned("sil-data10", "SIL, 10 % pre-training data", ("pretrain", "ground"), "speech", "weak", 5, "Table 4"),
        _planned("sil-data50", "SIL, 50 % pre-training data", ("pretrain", "ground"), "speech", "weak", 5, "Table 4"),
        _planned(
            "base-pooladd+lsem",
            "Pool+Add fusion, without L_conc",
            ("pretrain", "ground"),
            "speech",
            "weak",
            5,
            "Table 5",
        ),
        _planned(
            "base-pooladd+asp", "Pool+Add fusion, with L_conc", ("pretrain", "ground"), "speech", "weak", 5, "Table 5"
        ),
        _planned(
            "sil-no-location",
            "SIL without location-based selection",
            ("pretrain", "ground"),
            "speech",
            "weak",
            5,
            "Table 11",
        ),
        _planned(
            "sil-no-score", "SIL without score-based mining", ("pretrain", "ground"), "speech", "weak", 5, "Table 11"
        ),
        _planned(
            "sil-freq-only", "SIL, frequency-domain input only", ("pretrain", "ground"), "speech", "weak", 5, "Figure 4"
        ),
        _planned(
            "sil-time-only", "SIL, time-domain input only", ("pretrain", "ground"), "speech", "weak", 5, "Figure 4"
        ),
        _planned(
            "base+ldis",
            "Base + L_dis-s + L_dis-w (MSE distillation)",
            ("pretrain", "ground"),
            "speech",
            "weak",
            5,
            "Figure 5(a)",
        ),
        _planned("base+lseq", "Base + L_seq", ("pretrain", "ground"), "speech", "weak", 5, "Figure 5(a)"),
        _planned(
            "base+lseq+lword", "Base + L_seq + L_word", ("pretrain", "ground"), "speech", "weak", 5, "Figure 5(a)"
        ),
    ]
}


def all_methods() -> dict[str, MethodSpec]:
    """Registered methods first, then planned ones not (yet) registered; keyed by name."""
    _load_builtin_methods()
    out = dict(_REGISTRY)
    for name, spec in PLANNED.items():
        out.setdefault(name, spec)
    return out


def get(name: str) -> MethodSpec:
    """The spec of ``name``; unknown names raise with the closest known names."""
    methods = all_methods()
    if name in methods:
        return methods[name]
    import difflib

    close = difflib.get_close_matches(name, methods, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"no method named {name!r}.{hint} `bench methods` lists them all.")


def is_known(name: str) -> bool:
    return name in all_methods()


_loaded = False
# Modules that call register() at import; each method issue appends its module here.
_BUILTIN_MODULES: tuple[str, ...] = (
    "methods.blind",
    "methods.base",
    "methods.sil",
    "methods.asr",
    "methods.wslln",
    "methods.rtbpn",
    "methods.scn",
    "methods.tan",
    "methods.oracle",
    "methods.vslnet",
    "methods.w2v2",
)


def _load_builtin_methods() -> None:
    """Import the method modules once, so that their ``register`` calls run."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
