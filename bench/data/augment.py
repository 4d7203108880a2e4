"""Speech augmentation for the robustness analysis: Table 7 of the paper (App. B.2, Figure 4, §4.4).

"Time stretching means the change of speed/duration of speech wave data without changing pitch. Pitch
shifting means the step change of speech pitch without changing speed and duration. Noise addition means
adding the noise from ESC-50 to original speech at the same sampling rate."

The level ranges are read from ``tables/table07.toml`` (one source of truth; :func:`levels`). For each kind,
:func:`augment` draws the parameter uniformly (continuous) from the level's ``[min, max]`` with the caller's
``torch.Generator``.

Conventions:

- **Stretch ratio** is a *speed* factor, as ``librosa.effects.time_stretch(rate=...)``,
  ``torchaudio.transforms.TimeStretch`` and audiomentations' ``TimeStretch(min_rate, max_rate)`` (whose
  default range, [0.8, 1.25], is exactly Table 7's "low"): ``ratio > 1`` is faster and shorter, the new
  length is ``round(T / ratio)``. The paper says only "ratio"; its ranges are symmetric under ``r -> 1/r``
  ([0.8, 1.25], [0.6, 1.67], [0.5, 2.0]), so the other reading gives the same set of ratios, but a uniform
  draw over ``[0.5, 2.0]`` is not symmetric: more draws speed speech up than slow it down.
- **Pitch steps** are semitones (12 per octave), fractional allowed.
- **SNR** is in dB, measured over the whole utterance (signal energy / scaled noise energy).

:class:`NoiseBank` holds the noise clips. With no ESC-50 on disk, :meth:`NoiseBank.generate` builds a
deterministic synthetic bank (seven categories: white, pink, brown, hum, babble, rain, wind), a stand-in
that is *not* ESC-50; :meth:`NoiseBank.from_clips` fills it with real clips (resampled to 16 kHz), and
:class:`FileNoiseBank` reads them from their files as they are drawn (ESC-50's 2,000: :func:`bench.data.esc50.bank`).
"""

from __future__ import annotations

import functools
import math
import os
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torchaudio
from torch import Tensor

from bench.data.errors import DataError

SAMPLE_RATE = 16_000
KINDS = ("stretch", "pitch", "noise")
LEVELS = ("low", "medium", "high")
_ROW_IDS = {"stretch": "time-stretching", "pitch": "pitch-shifting", "noise": "noise-addition"}

STRETCH_N_FFT = 512
"""Phase-vocoder STFT size for :func:`time_stretch` (32 ms at 16 kHz, Hann window), hop ``STRETCH_N_FFT // 4``."""
_PITCH_NOMINAL_RATE = 1000
"""See :func:`pitch_shift`: the nominal sample rate handed to ``torchaudio.functional.pitch_shift``."""


def table07_path() -> Path:
    """``tables/table07.toml`` (or ``$WSVG_TABLES/table07.toml``, as :mod:`bench.tables` resolves it)."""
    root = Path(os.environ.get("WSVG_TABLES", Path(__file__).resolve().parents[2] / "tables"))
    return root / "table07.toml"


@functools.lru_cache(maxsize=4)
def _levels_from(path: Path) -> dict[str, dict[str, tuple[float, float]]]:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise DataError(path, "the augmentation table is missing", "restore tables/table07.toml from git") from None
    except tomllib.TOMLDecodeError as err:
        raise DataError(path, f"not valid TOML ({err})", "restore tables/table07.toml from git") from None
    rows = {r.get("id"): r for r in raw.get("rows", [])}
    out: dict[str, dict[str, tuple[float, float]]] = {level: {} for level in LEVELS}
    for kind, row_id in _ROW_IDS.items():
        if row_id not in rows:
            raise DataError(f"{path} [rows] id={row_id!r}", "row missing", "restore tables/table07.toml from git")
        values = rows[row_id].get("values", {})
        for level in LEVELS:
            cell = values.get(level)
            if not (isinstance(cell, list) and len(cell) == 2 and float(cell[0]) <= float(cell[1])):
                raise DataError(
                    f"{path} [rows] id={row_id!r} values.{level}",
                    f"expected a range [min, max], got {cell!r}",
                    "restore tables/table07.toml from git",
                )
            out[level][kind] = (float(cell[0]), float(cell[1]))
    return out


def levels() -> dict[str, dict[str, tuple[float, float]]]:
    """Table 7 as ``{level: {kind: (min, max)}}``, levels low/medium/high, kinds stretch/pitch/noise."""
    return _levels_from(table07_path())


def param_range(level: str, kind: str) -> tuple[float, float]:
    """The ``(min, max)`` of one cell of Table 7; unknown names raise ``ValueError`` listing the valid ones."""
    if level not in LEVELS:
        raise ValueError(f"unknown augmentation level {level!r}; choose one of {', '.join(LEVELS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown augmentation kind {kind!r}; choose one of {', '.join(KINDS)}")
    return levels()[level][kind]


def time_stretch(wave: Tensor, ratio: float, sr: int = SAMPLE_RATE) -> Tensor:
    """Change the duration without changing the pitch: a phase vocoder, ``ratio`` = speed (> 1 = shorter).

    ``torchaudio.transforms.Spectrogram(power=None)`` -> ``TimeStretch`` -> ``InverseSpectrogram``, Hann
    window of :data:`STRETCH_N_FFT` samples, hop a quarter of it. ``wave`` is ``[..., T]``; the result is
    ``[..., round(T / ratio)]``. ``sr`` does not enter the computation (the vocoder works in samples); it is
    accepted for a uniform signature.
    """
    del sr
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"time-stretch ratio must be a positive number, got {ratio}")
    length = wave.shape[-1]
    out_len = max(1, round(length / ratio))
    if ratio == 1.0:
        return wave.clone()
    hop = STRETCH_N_FFT // 4
    spec = torchaudio.transforms.Spectrogram(n_fft=STRETCH_N_FFT, hop_length=hop, power=None).to(wave.device)
    stretch = torchaudio.transforms.TimeStretch(hop_length=hop, n_freq=STRETCH_N_FFT // 2 + 1).to(wave.device)
    inverse = torchaudio.transforms.InverseSpectrogram(n_fft=STRETCH_N_FFT, hop_length=hop).to(wave.device)
    padded = torch.nn.functional.pad(wave, (0, max(0, STRETCH_N_FFT // 2 + 1 - length)))  # reflect pad needs T > n/2
    return inverse(stretch(spec(padded), ratio), length=out_len)


def pitch_shift(wave: Tensor, steps: float, sr: int = SAMPLE_RATE) -> Tensor:
    """Shift the pitch by ``steps`` semitones keeping the duration: ``torchaudio.functional.pitch_shift``.

    torchaudio stretches by ``rate = 2 ** (-steps / 12)`` and then resamples ``int(sr / rate) -> sr``. Its
    resampler builds a ``new x (orig + 2 width)`` kernel after reducing the two rates by their gcd, and for
    almost every step value at 16 kHz the two are co-prime (2 steps: 17959 -> 16000), which costs a 1.1 GB
    kernel and ~12 s per 5 s of speech. The sample rate enters ``pitch_shift`` nowhere else (its STFT sizes
    are in samples), so we pass a nominal rate of 1000: the resampling ratio is then truncated to 1/1000,
    a pitch error of at most 2.5 cents (exact for whole octaves), and the call takes ~0.2 s.
    ``wave`` is ``[..., T]``; the result has the same shape. ``sr`` is accepted for a uniform signature.
    """
    del sr
    if not math.isfinite(steps):
        raise ValueError(f"pitch-shift steps must be finite, got {steps}")
    if steps == 0:
        return wave.clone()
    length = wave.shape[-1]
    padded = torch.nn.functional.pad(wave, (0, max(0, 257 - length)))  # the STFT's reflect pad needs T > 256
    return torchaudio.functional.pitch_shift(padded, _PITCH_NOMINAL_RATE, steps)[..., :length]


def _fit_length(noise: Tensor, length: int, offset: int = 0) -> Tensor:
    """Loop (tile) or crop ``noise`` ``[N]`` to ``length`` samples, starting ``offset`` samples in."""
    n = noise.shape[-1]
    idx = (torch.arange(length, device=noise.device) + offset) % n
    return noise[..., idx]


def add_noise(wave: Tensor, noise: Tensor, snr_db: float, offset: int = 0) -> Tensor:
    """Add ``noise`` scaled so that the utterance's SNR is ``snr_db`` dB: ``torchaudio.functional.add_noise``.

    ``wave`` is ``[T]`` or ``[B, T]``; ``noise`` is ``[N]`` (looped or cropped to ``T``, starting ``offset``
    samples in) or already the shape of ``wave``. The SNR is the ratio of the whole signal's energy to the
    scaled noise's energy. A silent noise clip raises ``ValueError`` (no scale reaches a finite SNR).
    """
    if not math.isfinite(snr_db):
        raise ValueError(f"SNR must be finite, got {snr_db}")
    if noise.shape != wave.shape:
        if noise.dim() != 1:
            raise ValueError(
                f"noise must be [N] or the shape of the wave {tuple(wave.shape)}, got {tuple(noise.shape)}"
            )
        noise = _fit_length(noise.to(wave.device, wave.dtype), wave.shape[-1], offset).expand_as(wave)
    if not bool((noise.square().sum(-1) > 0).all()):
        raise ValueError("the noise clip is silent over the wave's length; pick another clip")
    snr = torch.full(wave.shape[:-1], float(snr_db), dtype=wave.dtype, device=wave.device)
    return torchaudio.functional.add_noise(wave, noise.contiguous(), snr)


# ---------------------------------------------------------------------------------------------- noise bank

GENERATED_CATEGORIES = ("white", "pink", "brown", "hum", "babble", "rain", "wind")


def _shaped_noise(n: int, exponent: float, g: torch.Generator, sr: int) -> Tensor:
    """Gaussian noise whose power spectrum falls as ``1 / f ** exponent`` (0 white, 1 pink, 2 brown)."""
    spec = torch.fft.rfft(torch.randn(n, generator=g))
    freqs = torch.fft.rfftfreq(n, d=1.0 / sr)
    gain = torch.ones_like(freqs)
    gain[1:] = (freqs[1:] / freqs[1]) ** (-exponent / 2)
    gain[0] = 0.0
    return torch.fft.irfft(spec * gain, n=n)


def _bandpass(x: Tensor, lo: float, hi: float, sr: int) -> Tensor:
    spec = torch.fft.rfft(x)
    freqs = torch.fft.rfftfreq(x.shape[-1], d=1.0 / sr)
    return torch.fft.irfft(spec * ((freqs >= lo) & (freqs <= hi)), n=x.shape[-1])


def _generate(category: str, n: int, g: torch.Generator, sr: int) -> Tensor:
    t = torch.arange(n, dtype=torch.float64) / sr
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    if category == "white":
        return torch.randn(n, generator=g, dtype=torch.float64)
    if category == "pink":
        return _shaped_noise(n, 1.0, g, sr).double()
    if category == "brown":
        return _shaped_noise(n, 2.0, g, sr).double()
    if category == "hum":  # mains hum: 50 or 60 Hz and its harmonics with falling amplitudes, plus a little hiss
        f0 = 50.0 if float(rand(())) < 0.5 else 60.0
        x = sum((0.7**k) * torch.sin(2 * math.pi * f0 * k * t + 2 * math.pi * rand(())) for k in range(1, 9))
        return x + 0.01 * torch.randn(n, generator=g, dtype=torch.float64)
    if category == "babble":  # many voices: harmonic tones with gliding pitch under syllable-rate envelopes
        x = torch.zeros(n, dtype=torch.float64)
        for _ in range(12):
            f0 = 90 + 160 * rand(())
            glide = 1 + 0.15 * torch.sin(2 * math.pi * (0.5 + rand(())) * t + 2 * math.pi * rand(()))
            phase = 2 * math.pi * torch.cumsum(f0 * glide, 0) / sr
            voice = sum(torch.sin(k * phase) / k for k in range(1, 12))
            env = (torch.sin(2 * math.pi * (3 + 3 * rand(())) * t + 2 * math.pi * rand(())).clamp_min(0)) ** 2
            x += voice * env
        return _bandpass(x, 80, 4000, sr)
    if category == "rain":  # Poisson clicks, each a decaying burst of noise
        count = max(1, int(n / sr * 400))
        impulses = torch.zeros(n, dtype=torch.float64)
        where = torch.randint(0, n, (count,), generator=g)
        impulses.index_add_(0, where, rand(count) ** 2 * torch.sign(rand(count) - 0.5))
        k = torch.arange(int(0.004 * sr), dtype=torch.float64)
        burst = torch.exp(-k / (0.0008 * sr)) * torch.randn(k.shape[0], generator=g, dtype=torch.float64)
        x = torch.fft.irfft(torch.fft.rfft(impulses, n=n + k.shape[0]) * torch.fft.rfft(burst, n=n + k.shape[0]))
        return _bandpass(x[:n], 500, 8000, sr)
    if category == "wind":  # low-passed noise under a slow gusting envelope
        gust = 1.2 + torch.sin(2 * math.pi * 0.3 * t + 2 * math.pi * rand(())) + 0.5 * torch.sin(2 * math.pi * 0.11 * t)
        return _bandpass(torch.randn(n, generator=g, dtype=torch.float64), 20, 500, sr) * gust
    raise ValueError(f"unknown generated noise category {category!r}; choose from {', '.join(GENERATED_CATEGORIES)}")


class NoiseBank:
    """Noise clips at 16 kHz with a category each, for :func:`add_noise` / :func:`augment`.

    Clips are 1-D float32 tensors normalised to RMS 0.1 (the SNR sets the level anyway).
    """

    def __init__(self, clips: Sequence[Tensor], categories: Sequence[str], sample_rate: int = SAMPLE_RATE) -> None:
        if len(clips) != len(categories) or not clips:
            raise ValueError(f"need one category per clip and at least one clip, got {len(clips)} / {len(categories)}")
        self.sample_rate = sample_rate
        self.clips = list(clips)
        self.categories = list(categories)

    def __len__(self) -> int:
        return len(self.clips)

    def __repr__(self) -> str:
        return f"NoiseBank({len(self)} clips, categories={sorted(set(self.categories))})"

    @classmethod
    def generate(
        cls,
        seed: int = 0,
        seconds: float = 4.0,
        per_category: int = 2,
        categories: Sequence[str] = GENERATED_CATEGORIES,
    ) -> NoiseBank:
        """A synthetic stand-in for ESC-50, deterministic from ``seed``: ``per_category`` clips of each category."""
        g = torch.Generator().manual_seed(seed)
        n = int(round(seconds * SAMPLE_RATE))
        clips, cats = [], []
        for category in categories:
            for _ in range(per_category):
                x = _generate(category, n, g, SAMPLE_RATE)
                x = x - x.mean()
                clips.append((0.1 * x / x.square().mean().sqrt().clamp_min(1e-12)).float())
                cats.append(category)
        return cls(clips, cats)

    @classmethod
    def from_clips(
        cls, clips: Sequence[Tensor], categories: Sequence[str], sample_rate: int = SAMPLE_RATE, where: str = "clips"
    ) -> NoiseBank:
        """Real clips (e.g. ESC-50's 5 s, 44.1 kHz WAVs): checked, made mono, resampled to 16 kHz, normalised.

        A clip that is empty, not finite, or silent raises :class:`DataError` naming ``where`` and its index.
        """
        if len(clips) != len(categories):
            raise DataError(where, f"{len(clips)} clips but {len(categories)} categories", "pass one category per clip")
        if not clips:
            raise DataError(where, "no noise clips", "point the reader at a folder with noise clips")
        out = [normalise_clip(clip, sample_rate, f"{where}[{i}] ({category})")
               for i, (clip, category) in enumerate(zip(clips, categories, strict=True))]  # fmt: skip
        return cls(out, list(categories))

    def clip(self, i: int) -> Tensor:
        return self.clips[i]

    def draw(self, rng: torch.Generator) -> tuple[Tensor, int]:
        """A clip chosen uniformly with ``rng`` and a random start offset within it (for looping/cropping)."""
        i = int(torch.randint(len(self), (), generator=rng))
        clip = self.clip(i)
        offset = int(torch.randint(clip.shape[-1], (), generator=rng))
        return clip, offset


class FileNoiseBank(NoiseBank):
    """Noise clips read from their files when drawn, normalised as :meth:`NoiseBank.from_clips` does.

    ESC-50's 2,000 five-second clips are about 640 MB at 16 kHz, so they are not all held at once: the last
    ``cached`` clips read are kept. ``load(path)`` returns a mono clip at 16 kHz (:func:`bench.data.esc50.load_noise`).
    Draws are those of a :class:`NoiseBank` of the same clips in the same order.
    """

    def __init__(self, paths: Sequence[Path], categories: Sequence[str], load: Callable[[Path], Tensor],
                 cached: int = 64) -> None:  # fmt: skip
        if len(paths) != len(categories) or not paths:
            raise ValueError(f"need one category per clip and at least one clip, got {len(paths)} / {len(categories)}")
        self.sample_rate = SAMPLE_RATE
        self.paths = list(paths)
        self.categories = list(categories)
        self._read = functools.lru_cache(maxsize=cached)(lambda i: normalise_clip(load(self.paths[i]), SAMPLE_RATE,
                                                                                  str(self.paths[i])))  # fmt: skip

    def __len__(self) -> int:
        return len(self.paths)

    def clip(self, i: int) -> Tensor:
        return self._read(i)


def normalise_clip(clip: Tensor, sample_rate: int, where: str) -> Tensor:
    """A noise clip checked, made mono, resampled to 16 kHz, mean removed and scaled to RMS 0.1.

    A clip that is empty, not finite, or silent raises :class:`DataError` naming ``where``.
    """
    x = torch.as_tensor(clip).float()
    if x.dim() == 2:
        x = x.mean(dim=0) if x.shape[0] <= x.shape[1] else x.mean(dim=1)  # channels first or last
    if x.dim() != 1 or x.numel() == 0:
        raise DataError(where, f"expected a mono clip [T], got shape {tuple(x.shape)}", "pass [T] or [C, T]")
    if not bool(torch.isfinite(x).all()):
        raise DataError(where, "clip has NaN or infinite samples", "re-decode or drop the file")
    if sample_rate != SAMPLE_RATE:
        x = torchaudio.functional.resample(x, sample_rate, SAMPLE_RATE)
    x = x - x.mean()
    rms = x.square().mean().sqrt()
    if float(rms) < 1e-7:
        raise DataError(where, "clip is silent", "drop the file from the noise bank")
    return 0.1 * x / rms


def draw_param(level: str, kind: str, rng: torch.Generator) -> float:
    """A parameter drawn uniformly from Table 7's ``[min, max]`` for ``level`` and ``kind`` with ``rng``."""
    lo, hi = param_range(level, kind)
    return lo + (hi - lo) * float(torch.rand((), generator=rng, dtype=torch.float64))


def augment(
    wave: Tensor,
    level: str,
    kind: str,
    rng: torch.Generator,
    noise_bank: NoiseBank | None = None,
    sr: int = SAMPLE_RATE,
) -> Tensor:
    """Augment one 16 kHz utterance ``[T]`` with ``kind`` at ``level``, drawing everything random from ``rng``.

    ``stretch`` changes the length to ``round(T / ratio)``; ``pitch`` and ``noise`` keep it. ``noise`` needs a
    :class:`NoiseBank` (the clip and its start offset are drawn from ``rng`` too).
    """
    param = draw_param(level, kind, rng)
    if kind == "stretch":
        return time_stretch(wave, param, sr)
    if kind == "pitch":
        return pitch_shift(wave, param, sr)
    if noise_bank is None:
        raise ValueError("noise augmentation needs a NoiseBank (NoiseBank.generate() or an ESC-50 reader's clips)")
    if noise_bank.sample_rate != sr:
        raise ValueError(f"the noise bank is at {noise_bank.sample_rate} Hz but the wave at {sr} Hz")
    clip, offset = noise_bank.draw(rng)
    return add_noise(wave, clip, param, offset=offset)
