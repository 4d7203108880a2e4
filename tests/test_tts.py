"""espeak-ng speech: the speaker pools, the waveform contract, determinism, and that speaker settings are audible.

Every check on audio is a property a listener would notice (length, loudness, pitch), measured with margins
wide enough to hold for any reasonable espeak-ng build; none depends on wall-clock time.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import espeakng_loader
import pytest
import torch

from bench.data import tts
from bench.data.errors import DataError

SENTENCE = "a man is polishing the table with a rag"


def median_f0(wave: torch.Tensor, sr: int = tts.SAMPLE_RATE) -> float:
    """Median fundamental frequency (Hz) over voiced 40 ms frames, by autocorrelation.

    espeak-ng's pitch parameter moves the F0 contour itself, so F0 is the direct measure of it; the spectral
    centroid is a poorer proxy, since it also follows the formants and the voicing/noise balance. A frame is
    voiced when it holds at least 10% of the loudest frame's energy and its autocorrelation peak, searched in
    the 60-450 Hz lag range, reaches 30% of the zero-lag value; the median over frames ignores octave slips.
    """
    frame, hop = int(0.04 * sr), int(0.01 * sr)
    frames = wave.unfold(0, frame, hop)
    frames = frames - frames.mean(1, keepdim=True)
    energy = frames.pow(2).mean(1)
    frames = frames[energy > 0.1 * energy.max()]
    spectrum = torch.fft.rfft(frames, n=2 * frame)
    autocorr = torch.fft.irfft(spectrum.abs() ** 2)[:, :frame]
    lo, hi = sr // 450, sr // 60
    lag = autocorr[:, lo:hi].argmax(1) + lo
    voiced = autocorr[torch.arange(len(frames)), lag] > 0.3 * autocorr[:, 0]
    assert voiced.sum() >= 10, "too few voiced frames to measure pitch"
    return float((sr / lag[voiced].float()).median())


def identity(s: tts.Speaker) -> tuple:
    return (s.voice, s.variant, s.pitch, s.rate)


# ---------------------------------------------------------------------------------------------------------
# Speaker pools
# ---------------------------------------------------------------------------------------------------------


def test_grounding_pool_has_enough_distinct_english_speakers_of_both_sexes():
    pool = tts.speakers("grounding")
    assert len(pool) >= 40
    assert len({identity(s) for s in pool}) == len(pool)
    assert len({s.id for s in pool}) == len(pool)
    assert all(re.fullmatch(r"g\d\d", s.id) for s in pool)
    assert all(s.voice.startswith("en") for s in pool)
    sexes = [s.sex for s in pool]
    assert set(sexes) == {"female", "male"}
    assert abs(sexes.count("female") - sexes.count("male")) <= 0.1 * len(pool)  # roughly balanced (paper: 30/28)


def test_pretrain_pool_is_disjoint_from_grounding():
    grounding, pretrain = tts.speakers("grounding"), tts.speakers("pretrain")
    assert set(s.sex for s in pretrain) == {"female", "male"}
    assert all(re.fullmatch(r"p\d\d", s.id) for s in pretrain)
    assert not {identity(s) for s in grounding} & {identity(s) for s in pretrain}
    # ... but both come from one distribution of voices: every accent of the pre-training pool is also a grounding
    # accent, and the pools share most timbres (an ASR trained on the corpus has heard voices like the queries').
    assert {s.voice for s in pretrain} <= {s.voice for s in grounding}
    shared = {s.variant for s in grounding} & {s.variant for s in pretrain}
    assert len(shared) >= 0.6 * len({s.variant for s in pretrain}), shared


def test_pools_are_deterministic_and_unknown_pool_is_refused():
    assert tts.speakers() == tts.speakers("grounding") == tts.speakers("grounding")
    assert tts.speakers("pretrain") == tts.speakers("pretrain")
    with pytest.raises(ValueError, match="grounding"):
        tts.speakers("librispeech")


def test_every_speaker_exists_in_the_bundled_data_and_sounds_its_sex():
    """Each variant is a file of the wheel's data, each voice loads, and the sexes separate by pitch."""
    variants = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    for pool in ("grounding", "pretrain"):
        f0 = {"female": [], "male": []}
        for speaker in tts.speakers(pool):
            assert (variants / speaker.variant).is_file(), speaker
            f0[speaker.sex].append(median_f0(tts.synthesize(SENTENCE, speaker)))
        # Adult female voices sit around 165-255 Hz, male ones around 85-155 Hz; every speaker falls on its side.
        assert max(f0["male"]) < min(f0["female"]), (pool, f0)


# ---------------------------------------------------------------------------------------------------------
# The waveform
# ---------------------------------------------------------------------------------------------------------


def test_waveform_contract():
    speaker = dataclasses.replace(tts.speakers()[0], rate=160)
    wave = tts.synthesize(SENTENCE, speaker)
    assert wave.dtype == torch.float32 and wave.dim() == 1
    assert torch.isfinite(wave).all()
    assert wave.abs().max() <= 1.0
    assert wave.pow(2).mean().sqrt() > 0.01  # clearly not silence (speech here is around 0.1 RMS)
    # 9 words at 160 words/min is 3.4 s nominal; espeak-ng speaks short words faster than the nominal rate.
    nominal = len(SENTENCE.split()) / speaker.rate * 60
    seconds = wave.numel() / tts.SAMPLE_RATE
    assert 0.5 * nominal < seconds < 1.5 * nominal + 2 * tts.KEEP_SILENCE_S


def test_silence_is_trimmed_to_about_a_tenth_of_a_second():
    wave = tts.synthesize(SENTENCE, tts.speakers()[3])
    loud = torch.nonzero(wave.abs() >= 0.01 * wave.abs().max()).squeeze(1)
    margin = 0.12 * tts.SAMPLE_RATE  # KEEP_SILENCE_S plus the resampling filter's spread
    assert loud[0] <= margin
    assert wave.numel() - 1 - loud[-1] <= margin


def test_empty_or_silent_text_is_a_data_error():
    speaker = tts.speakers()[0]
    for text in ("", "   ", "\n\t "):
        with pytest.raises(DataError, match="empty"):
            tts.synthesize(text, speaker)
    with pytest.raises(DataError, match="item 1"):
        tts.synthesize_many([("a dog", speaker), ("  ", speaker)])
    with pytest.raises(DataError, match="no audible speech"):
        tts.synthesize("...", speaker)


def test_unknown_voice_or_variant_is_a_data_error():
    speaker = tts.speakers()[0]
    # espeak-ng itself would silently ignore an unknown variant and speak with the plain voice.
    with pytest.raises(DataError, match="variant"):
        tts.synthesize("a dog", dataclasses.replace(speaker, variant="nosuchvariant"))
    with pytest.raises(DataError, match="no voice named"):
        tts.synthesize("a dog", dataclasses.replace(speaker, voice="xx-nosuchvoice"))


# ---------------------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------------------


def test_same_text_and_speaker_give_bit_identical_audio_whatever_came_before():
    # espeak-ng carries synthesis state across utterances within a loaded library (pitch-flutter phase, wave
    # phase, echo buffer): without the per-utterance reload, the second call would differ from the first.
    first, other = tts.speakers()[0], tts.speakers()[5]
    a = tts.synthesize(SENTENCE, first)
    tts.synthesize("two people are dancing on a wooden stage", other)
    b = tts.synthesize(SENTENCE, first)
    c = tts.synthesize(SENTENCE, first)
    assert torch.equal(a, b) and torch.equal(b, c)


def test_breath_noise_does_not_follow_the_clock():
    # espeak_Initialize seeds its noise generator with time(NULL): a breathy variant (f5) spoken in two
    # different seconds must still be identical, because the binding reseeds from the utterance.
    breathy = next(s for s in tts.speakers() if s.variant == "f5")
    a = tts.synthesize(SENTENCE, breathy)
    time.sleep(1.1)
    assert torch.equal(tts.synthesize(SENTENCE, breathy), a)


def test_another_espeak_user_in_the_process_does_not_change_the_audio():
    speaker = tts.speakers()[2]
    before = tts.synthesize(SENTENCE, speaker)
    shared = espeakng_loader.load_library()  # the wheel's own copy, as other packages (phonemizers) load it
    assert shared.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0x8000) > 0
    assert torch.equal(tts.synthesize(SENTENCE, speaker), before)


def test_synthesize_many_matches_the_loop_with_two_workers():
    pool = tts.speakers()
    items = [
        (SENTENCE, pool[0]),
        ("the girl throws a red ball to her dog", pool[1]),
        ("two people are dancing on a wooden stage", pool[2]),
        (SENTENCE, pool[7]),
        ("a woman slices bread", pool[12]),
    ]
    loop = [tts.synthesize(text, speaker) for text, speaker in items]
    for got in (tts.synthesize_many(items), tts.synthesize_many(items, workers=2)):
        assert len(got) == len(loop)
        assert all(torch.equal(x, y) for x, y in zip(got, loop, strict=True))
    with pytest.raises(ValueError, match="workers"):
        tts.synthesize_many(items, workers=0)


# ---------------------------------------------------------------------------------------------------------
# Speaker settings are audible
# ---------------------------------------------------------------------------------------------------------


def test_different_speakers_sound_different():
    pool = tts.speakers()
    waves = [tts.synthesize(SENTENCE, s) for s in pool[:6]]
    for i in range(len(waves)):
        for j in range(i + 1, len(waves)):
            assert waves[i].shape != waves[j].shape or not torch.allclose(waves[i], waves[j], atol=1e-3)


def test_higher_rate_gives_shorter_audio():
    base = tts.speakers()[0]
    lengths = [tts.synthesize(SENTENCE, dataclasses.replace(base, rate=r)).numel() for r in (120, 170, 240)]
    assert lengths[0] > lengths[1] > lengths[2]
    assert lengths[0] > 1.4 * lengths[2]  # doubling the rate shortens the speech substantially


@pytest.mark.parametrize("index", [0, 1])  # a female and a male speaker
def test_higher_pitch_raises_the_fundamental_frequency(index):
    base = tts.speakers()[index]
    low, high = (median_f0(tts.synthesize(SENTENCE, dataclasses.replace(base, pitch=p))) for p in (20, 80))
    assert high > 1.15 * low, (base, low, high)


def test_more_words_give_longer_audio():
    speaker = tts.speakers()[4]
    sentences = [
        "a dog",
        "a dog runs in the park",
        "a dog runs in the park and catches a red ball",
        "a dog runs in the park and catches a red ball before the children call it back home",
    ]
    lengths = [tts.synthesize(s, speaker).numel() for s in sentences]
    assert lengths == sorted(lengths) and len(set(lengths)) == len(lengths)
