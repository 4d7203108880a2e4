"""Speech features: the log-mel spectrogram (frequency-based) and the 4 kHz wave (time-based), App. B.2.

The paper (§4.2, App. B.2): "we adopt the raw wave as time-based feature and use Fourier Transform to
obtain 80-dimensional log-mel spectrograms as frequence-based feature ... we downsample the speech
sequence to 1/4 of its original length. For log-mel spectrograms, we adopt a 16 kHz sampling rate, a
25 ms Hamming window, a 20 ms window stride, and 80 mel filter bands."

Both front-ends take 16 kHz input and are built from torchaudio, not hand-written DSP:

- :func:`log_mel`: ``torchaudio.transforms.MelSpectrogram`` with n_fft = win_length = 400 (25 ms),
  a Hamming window, hop 320 (20 ms), 80 HTK mel bands over 0-8 kHz, power spectrum, centred frames
  (zero-padded by n_fft/2 on each side, so any length >= 1 works), then ``log(max(mel, MEL_FLOOR))``.
  :func:`frames_for` gives the exact frame count, ``num_samples // 320 + 1``.
- :func:`wave_input`: ``torchaudio.functional.resample`` to 4 kHz (a windowed-sinc low-pass at 0.99 x the
  new Nyquist, 2 kHz), then per-utterance standardisation over the real samples. This departs from the
  original SIL code, which decimates with ``wav[::4]`` and no anti-alias filter (so everything between
  2 and 8 kHz folds onto 0-2 kHz); we follow the paper's words instead. :func:`wave_len_for` gives the
  exact length, ``ceil(num_samples / 4)``.

A wrong sample rate raises :class:`DataError` telling the caller to resample: both front-ends' constants
are defined at 16 kHz and silently accepting 8 kHz or 44.1 kHz input would give features on a different
time and frequency scale.

Neither function caps the length (the original caps at 512 mel frames and 60000 wave samples); capping is a
loader/config decision.
"""

from __future__ import annotations

import functools

import torch
import torchaudio
from torch import Tensor

from bench.data.errors import DataError

SAMPLE_RATE = 16_000
"""The input rate of both front-ends (App. B.2)."""
N_FFT = 400
"""25 ms at 16 kHz: the FFT size and the Hamming window length."""
HOP = 320
"""20 ms at 16 kHz: the frame stride."""
N_MELS = 80
MEL_FLOOR = 1e-6
"""Floor on the mel power before the log, so silence gives ``log(1e-6) = -13.8155`` instead of ``-inf``.

For a full-scale sine (amplitude 1) a mel band holds about ``(sum(hamming(400)) / 2) ** 2 ~ 1.2e4``, so the
floor sits about 100 dB below it: roughly the level of 16-bit quantisation noise, below anything audible in a
recording."""
WAVE_RATE = 4_000
"""The time-domain input's rate: 1/4 of 16 kHz ("downsample the speech sequence to 1/4")."""
STD_EPS = 1e-5
"""Standard deviations below this are clamped to it, so a silent utterance standardises to zeros, not NaN."""


def frames_for(num_samples: int | Tensor) -> int | Tensor:
    """Number of log-mel frames :func:`log_mel` gives for ``num_samples`` samples at 16 kHz (int or tensor)."""
    return num_samples // HOP + 1


def wave_len_for(num_samples: int | Tensor) -> int | Tensor:
    """Number of 4 kHz samples :func:`wave_input` gives for ``num_samples`` samples at 16 kHz: ceil(n / 4)."""
    factor = SAMPLE_RATE // WAVE_RATE
    return (num_samples + factor - 1) // factor


def _check(wave: Tensor, sample_rate: int, where: str, what: str) -> Tensor:
    if sample_rate != SAMPLE_RATE:
        raise DataError(
            where,
            f"{what} needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz",
            f"resample first, e.g. torchaudio.functional.resample(wave, {sample_rate}, {SAMPLE_RATE})",
        )
    if not isinstance(wave, Tensor):
        raise DataError(where, f"{what} needs a torch.Tensor, got {type(wave).__name__}", "pass torch.as_tensor(x)")
    if wave.dim() not in (1, 2) or wave.shape[-1] == 0:
        raise DataError(
            where,
            f"{what} needs a non-empty wave of shape [T] or [B, T], got {tuple(wave.shape)}",
            "pass a mono signal (average the channels of a stereo file) with at least one sample",
        )
    if not wave.is_floating_point():
        wave = wave.float()
    if not bool(torch.isfinite(wave).all()):
        raise DataError(where, f"{what} input has NaN or infinite samples", "check the audio file; re-decode it")
    return wave


@functools.lru_cache(maxsize=8)
def _mel_transform(device: str, dtype: torch.dtype) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=SAMPLE_RATE,
        n_fft=N_FFT,
        win_length=N_FFT,
        hop_length=HOP,
        f_min=0.0,
        f_max=SAMPLE_RATE / 2,
        n_mels=N_MELS,
        window_fn=torch.hamming_window,
        power=2.0,
        center=True,
        pad_mode="constant",
        mel_scale="htk",
        norm=None,
    ).to(device=device, dtype=dtype)


def mel_fbanks() -> Tensor:
    """The filter bank :func:`log_mel` applies, ``[N_FFT // 2 + 1, N_MELS]`` (frequency bin x mel band)."""
    return _mel_transform("cpu", torch.float32).mel_scale.fb.clone()


def log_mel(wave: Tensor, sample_rate: int = SAMPLE_RATE, where: str = "wave") -> Tensor:
    """The paper's 80-band log-mel spectrogram of a 16 kHz wave.

    Args:
        wave: ``[T]`` or ``[B, T]`` (a padded batch: frames past ``frames_for(length)`` are padding).
        sample_rate: must be 16000; anything else raises :class:`DataError`.
        where: what to name in an error (the file the wave came from).

    Returns:
        ``[frames, 80]`` (or ``[B, frames, 80]``), ``frames = frames_for(T)``; natural log of the mel power
        floored at :data:`MEL_FLOOR`. No per-utterance normalisation is applied here.
    """
    wave = _check(wave, sample_rate, where, "log_mel")
    mel = _mel_transform(str(wave.device), wave.dtype)(wave)  # [..., 80, frames]
    return mel.clamp_min(MEL_FLOOR).log().transpose(-1, -2).contiguous()


def standardize(x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Zero mean, unit (population) std per row over the first ``lengths[b]`` entries of dim 1; padding is zeroed.

    ``x`` is ``[T, ...]`` (one utterance, all real) or ``[B, T, ...]`` with ``lengths`` ``[B]``. The statistics
    are over every value of the real part (for a mel, all frames x bands, as in the original code).
    """
    if lengths is None:
        mean = x.mean()
        std = x.std(correction=0).clamp_min(STD_EPS)
        return (x - mean) / std
    lengths = lengths.to(x.device)
    shape = (-1,) + (1,) * (x.dim() - 1)
    dims = tuple(range(1, x.dim()))
    steps = torch.arange(x.shape[1], device=x.device)
    mask = (steps[None, :] < lengths[:, None]).to(x.dtype).reshape(x.shape[:2] + (1,) * (x.dim() - 2))
    count = (lengths * x[0, 0].numel()).clamp_min(1).to(x.dtype)
    mean = (x * mask).sum(dim=dims) / count
    centred = (x - mean.reshape(shape)) * mask
    std = (centred.square().sum(dim=dims) / count).sqrt().clamp_min(STD_EPS)
    return centred / std.reshape(shape)


def wave_input(
    wave: Tensor, sample_rate: int = SAMPLE_RATE, lengths: Tensor | None = None, where: str = "wave"
) -> Tensor:
    """The time-domain input as the model consumes it: 16 kHz -> 4 kHz, standardised per utterance.

    The paper says only "downsample the speech sequence to 1/4 of its original length"; the original code
    does ``wav[::4]`` with no anti-alias filter. Here the downsampling is done properly with
    ``torchaudio.functional.resample(wave, 16000, 4000)`` (windowed-sinc low-pass, Hann window, width 6,
    roll-off 0.99): a departure from the code, following the paper. The result is then standardised to zero
    mean and unit population std over the utterance's real samples only (padding is zeroed before
    resampling, does not enter the statistics, and is zero in the output).

    Args:
        wave: ``[T]`` or a padded batch ``[B, T]``.
        sample_rate: must be 16000; anything else raises :class:`DataError`.
        lengths: ``[B]`` real lengths in 16 kHz samples for a batch; ``None`` means every sample is real.
        where: what to name in an error.

    Returns:
        ``[wave_len_for(T)]`` or ``[B, wave_len_for(T)]``; row ``b`` has ``wave_len_for(lengths[b])`` real
        samples. Because the resampler zero-pads its input, a padded row's real part equals what the unpadded
        utterance gives alone.
    """
    wave = _check(wave, sample_rate, where, "wave_input")
    if wave.dim() == 1:
        return standardize(torchaudio.functional.resample(wave, SAMPLE_RATE, WAVE_RATE))
    if lengths is None:
        lengths = torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long)
    lengths = torch.as_tensor(lengths, device=wave.device)
    if lengths.shape != (wave.shape[0],) or int(lengths.max()) > wave.shape[1] or int(lengths.min()) < 1:
        raise DataError(
            where,
            f"lengths {tuple(lengths.shape)} do not fit the batch {tuple(wave.shape)} (each in 1..{wave.shape[1]})",
            "pass the real length of each row in 16 kHz samples",
        )
    real = torch.arange(wave.shape[1], device=wave.device)[None, :] < lengths[:, None]
    low = torchaudio.functional.resample(wave * real, SAMPLE_RATE, WAVE_RATE)  # padding zeroed first
    return standardize(low, wave_len_for(lengths))
