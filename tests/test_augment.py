"""Table 7's augmentations: time stretching, pitch shifting, noise addition, and the generated noise bank."""

from __future__ import annotations

import math

import pytest
import torch

from bench.data import augment
from bench.data.errors import DataError

SR = 16_000


def tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


def peak_hz(x: torch.Tensor) -> float:
    """The frequency of the largest FFT bin, with parabolic interpolation on the log magnitude."""
    window = torch.hann_window(x.shape[-1], dtype=torch.float64)
    mag = torch.fft.rfft(x.double() * window).abs().clamp_min(1e-12).log()
    k = int(mag.argmax())
    if 0 < k < mag.shape[0] - 1:
        a, b, c = float(mag[k - 1]), float(mag[k]), float(mag[k + 1])
        k = k + 0.5 * (a - c) / (a - 2 * b + c)
    return k * SR / x.shape[-1]


def snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    return 10 * math.log10(float(clean.double().square().sum() / (noisy - clean).double().square().sum()))


def spectral_slope(x: torch.Tensor, lo: float = 100.0, hi: float = 4000.0) -> float:
    """The slope of log power against log frequency between ``lo`` and ``hi`` (0 white, -1 pink, -2 brown)."""
    power = torch.fft.rfft(x.double()).abs().square()
    freqs = torch.fft.rfftfreq(x.shape[0], d=1.0 / SR).double()
    sel = (freqs >= lo) & (freqs <= hi)
    design = torch.stack([freqs[sel].log(), torch.ones(int(sel.sum()), dtype=torch.float64)], dim=1)
    return float(torch.linalg.lstsq(design, power[sel].log()[:, None]).solution[0, 0])


# --------------------------------------------------------------------------------------------- Table 7


def test_ranges_read_from_table07_equal_the_paper():
    # App. B.2, Table 7 (the medium SNR is printed '[10.20]' in the paper; see the toml's note)
    assert augment.levels() == {
        "low": {"stretch": (0.8, 1.25), "pitch": (-2.0, 2.0), "noise": (20.0, 30.0)},
        "medium": {"stretch": (0.6, 1.67), "pitch": (-4.0, 4.0), "noise": (10.0, 20.0)},
        "high": {"stretch": (0.5, 2.0), "pitch": (-6.0, 6.0), "noise": (0.0, 5.0)},
    }
    assert augment.table07_path().name == "table07.toml"


def test_broken_table07_raises_data_error_naming_the_file(tmp_path, monkeypatch):
    (tmp_path / "table07.toml").write_text('[[rows]]\nid = "time-stretching"\nvalues = { low = [1.0] }\n')
    monkeypatch.setenv("WSVG_TABLES", str(tmp_path))
    with pytest.raises(DataError, match="table07.toml"):
        augment.levels()


def test_unknown_level_or_kind_lists_the_valid_ones():
    with pytest.raises(ValueError, match="low, medium, high"):
        augment.param_range("extreme", "pitch")
    with pytest.raises(ValueError, match="stretch, pitch, noise"):
        augment.param_range("low", "reverb")


def test_draws_are_uniform_within_the_range_and_reproducible():
    draws = [augment.draw_param("medium", "stretch", torch.Generator().manual_seed(s)) for s in range(400)]
    assert all(0.6 <= d <= 1.67 for d in draws)
    assert min(draws) < 0.65 and max(draws) > 1.62
    assert sum(draws) / len(draws) == pytest.approx((0.6 + 1.67) / 2, abs=0.05)
    again = [augment.draw_param("medium", "stretch", torch.Generator().manual_seed(s)) for s in range(400)]
    assert draws == again


# --------------------------------------------------------------------------------------------- stretch


@pytest.mark.parametrize("ratio", [0.5, 0.8, 1.25, 1.67, 2.0])
def test_stretch_changes_length_by_one_over_ratio_and_keeps_the_tone(ratio):
    x = tone(440.0)
    y = augment.time_stretch(x, ratio, SR)
    assert abs(y.shape[0] - x.shape[0] / ratio) <= 1
    assert peak_hz(y) == pytest.approx(440.0, rel=0.02)
    # the tone survives at roughly its level. Not exactly: the standard phase vocoder (torchaudio's, like
    # librosa's) has no phase locking, and the edge frames' phase increments leave a bin-dependent offset that
    # partly cancels the tone's main lobe when slowing down (about -4.5 dB at ratios 0.5 and 0.8).
    mid = y[len(y) // 4 : 3 * len(y) // 4]
    rms = float(mid.square().mean().sqrt())
    assert 0.5 < rms / (0.5 / math.sqrt(2)) < 1.1


def test_stretch_of_batch_and_short_input():
    x = torch.stack([tone(300.0), tone(600.0)])
    y = augment.time_stretch(x, 1.25)
    assert y.shape == (2, 12_800)
    assert augment.time_stretch(torch.randn(100), 2.0).shape == (50,)
    assert torch.equal(augment.time_stretch(x, 1.0), x)
    with pytest.raises(ValueError):
        augment.time_stretch(x, 0.0)


# --------------------------------------------------------------------------------------------- pitch


@pytest.mark.parametrize(("steps", "factor"), [(12, 2.0), (-12, 0.5), (7, 2 ** (7 / 12)), (-3.5, 2 ** (-3.5 / 12))])
def test_pitch_shift_scales_the_tone_frequency_and_keeps_length(steps, factor):
    x = tone(440.0)
    y = augment.pitch_shift(x, steps, SR)
    assert y.shape == x.shape
    assert peak_hz(y) == pytest.approx(440.0 * factor, rel=0.01)


def test_pitch_shift_nominal_rate_is_within_a_few_cents():
    # the nominal-rate route truncates the resampling ratio to 1/1000: at most ~2.5 cents off
    for steps in (0.37, 1.0, 2.0, 4.6, 6.0):
        y = augment.pitch_shift(tone(500.0, seconds=2.0), steps)
        cents = 1200 * math.log2(peak_hz(y) / 500.0) - 100 * steps
        assert abs(cents) < 4.0, (steps, cents)


# --------------------------------------------------------------------------------------------- noise


@pytest.mark.parametrize("snr", [0.0, 5.0, 12.5, 30.0])
def test_add_noise_reaches_the_requested_snr(snr):
    clean = tone(300.0, seconds=2.0)
    noise = torch.randn(5000, generator=torch.Generator().manual_seed(0))  # shorter than the wave: looped
    noisy = augment.add_noise(clean, noise, snr)
    assert noisy.shape == clean.shape
    assert snr_db(clean, noisy) == pytest.approx(snr, abs=0.5)


def test_add_noise_loops_and_crops_the_clip():
    clean = torch.ones(10)
    noise = torch.tensor([1.0, -1.0, 2.0])
    for offset in (0, 2):
        residual = augment.add_noise(clean, noise, 0.0, offset=offset) - clean
        looped = noise[(torch.arange(10) + offset) % 3]
        assert torch.allclose(residual / residual[0], looped / looped[0], atol=1e-5)
    long = torch.randn(50, generator=torch.Generator().manual_seed(3))
    residual = augment.add_noise(clean, long, 10.0) - clean
    assert torch.allclose(residual / residual[0], long[:10] / long[0], atol=1e-5)


def test_add_noise_rejects_silent_noise():
    with pytest.raises(ValueError, match="silent"):
        augment.add_noise(tone(300.0), torch.zeros(100), 10.0)


# --------------------------------------------------------------------------------------------- noise bank


def test_noise_bank_is_deterministic_by_seed():
    a, b, c = augment.NoiseBank.generate(seed=7), augment.NoiseBank.generate(seed=7), augment.NoiseBank.generate(8)
    assert a.categories == b.categories and len(set(a.categories)) >= 5
    assert all(torch.equal(x, y) for x, y in zip(a.clips, b.clips, strict=True))
    assert not any(torch.equal(x, y) for x, y in zip(a.clips, c.clips, strict=True))
    assert all(x.shape == (4 * SR,) and x.dtype == torch.float32 for x in a.clips)
    assert all(float(x.square().mean().sqrt()) == pytest.approx(0.1, rel=1e-3) for x in a.clips)


def test_noise_bank_categories_are_distinct():
    bank = augment.NoiseBank.generate(seed=0, per_category=1)
    clip = dict(zip(bank.categories, bank.clips, strict=True))
    assert spectral_slope(clip["white"]) == pytest.approx(0.0, abs=0.2)
    assert spectral_slope(clip["pink"]) == pytest.approx(-1.0, abs=0.2)
    assert spectral_slope(clip["brown"]) == pytest.approx(-2.0, abs=0.2)
    # hum: almost all power at the mains fundamental and its harmonics (below 500 Hz)
    power = torch.fft.rfft(clip["hum"].double()).abs().square()
    freqs = torch.fft.rfftfreq(clip["hum"].shape[0], d=1.0 / SR)
    assert float(power[freqs < 500].sum() / power.sum()) > 0.95
    assert min(abs(peak_hz(clip["hum"]) - f0) for f0 in (50.0, 60.0)) < 1.0
    # wind is low-passed (< 500 Hz), rain is high-passed (> 500 Hz), babble is voice-band (80 Hz..4 kHz)
    for name, lo, hi in (("wind", 0, 520), ("rain", 480, 8001), ("babble", 70, 4100)):
        p = torch.fft.rfft(clip[name].double()).abs().square()
        assert float(p[(freqs >= lo) & (freqs <= hi)].sum() / p.sum()) > 0.99, name

    # rain is impulsive: heavy-tailed (kurtosis far above a Gaussian's 3); white noise is not
    def kurtosis(x):
        x = x.double() - x.double().mean()
        return float(x.pow(4).mean() / x.square().mean().square())

    assert kurtosis(clip["rain"]) > 6 and kurtosis(clip["white"]) == pytest.approx(3.0, abs=0.2)


def test_noise_bank_from_clips_resamples_and_checks():
    g = torch.Generator().manual_seed(0)
    stereo = torch.randn(2, 44_100, generator=g)
    bank = augment.NoiseBank.from_clips([stereo, torch.randn(44_100, generator=g)], ["rain", "dog"], sample_rate=44_100)
    assert bank.categories == ["rain", "dog"] and bank.sample_rate == SR
    assert [c.shape for c in bank.clips] == [(SR,), (SR,)]
    with pytest.raises(DataError, match=r"esc50\[1\] \(dog\).*silent"):
        augment.NoiseBank.from_clips([torch.randn(100), torch.zeros(100)], ["rain", "dog"], where="esc50")
    with pytest.raises(DataError, match="categories"):
        augment.NoiseBank.from_clips([torch.randn(100)], ["rain", "dog"])



def test_a_file_bank_reads_clips_as_drawn_and_draws_as_the_bank_of_the_same_clips(tmp_path):
    g = torch.Generator().manual_seed(1)
    clips = [torch.randn(n, generator=g) for n in (44_100, 30_000, 5_000)]
    paths = [tmp_path / f"{i}.pt" for i in range(3)]
    reads = []

    def load(path):
        reads.append(path.name)
        return clips[paths.index(path)]

    held = augment.NoiseBank.from_clips(clips, ["a", "b", "c"], sample_rate=44_100)
    files = augment.FileNoiseBank(paths, ["a", "b", "c"], lambda p: augment.torchaudio.functional.resample(
        load(p), 44_100, SR), cached=2)  # fmt: skip
    assert len(files) == 3 and reads == []  # nothing is read until a clip is drawn
    r1, r2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(12):
        (a, i), (b, j) = held.draw(r1), files.draw(r2)
        assert i == j and torch.allclose(a, b, atol=1e-6)
    assert 3 <= len(reads) <= 12  # read again only when it left the two-clip cache
    with pytest.raises(DataError, match=r"2\.pt.*silent"):
        augment.FileNoiseBank(paths, ["a", "b", "c"], lambda p: torch.zeros(100)).clip(2)


# --------------------------------------------------------------------------------------------- augment()


def test_augment_draws_from_the_level_and_is_reproducible():
    bank = augment.NoiseBank.generate(seed=0, seconds=1.0, per_category=1)
    x = tone(440.0)
    for kind in augment.KINDS:
        for level in augment.LEVELS:
            y1 = augment.augment(x, level, kind, torch.Generator().manual_seed(3), bank)
            y2 = augment.augment(x, level, kind, torch.Generator().manual_seed(3), bank)
            assert torch.equal(y1, y2)
            param = augment.draw_param(level, kind, torch.Generator().manual_seed(3))
            lo, hi = augment.param_range(level, kind)
            assert lo <= param <= hi
            if kind == "stretch":
                assert abs(y1.shape[0] - x.shape[0] / param) <= 1
            else:
                assert y1.shape == x.shape
            if kind == "noise":
                assert snr_db(x, y1) == pytest.approx(param, abs=0.5)
            if kind == "pitch":
                assert peak_hz(y1) == pytest.approx(440.0 * 2 ** (param / 12), rel=0.01)


def test_augment_noise_needs_a_bank():
    with pytest.raises(ValueError, match="NoiseBank"):
        augment.augment(tone(440.0), "low", "noise", torch.Generator().manual_seed(0))
