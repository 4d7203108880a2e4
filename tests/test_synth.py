"""The synthetic benchmark: its world, its statistics (as the data issue asks), determinism, and a tiny build."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import statistics

import numpy as np
import pytest

from bench.data import synth, world

CFG = synth.PROFILES["small"]


@pytest.fixture(scope="module")
def videos() -> list[synth.Video]:
    return [synth.draw_video(CFG, "train", i) for i in range(3000)]


def test_world_has_enough_concepts_with_synonyms():
    assert len(world.CONCEPTS) >= 60
    assert len({c.name for c in world.CONCEPTS}) == len(world.CONCEPTS)
    assert sum(len(forms) > 1 for forms in world.VERBS.values()) >= 12
    assert sum(len(names) > 1 for names in world.OBJECTS.values()) >= 14
    # related concepts exist: many verbs take several objects and many objects several verbs
    objects_per_verb = [len(world.AFFORDS[v]) for v in world.VERBS]
    assert statistics.mean(objects_per_verb) >= 4


def test_caption_grammar(videos):
    texts = [e.text for v in videos for e in v.described]
    lengths = [len(t.split()) for t in texts]
    assert min(lengths) >= 6 and max(lengths) <= 20
    assert 11 <= statistics.mean(lengths) <= 15  # ActivityNet Captions average about 14 words
    assert all(t[0].isupper() and t.endswith(".") for t in texts)
    vocab = set(world.vocabulary())
    assert {w for t in texts for w in world.tokenize(t)} <= vocab
    function_words = {"the", "a", "is", "and", "in", "to", "while", "then"}
    assert function_words <= {w for t in texts for w in world.tokenize(t)}
    assert "We see she" not in " ".join(texts)


def test_corpus_speaks_every_caption_word_and_words_beyond(videos):
    """The corpus stands in for LibriSpeech: every word a caption can say occurs in it, in other sentences."""
    rng = np.random.default_rng(0)
    corpus = [world.corpus_sentence(rng) for _ in range(3000)]  # synth/small's corpus size
    corpus_words = {w for t in corpus for w in world.tokenize(t)}
    caption_words = {w for v in videos for e in v.described for w in world.tokenize(e.text)}
    assert caption_words <= corpus_words
    assert set(world.tokenize(" ".join(world.EXTRA_OBJECTS))) <= corpus_words  # "and beyond"
    assert corpus_words <= set(world.vocabulary())
    captions = {e.text.lower() for v in videos for e in v.described}
    assert sum(t.lower() in captions for t in corpus) < 0.05 * len(corpus)  # other sentences, not the captions
    lengths = [len(t.split()) for t in corpus]
    assert min(lengths) >= 5 and max(lengths) <= 20


def test_video_statistics_are_activitynet_like(videos):
    durations = [v.duration for v in videos]
    assert min(durations) >= 20 and max(durations) <= 240
    assert 110 <= statistics.mean(durations) <= 125  # ActivityNet: about 117 s
    events = [len(v.described) for v in videos]
    assert set(events) == {2, 3, 4, 5}
    assert 3.5 <= statistics.mean(events) <= 3.8  # ActivityNet Captions: 3.65 per video
    ratios = [(e.end - e.start) / v.duration for v in videos for e in v.described]
    assert 0.27 <= statistics.mean(ratios) <= 0.34
    assert 0.15 <= float(np.mean([r > 0.5 for r in ratios])) <= 0.28  # long moments are common
    assert all(0 <= e.start < e.end <= v.duration for v in videos for e in v.events)
    starts = [[e.start for e in v.described] for v in videos]
    assert all(s == sorted(s) for s in starts)  # captions in temporal order
    overlapping = sum(any(a.end > b.start for a, b in itertools.pairwise(v.described)) for v in videos)
    assert overlapping > len(videos) * 0.3  # overlaps allowed and frequent
    distractors = [sum(not e.described for e in v.events) for v in videos]
    assert set(distractors) == set(range(CFG.max_distractors + 1)) == {0, 1}  # 0 or 1 undescribed events


def test_distractors_share_a_verb_or_object_half_the_time(videos):
    shared = []
    for v in videos:
        described = [world.CONCEPTS[e.concept] for e in v.described]
        for e in v.events:
            if not e.described:
                c = world.CONCEPTS[e.concept]
                shared.append(any(c.verb == d.verb or c.obj == d.obj for d in described))
    assert 0.45 <= float(np.mean(shared)) <= 0.85  # half by construction, plus chance overlaps


def test_generation_is_deterministic_and_seeded():
    a, b = synth.draw_video(CFG, "val_1", 7), synth.draw_video(CFG, "val_1", 7)
    assert a == b
    other = synth.draw_video(synth.SynthConfig(videos=(1, 1, 1), corpus_utterances=1, seed=1), "val_1", 7)
    assert other != a
    protos, scenes = synth.prototypes(CFG)
    f1, f2 = synth.video_features(CFG, a, protos, scenes), synth.video_features(CFG, a, protos, scenes)
    assert np.array_equal(f1, f2) and f1.dtype == np.float32
    assert f1.shape == (round(a.duration * CFG.feature_rate), 500)


def test_related_concepts_share_prototype_components():
    protos, _ = synth.prototypes(CFG)
    unit = protos / np.linalg.norm(protos, axis=1, keepdims=True)
    index = {c.name: c.index for c in world.CONCEPTS}
    same_verb = unit[index["wash car"]] @ unit[index["wash dog"]]
    same_object = unit[index["wash car"]] @ unit[index["push car"]]
    unrelated = unit[index["wash car"]] @ unit[index["play guitar"]]
    # ov = 0.5: a shared verb (or object) contributes ov/2 = 0.25 of each prototype's variance
    assert same_verb == pytest.approx(0.25, abs=0.1) and same_object == pytest.approx(0.25, abs=0.1)
    assert abs(unrelated) < 0.12


def test_features_carry_the_event_where_it_happens():
    cfg = synth.SynthConfig(videos=(1, 1, 1), corpus_utterances=1)
    video = synth.draw_video(cfg, "train", 3)
    protos, scenes = synth.prototypes(cfg)
    feats = synth.video_features(cfg, video, protos, scenes) - scenes[video.scene]
    t = (np.arange(len(feats)) + 0.5) / cfg.feature_rate
    for e in video.described:
        proto = protos[e.concept] / np.linalg.norm(protos[e.concept])
        proj = feats @ proto
        inside = (t > e.start + cfg.ramp_s) & (t < e.end - cfg.ramp_s)
        outside = ~((t > e.start - cfg.ramp_s) & (t < e.end + cfg.ramp_s))
        if inside.sum() > 4 and outside.sum() > 4:
            assert proj[inside].mean() > proj[outside].mean() + 10  # amplitude ~1 × norm ~22


def test_noise_is_stationary_ar1():
    cfg = synth.SynthConfig(videos=(1, 1, 1), corpus_utterances=1, scene_scale=0.0, max_distractors=0)
    video = synth.Video("v_x", "train", 240.0, 0, "male")  # no events: pure noise
    protos, scenes = synth.prototypes(cfg)
    noise = synth.video_features(cfg, video, protos, scenes)
    assert noise.std() == pytest.approx(cfg.noise_std, rel=0.1)
    lag1 = np.mean([np.corrcoef(noise[:-1, d], noise[1:, d])[0, 1] for d in range(50)])
    assert lag1 == pytest.approx(cfg.noise_rho, abs=0.05)


def test_debiased_split_moves_test_moments():
    cfg = synth.SynthConfig(videos=(1, 1, 1), corpus_utterances=1, split_bias="debiased")
    centre = {
        split: [
            (e.start + e.end) / 2 / v.duration
            for v in (synth.draw_video(cfg, split, i) for i in range(300))
            for e in v.described
        ]
        for split in ("train", "val_2")
    }
    assert statistics.mean(centre["train"]) < 0.4 < 0.65 < statistics.mean(centre["val_2"])


def test_test_ood_moments_are_short_and_spread_where_train_moments_are_long():
    """The debiased split is sized as ActivityNet-CD's test-ood (span / duration within ood_span, mean near 0.2),
    while val_2 keeps the train split's ActivityNet-like statistics (long moments common)."""
    cfg = dataclasses.replace(synth.PROFILES["small"], videos=(300, 10, 300), ood_videos=300)
    ratios = {}
    for split in ("train", "val_2", synth.OOD):
        ratios[split] = [(e.end - e.start) / v.duration for v in synth._videos(cfg, split) for e in v.described]
    ood = ratios[synth.OOD]
    lo, hi = cfg.ood_span
    assert all(lo - 1e-3 <= r <= hi + 1e-3 for r in ood)  # times are rounded to 0.01 s
    assert 0.17 < statistics.mean(ood) < 0.23
    for split in ("train", "val_2"):
        assert sum(r > 0.6 for r in ratios[split]) / len(ratios[split]) > 0.08  # long moments, none in test_ood
    assert not any(r > 0.6 for r in ood)
    assert synth.draw_video(cfg, synth.OOD, 0).id.startswith("v_syn3")


def test_paper_profile_has_the_papers_query_counts():
    cfg = synth.PROFILES["paper"]
    assert cfg.query_limit == (37_417, 17_505, 17_031)
    small = synth.SynthConfig(videos=(0, 0, 0), corpus_utterances=1, query_limit=(10, 7, 5))
    assert [sum(len(v.described) for v in synth._videos(small, s)) for s in synth.SPLITS] == [10, 7, 5]


def test_word_vectors_put_synonyms_closer_than_unrelated_words():
    from bench.data import wordvec

    vocab = world.vocabulary()
    vectors = wordvec.encode_words(vocab)
    index = {w: i for i, w in enumerate(vocab)}

    def cos(a: str, b: str) -> float:
        return float(vectors[index[a]] @ vectors[index[b]])

    synonyms = [p for forms in world.VERBS.values() for p in itertools.combinations([f[2] for f in forms], 2)]
    synonyms += [p for names in world.OBJECTS.values() for p in itertools.combinations(names, 2)]
    heads = [forms[0][2] for forms in world.VERBS.values()] + [names[0] for names in world.OBJECTS.values()]
    unrelated = list(itertools.combinations(heads, 2))
    syn, unr = statistics.mean(cos(*p) for p in synonyms), statistics.mean(cos(*p) for p in unrelated)
    # measured here: synonyms 0.59, unrelated 0.31 (all-MiniLM-L6-v2, each word encoded alone)
    assert syn - unr >= 0.2
    closer = [cos(a, b) > statistics.median(cos(a, h) for h in heads if h != a) for a, b in synonyms]
    assert float(np.mean(closer)) >= 0.8


def test_tiny_build_in_real_formats(tmp_path, monkeypatch):
    """Build the tiny profile, then read it back with the real-data readers."""
    from bench.data import activitynet, c3d, glove, librispeech

    monkeypatch.setenv("WSVG_HOME", str(tmp_path))
    root = synth.build("tiny", progress=False)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["videos"] == {"train": 24, "val_1": 8, "val_2": 8, "test_ood": 8}
    assert len(meta["content_hash"]) == 12 and meta["content_hash"] == synth.content_hash(root)
    label = {**{s: s for s in synth.SPLITS}, synth.OOD: "val_2"}  # test_ood's speech files take val_2's naming
    moments = {s: activitynet.read_captions(root / "annotations" / f"{s}.json", label[s]) for s in label}
    moments = {s: m[0] if isinstance(m, tuple) else m for s, m in moments.items()}
    assert {s: len(m) for s, m in moments.items()} == meta["queries"]
    features = c3d.open_features(root / "features")
    first = moments["train"][0]
    assert features.get(first.video).shape[1] == 500
    manifest = [json.loads(line) for line in (root / "speech" / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == sum(meta["queries"].values())
    speakers = {r["speaker"] for r in manifest}
    assert len(speakers) >= 10
    for record in manifest[:20]:
        wav = root / "speech" / "wavs" / record["wav"]
        assert hashlib.sha256(wav.read_bytes()).hexdigest() == record["sha256"]
        assert record["wav"] == activitynet.wav_name(record["video"], label[record["split"]], record["k"])
    assert {r["split"] for r in manifest} == set(label)
    corpus = librispeech.read_librispeech(root / "corpus", ["train-synth"])
    assert len(corpus) == synth.PROFILES["tiny"].corpus_utterances
    subsets = json.loads((root / "corpus" / "subsets.json").read_text())
    assert set(subsets["10%"]) <= set(subsets["50%"]) <= set(subsets["100%"])
    vectors = glove.read_glove(root / "glove.txt")
    assert len(vectors.words) == len(world.vocabulary())
    # cached: a second call returns the same directory without rebuilding
    assert synth.build("tiny", progress=False) == root


def test_build_is_deterministic(tmp_path, monkeypatch):
    """Two independent builds of one config give byte-identical files, hence the same content hash."""
    hashes = []
    for home in ("a", "b"):
        monkeypatch.setenv("WSVG_HOME", str(tmp_path / home))
        root = synth.build("tiny", progress=False)
        hashes.append(json.loads((root / "meta.json").read_text())["content_hash"])
    assert hashes[0] == hashes[1]
