"""The synthetic benchmark's content hash names its data, not the libraries that encoded the files (issue 19, item 2).

A build's hash used to cover every file's bytes, so a FLAC encoder of another version (soundfile 0.12.1's libFLAC
1.3.3 against 0.14.0's 1.4.3) gave another hash for the same samples. Now audio counts by its decoded samples and
HDF5 by its arrays; a change of the data itself still changes the hash, and the tiny build's hash is recorded here.
The word vectors were the last part that depended on the machine: in float32 the encoder's results moved in the sixth
written decimal with the CPU's instruction set; they are encoded in float64 now (:mod:`bench.data.wordvec`).
"""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest
import soundfile as sf

from bench.data import synth

TINY_CONTENT_HASH = "3d98ba4e14a2"  # synth v5; the same with ATEN_CPU_CAPABILITY=default, avx2 and avx512
"""The tiny build's content hash. Re-record it when the generator's output changes on purpose (and bump
``synth.VERSION``): ``bench data synth --profile tiny --force`` prints it ("content hash ...")."""


def _write_tree(root, *, flac_title: str = "", chunked: bool = False, sample: int = 0, feature: float = 0.0):
    """A small benchmark-like tree: one FLAC, one wav, one HDF5 file, a manifest and a text file.

    ``flac_title`` goes into the FLAC's Vorbis comment: other bytes for the same samples, as another encoder's vendor
    string gives (soundfile before 0.13 cannot set the compression level).
    """
    rng = np.random.default_rng(7)
    wave = (rng.standard_normal(16_000) * 3000).astype(np.int16)
    wave[100] = sample
    (root / "corpus").mkdir(parents=True)
    with sf.SoundFile(root / "corpus" / "a.flac", "w", 16_000, 1, "PCM_16", format="FLAC") as fh:
        if flac_title:
            fh.title = flac_title
        fh.write(wave)
    sf.write(root / "b.wav", wave[::-1], 16_000, subtype="PCM_16")
    features = rng.standard_normal((40, 500)).astype(np.float32)
    features[3, 4] = feature
    with h5py.File(root / "f.hdf5", "w") as h5:
        if chunked:
            h5.create_dataset("v_1/c3d_features", data=features, chunks=(8, 100), compression="gzip")
        else:
            h5.create_dataset("v_1/c3d_features", data=features)
    (root / "speech").mkdir()
    record = {"id": "v_1#0", "text": "a man runs", "sha256": hashlib.sha256((root / "b.wav").read_bytes()).hexdigest()}
    (root / "speech" / "manifest.jsonl").write_text(json.dumps(record) + "\n")
    (root / "glove.txt").write_text("run 0.100000 -0.200000\n")
    return root


def _bytes(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_hash_is_the_same_for_other_encodings_of_the_same_data(tmp_path):
    """Other FLAC metadata and another HDF5 layout change the bytes, not the hash (fails on the old hash)."""
    a = _write_tree(tmp_path / "a", chunked=False)
    b = _write_tree(tmp_path / "b", flac_title="encoded elsewhere", chunked=True)
    bytes_a, bytes_b = _bytes(a), _bytes(b)
    assert bytes_a["corpus/a.flac"] != bytes_b["corpus/a.flac"]
    assert bytes_a["f.hdf5"] != bytes_b["f.hdf5"]
    assert synth.content_hash(a) == synth.content_hash(b)


def test_manifest_byte_digests_do_not_count_but_its_records_do(tmp_path):
    """The manifest's ``sha256`` (the wav's bytes) is left out; its other fields count."""
    root = _write_tree(tmp_path / "a")
    before = synth.content_hash(root)
    manifest = root / "speech" / "manifest.jsonl"
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "sha256": "0" * 64}) + "\n")
    assert synth.content_hash(root) == before
    manifest.write_text(json.dumps({**record, "text": "a man walks"}) + "\n")
    assert synth.content_hash(root) != before


@pytest.mark.parametrize("change", ["sample", "feature", "text", "name"])
def test_hash_changes_when_the_data_change(tmp_path, change):
    """One audio sample, one feature value, one character of a text file or one file name gives another hash."""
    base = synth.content_hash(_write_tree(tmp_path / "base"))
    other = tmp_path / "other"
    if change == "sample":
        _write_tree(other, sample=1)
    elif change == "feature":
        _write_tree(other, feature=1e-6)
    else:
        _write_tree(other)
        if change == "text":
            (other / "glove.txt").write_text("run 0.100000 -0.200001\n")
        else:
            (other / "glove.txt").rename(other / "glove2.txt")
    assert synth.content_hash(other) != base


def test_meta_of_an_older_hash_scheme_is_hashed_again(tmp_path):
    """A build whose meta.json predates the scheme gets the current hash, and records the scheme."""
    root = _write_tree(tmp_path / "a")
    (root / "meta.json").write_text(json.dumps({"content_hash": "oldbytehash0", "profile": "tiny"}))
    meta = synth.read_meta(root)
    assert meta["content_hash"] == synth.content_hash(root) != "oldbytehash0"
    on_disk = json.loads((root / "meta.json").read_text())
    assert on_disk["content_hash_scheme"] == synth.HASH_SCHEME and on_disk["profile"] == "tiny"


def test_tiny_build_has_the_recorded_hash(tmp_path, monkeypatch):
    """The tiny build's content is the recorded one: a change of the generated data (or of what makes it) fails here.

    When the change is meant, re-record :data:`TINY_CONTENT_HASH` (its docstring names the command).
    """
    monkeypatch.setenv("WSVG_HOME", str(tmp_path))
    root = synth.build("tiny", progress=False)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["content_hash_scheme"] == synth.HASH_SCHEME
    assert set(meta["made_with"]) >= set(synth.DATA_PACKAGES)
    assert meta["content_hash"] == synth.content_hash(root) == TINY_CONTENT_HASH, (
        f"the tiny build's content hash is {meta['content_hash']}, recorded {TINY_CONTENT_HASH}; made with "
        f"{meta['made_with']}"
    )


_ENCODE = (
    "import sys, tempfile, pathlib; from bench.data import wordvec; p = pathlib.Path(tempfile.mkdtemp()) / 'v.txt'; "
    "wordvec.write_vectors(p, ['washing', 'cleaning', 'guitar', 'a', 'puppy', 'automobile']); "
    "sys.stdout.write(p.read_text())"
)


def test_the_written_word_vectors_do_not_depend_on_the_cpus_instruction_set():
    """torch's kernels for each instruction set (``ATEN_CPU_CAPABILITY``: none, AVX2, the machine's best) round
    differently; the written vectors must not show it (in float32 they differed in the sixth decimal)."""
    import os
    import subprocess
    import sys

    texts = {}
    for capability in ("default", "avx2", None):
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        if capability:
            env["ATEN_CPU_CAPABILITY"] = capability
        done = subprocess.run([sys.executable, "-c", _ENCODE], env=env, capture_output=True, text=True, check=True)
        texts[capability] = done.stdout
    assert len(texts[None].splitlines()) == 6 and len(set(texts.values())) == 1
