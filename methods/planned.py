"""Methods that a later issue will implement, with the issue that brings them (None: no issue has been filed yet).

Every paper row names a method that is either runnable or openly not yet built; nothing here can be run: ``bench
run`` refuses it with the issue number. :mod:`methods.registry` lists a planned method only while nothing registers it.
"""

from __future__ import annotations

from methods.spec import MethodSpec


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
