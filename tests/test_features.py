"""The speech front-ends: log-mel (App. B.2's 25 ms / 20 ms / 80 bands) and the 4 kHz standardised wave."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio

from bench.data import features
from bench.data.errors import DataError

SR = 16_000


def tone(freq: float, seconds: float = 1.0, sr: int = SR, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


@pytest.mark.parametrize("n", [1, 199, 200, 320, 321, 16_000, 16_001, 47_999])
def test_frame_count_formula_matches_output(n):
    out = features.log_mel(torch.randn(n, generator=torch.Generator().manual_seed(n)))
    assert out.shape == (features.frames_for(n), 80)
    assert features.frames_for(n) == n // 320 + 1


def test_frames_for_works_on_tensors():
    n = torch.tensor([1, 320, 16_000])
    assert features.frames_for(n).tolist() == [1, 2, 51]
    assert features.wave_len_for(n).tolist() == [1, 80, 4000]


def expected_band(freq: float) -> int:
    """The mel band whose triangle weighs the FFT bin nearest ``freq`` most, from torchaudio's own filter bank."""
    fb = torchaudio.functional.melscale_fbanks(
        n_freqs=features.N_FFT // 2 + 1, f_min=0.0, f_max=SR / 2, n_mels=80, sample_rate=SR, norm=None, mel_scale="htk"
    )
    bin_ = round(freq / (SR / features.N_FFT))
    return int(fb[bin_].argmax())


@pytest.mark.parametrize("freq", [200.0, 440.0, 1000.0, 2500.0, 6000.0])
def test_pure_tone_peaks_in_its_mel_band(freq):
    mel = features.log_mel(tone(freq))
    middle = mel[5:-5]  # away from the zero-padded edges
    peak_bands = middle.argmax(dim=1)
    assert torch.all(peak_bands == expected_band(freq)), (freq, peak_bands.unique().tolist(), expected_band(freq))


def test_front_end_matches_the_paper_parameters():
    fb = features.mel_fbanks()
    assert fb.shape == (201, 80)  # n_fft 400 -> 201 bins, 80 bands
    transform = features._mel_transform("cpu", torch.float32)
    assert (transform.win_length, transform.hop_length, transform.n_fft) == (400, 320, 400)
    window = transform.spectrogram.window
    assert torch.allclose(window, torch.hamming_window(400))


def test_silence_gives_the_floor():
    out = features.log_mel(torch.zeros(SR))
    assert torch.all(out == torch.tensor(features.MEL_FLOOR).log())
    assert math.isclose(float(out[0, 0]), math.log(1e-6), rel_tol=1e-6)


def test_full_scale_tone_is_about_100_db_above_the_floor():
    peak = features.log_mel(tone(1000.0, amp=1.0))[5:-5].max(dim=1).values
    db_above_floor = 10 * (peak - math.log(features.MEL_FLOOR)) / math.log(10)
    assert torch.all((db_above_floor > 95) & (db_above_floor < 105))


def test_batch_rows_equal_single_utterances():
    a, b = tone(300.0, 0.5), tone(700.0, 0.5)
    batch = features.log_mel(torch.stack([a, b]))
    assert batch.shape == (2, features.frames_for(a.shape[0]), 80)
    assert torch.allclose(batch[0], features.log_mel(a), atol=1e-4)
    assert torch.allclose(batch[1], features.log_mel(b), atol=1e-4)


def test_wrong_sample_rate_raises_data_error_telling_to_resample():
    with pytest.raises(DataError, match="resample") as info:
        features.log_mel(torch.randn(8000), sample_rate=8000, where="clip.wav")
    assert info.value.where == "clip.wav"
    assert "8000" in info.value.problem
    with pytest.raises(DataError, match="resample"):
        features.wave_input(torch.randn(8000), sample_rate=8000)


@pytest.mark.parametrize("bad", [torch.zeros(0), torch.zeros(2, 3, 4), torch.tensor([0.0, float("nan")])])
def test_bad_waves_raise_data_error(bad):
    with pytest.raises(DataError):
        features.log_mel(bad)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 16_000, 16_003, 60_001])
def test_wave_length_formula_matches_output(n):
    out = features.wave_input(torch.randn(n, generator=torch.Generator().manual_seed(n)))
    assert out.shape == (features.wave_len_for(n),)
    assert features.wave_len_for(n) == math.ceil(n / 4)


def test_wave_is_standardised():
    x = features.wave_input(3.0 + 0.2 * torch.randn(SR, generator=torch.Generator().manual_seed(0)))
    assert abs(float(x.mean())) < 1e-5
    assert abs(float(x.std(correction=0)) - 1.0) < 1e-4


def test_resampling_is_anti_aliased_unlike_naive_decimation():
    # A 3 kHz tone is above the 2 kHz Nyquist of 4 kHz. [::4] folds it onto 1 kHz at full power;
    # the windowed-sinc resampler removes it. A 500 Hz tone passes unchanged.
    high, low = tone(3000.0), tone(500.0)
    naive_power = high[::4].square().mean()
    ours = torchaudio.functional.resample(high, SR, 4000)  # the filter wave_input applies, before standardising
    assert float(naive_power) == pytest.approx(0.125, rel=0.01)  # 0.5 ** 2 / 2: aliased at full power
    assert float(ours[50:-50].square().mean()) < 1e-4 * float(naive_power)  # >= 40 dB down
    passed = torchaudio.functional.resample(low, SR, 4000)
    assert float(passed[50:-50].square().mean()) == pytest.approx(0.125, rel=0.02)
    spectrum = torch.fft.rfft(features.wave_input(low)).abs()
    assert float(spectrum.argmax()) * 4000 / features.wave_len_for(SR) == pytest.approx(500.0, abs=2)


def test_wave_batch_standardises_over_real_samples_only():
    g = torch.Generator().manual_seed(1)
    a = 0.3 * torch.randn(8000, generator=g) + 0.1
    b = 0.05 * torch.randn(5001, generator=g) - 0.2
    batch = torch.zeros(2, 8000)
    batch[0], batch[1, :5001] = a, b
    batch[1, 5001:] = 7.0  # junk in the padding must not matter
    lengths = torch.tensor([8000, 5001])
    out = features.wave_input(batch, lengths=lengths)
    n_b = features.wave_len_for(5001)
    assert out.shape == (2, features.wave_len_for(8000))
    assert torch.allclose(out[0], features.wave_input(a), atol=1e-4)
    assert torch.allclose(out[1, :n_b], features.wave_input(b), atol=1e-4)  # the junk is zeroed before filtering
    real = out[1, :n_b]
    assert abs(float(real.mean())) < 1e-3 and abs(float(real.std(correction=0)) - 1) < 1e-2
    assert torch.all(out[1, n_b:] == 0)


def test_wave_batch_with_zero_padding_equals_single_utterance():
    g = torch.Generator().manual_seed(2)
    b = torch.randn(5001, generator=g)
    batch = torch.zeros(2, 8000)
    batch[0], batch[1, :5001] = torch.randn(8000, generator=g), b
    out = features.wave_input(batch, lengths=torch.tensor([8000, 5001]))
    n_b = features.wave_len_for(5001)
    assert torch.allclose(out[1, :n_b], features.wave_input(b), atol=1e-4)


def test_standardize_silence_is_zero_not_nan():
    assert torch.all(features.wave_input(torch.zeros(1000)) == 0)
    x = torch.zeros(2, 10, 3)
    x[0, :4] = 5.0
    out = features.standardize(x, torch.tensor([4, 10]))
    assert torch.isfinite(out).all() and torch.all(out == 0)


def test_standardize_batch_rows_equal_their_real_parts_alone():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 12, 5, generator=g) * 3 + 1
    lengths = torch.tensor([12, 7, 1])
    out = features.standardize(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert torch.allclose(out[b, :n], features.standardize(x[b, :n]), atol=1e-5)
        assert torch.all(out[b, n:] == 0)
