"""Real synthesized speech from espeak-ng, through the ``espeakng-loader`` wheel and a small ctypes binding.

The suite builds its own spoken-grounding benchmark offline, so the spoken queries are synthesized here. The
wheel ships ``libespeak-ng.so`` and its voice data (``espeakng_loader.get_library_path()`` and
``get_data_path()``); nothing is installed system-wide and no ``espeak`` binary is run.

Speakers stand in for the 58 crowd-sourced speakers of ActivityNet Speech (28 male, 30 female): an identity
is an English accent (``voice``), a timbre (``variant``, a file under ``espeak-ng-data/voices/!v``), a base
pitch and a speaking rate. :func:`speakers` gives two pools of disjoint identities drawn from one distribution of
voices: ``"grounding"`` for the benchmark's queries and ``"pretrain"`` for the external pre-training corpus (standing
in for LibriSpeech, whose speakers are others than the benchmark's, but people all the same).

Determinism. espeak-ng keeps synthesis state in C statics that no API call resets: the pitch-flutter phase
(``Flutter_ix``, a function-static in ``wavegen.c``), the glottal wave phase and the echo buffer all carry over
from one utterance to the next, so the same text spoken twice in one process gives different samples and even
different lengths; and ``espeak_Initialize`` seeds the breath-noise generator from the clock. So every utterance
is spoken by a freshly loaded library (``dlopen``, ``espeak_Initialize``, synthesis, ``espeak_Terminate``,
``dlclose``), which starts from the pristine static state, with the noise reseeded from the utterance
(``espeak_ng_SetRandSeed``): a few milliseconds each, and the audio depends only on the text and the speaker.
The library is loaded from a private copy made once per process, so that another user of espeak-ng in the
same process (which would keep the shared object mapped and its state alive) can neither see nor break ours.
``espeak_Terminate`` leaves about 2 KB per utterance unfreed (voice tables): 20 MB per 10,000 utterances.
"""

from __future__ import annotations

import _ctypes
import atexit
import ctypes
import multiprocessing
import os
import shutil
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import espeakng_loader
import torch
import torchaudio

from bench.data.errors import DataError

SAMPLE_RATE = 16_000
"""The suite's audio rate (wav2vec 2.0 and the log-mel front end both take 16 kHz)."""

KEEP_SILENCE_S = 0.1
"""Leading and trailing silence kept around the speech, in seconds."""

SILENCE_DB = -40.0
"""A sample counts as speech when it is within this many dB of the utterance's peak."""


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: espeak-ng ``voice`` (accent) + ``variant`` (timbre), base ``pitch`` and ``rate``.

    ``pitch`` is espeak-ng's pitch parameter (0-100, 50 is the variant's own base pitch); ``rate`` is the
    speaking rate in words per minute (espeak-ng accepts 80-450).
    """

    id: str
    voice: str
    variant: str
    sex: Literal["female", "male"]
    pitch: int
    rate: int

    @property
    def voice_name(self) -> str:
        """The name espeak-ng's ``espeak_SetVoiceByName`` takes: ``voice+variant``."""
        return f"{self.voice}+{self.variant}"


# --------------------------------------------------------------------------------------------------------
# Speaker pools
# --------------------------------------------------------------------------------------------------------

# English voices of the bundled data (espeak-ng-data/lang/gmw/en*) by the name espeak_SetVoiceByName takes ("en"
# is British English; "en-gb" is only a language code there): the six marked "mature", plus New York City.
_ACCENTS = ("en-us", "en", "en-us-nyc", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan")

# Variants (espeak-ng-data/voices/!v): the timbres of adult female and male voices. Novelty ones (whisper, robots,
# "Demonic", a child-like "zac") are left out, and so are two whose log-mel spectrograms looked wrong: "Marco"
# (smeared, no stop closures) and "Storm" (a fixed band across all vowels).
_VARIANTS = {
    "female": tuple(f"f{i}" for i in range(1, 6))
    + ("Annie", "aunty", "belinda", "steph", "Andrea", "Alicia", "anika", "grandma", "linda", "steph2", "steph3"),
    "male": tuple(f"m{i}" for i in range(1, 9))
    + ("travis", "antonio", "robert", "victor", "Diogo", "marcelo", "Denis", "Henrique", "Hugo", "michel", "miguel",
       "sandro"),
}  # fmt: skip

# (pitch, rate) settings: pitch 42-62 around the variant's base (lower settings took some female timbres below
# 165 Hz) and 140-200 words/min, the range of read speech.
_PROSODY = ((50, 160), (42, 175), (62, 145), (44, 190), (56, 150), (47, 168), (45, 155), (60, 182), (53, 140),
            (48, 198))  # fmt: skip
_POOL_SIZES = {"grounding": {"female": 30, "male": 28}, "pretrain": {"female": 18, "male": 18}}
_POOL_PREFIX = {"grounding": "g", "pretrain": "p"}
_SHUFFLE = 20230709  # the fixed seed of the identities' order (any value; fixed so that pools never change)


def _identities(sex: str) -> list[tuple[str, str, int, int]]:
    """Every (accent, variant, pitch, rate) of one sex in one fixed pseudo-random order, variants spread evenly.

    The order goes round the variants (each round a fresh random order of them), each variant taking a fresh random
    (accent, prosody) pair, so that any prefix, and any slice after it, covers the variants about equally.
    """
    import numpy as np

    rng = np.random.default_rng([_SHUFFLE, len(sex)])
    names = _VARIANTS[sex]
    pairs = {v: [(a, p) for a in _ACCENTS for p in _PROSODY] for v in names}
    for v in names:
        order = rng.permutation(len(pairs[v]))
        pairs[v] = [pairs[v][i] for i in order]
    out = []
    for k in range(len(_ACCENTS) * len(_PROSODY)):
        for i in rng.permutation(len(names)):
            accent, (pitch, rate) = pairs[names[i]][k]
            out.append((accent, names[i], pitch, rate))
    return out


def speakers(pool: str = "grounding") -> list[Speaker]:
    """The speakers of a pool: ``"grounding"`` (58: 30 female, 28 male) or ``"pretrain"`` (36: 18 and 18).

    The grounding pool mirrors ActivityNet Speech's 58 speakers (30 female, 28 male); the pre-training pool stands in
    for LibriSpeech's. Like two sets of real speakers, the pools are drawn from one distribution of voices (the same
    accents, timbres and prosody ranges) and share no identity: the grounding speakers take the first identities of
    each sex in :func:`_identities`' order, the pre-training speakers the next ones. (Until issue 14 the pools had
    disjoint timbres, so an ASR trained on the corpus heard every grounding speaker as a new kind of voice: 97 % WER.)
    Both lists are fixed (no randomness at run time), ids ``g00``... and ``p00``..., the sexes interleaved so that any
    prefix of a list is roughly balanced.
    """
    if pool in _POOL_SIZES:
        by_sex = {}
        for sex in ("female", "male"):
            skip = _POOL_SIZES["grounding"][sex] if pool == "pretrain" else 0
            ids = _identities(sex)[skip : skip + _POOL_SIZES[pool][sex]]
            by_sex[sex] = [Speaker("", accent, variant, sex, pitch, rate) for accent, variant, pitch, rate in ids]
        females, males = by_sex["female"], by_sex["male"]
        mixed = [s for pair in zip(females, males, strict=False) for s in pair]
        mixed += females[len(males) :] + males[len(females) :]
        prefix = _POOL_PREFIX[pool]
        return [Speaker(f"{prefix}{n:02d}", s.voice, s.variant, s.sex, s.pitch, s.rate) for n, s in enumerate(mixed)]
    raise ValueError(f"unknown speaker pool {pool!r}; choose 'grounding' or 'pretrain'")


# --------------------------------------------------------------------------------------------------------
# The ctypes binding (values from espeak-ng's speak_lib.h, API revision 12)
# --------------------------------------------------------------------------------------------------------

_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: synthesize inside espeak_Synth, hand samples to the callback
_INITIALIZE_DONT_EXIT = 0x8000  # espeak_Initialize option: return an error instead of exit() on missing data
_RATE, _PITCH = 1, 3  # espeak_PARAMETER
_POS_CHARACTER = 1  # espeak_POSITION_TYPE
_CHARS_UTF8 = 1  # espeak_Synth flags: UTF-8 text, no SSML, no end-of-text pause
_EE_OK = 0  # espeak_ERROR


class _Event(ctypes.Structure):
    """``espeak_EVENT``; only passed through (the callback ignores events), but laid out exactly."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_void_p),  # a union of int, const char* and char[8]: pointer-sized
    ]


# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events); return 0 to continue.
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))

_LOCK = threading.Lock()  # espeak-ng is one global state per loaded library: one utterance at a time
_private: tuple[int, Path] | None = None  # (pid that made it, path) of this process's copy of the library


def _reset_lock_after_fork() -> None:
    """A child forked while another thread held the lock would otherwise wait for it forever."""
    global _LOCK
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_after_fork)


def _library_path() -> Path:
    """This process's private copy of libespeak-ng.so, made on first use and removed at exit.

    A copy has its own inode, so dlopen maps it as a library of its own even where espeakng_loader's file is
    already loaded, and dlclose really unloads it (nothing else holds it), which is what resets its state.
    """
    global _private
    if _private is None or _private[0] != os.getpid():
        folder = Path(tempfile.mkdtemp(prefix=f"wsvg-espeak-{os.getpid()}-"))
        path = folder / "libespeak-ng-private.so"
        shutil.copyfile(espeakng_loader.get_library_path(), path)
        _private = (os.getpid(), path)
        atexit.register(_remove_copy, os.getpid(), folder)
    return _private[1]


def _remove_copy(owner: int, folder: Path) -> None:
    """Delete the private copy, only in the process that made it (a forked child inherits atexit hooks)."""
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


def _variant_exists(variant: str) -> bool:
    """espeak-ng silently ignores an unknown ``+variant``, so it is checked against the data directory."""
    return (Path(espeakng_loader.get_data_path()) / "voices" / "!v" / variant).is_file()


def _noise_seed(text: str, speaker: Speaker) -> int:
    """A seed fixed by the utterance, so that the audio is reproducible but utterances do not share one noise."""
    return zlib.crc32(f"{speaker.voice_name}|{speaker.pitch}|{speaker.rate}|{text}".encode())


def _synthesize_native(text: str, speaker: Speaker) -> tuple[bytes, int]:
    """Speak ``text`` with a freshly loaded espeak-ng: (native-endian int16 PCM, espeak-ng's sample rate)."""
    if not _variant_exists(speaker.variant):
        raise DataError(
            f"speaker {speaker.id}",
            f"espeak-ng's data has no voice variant {speaker.variant!r}",
            "use a speaker from bench.data.tts.speakers(), or a file name under espeak-ng-data/voices/!v",
        )
    chunks: list[bytes] = []

    def collect(wav, numsamples, events) -> int:
        if wav and numsamples > 0:
            chunks.append(ctypes.string_at(wav, 2 * numsamples))
        return 0

    callback = _SynthCallback(collect)
    encoded = text.encode("utf-8") + b"\0"
    with _LOCK:
        lib = ctypes.CDLL(str(_library_path()))
        try:
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            lib.espeak_Synth.argtypes = [
                ctypes.c_char_p,
                ctypes.c_size_t,
                ctypes.c_uint,
                ctypes.c_int,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.c_void_p,
                ctypes.c_void_p,
            ]
            data = espeakng_loader.get_data_path().encode()
            native_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_DONT_EXIT)
            if native_rate <= 0:
                raise DataError(
                    data.decode(),
                    "espeak-ng could not initialize from this data directory",
                    "reinstall the espeakng-loader wheel (pip install --force-reinstall espeakng-loader)",
                )
            lib.espeak_SetSynthCallback(callback)
            if lib.espeak_SetVoiceByName(speaker.voice_name.encode()) != _EE_OK:
                raise DataError(
                    f"speaker {speaker.id}",
                    f"espeak-ng has no voice named {speaker.voice!r}",
                    "use a speaker from bench.data.tts.speakers(), or a voice named in espeak-ng-data/lang",
                )
            lib.espeak_SetParameter(_RATE, speaker.rate, 0)
            lib.espeak_SetParameter(_PITCH, speaker.pitch, 0)
            # espeak_Initialize seeds the breath-noise generator with time(NULL); reseed from the utterance.
            lib.espeak_ng_SetRandSeed(ctypes.c_long(_noise_seed(text, speaker)))
            status = lib.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if status != _EE_OK:
                raise RuntimeError(f"espeak_Synth failed with status {status} for speaker {speaker.id}")
            lib.espeak_Synchronize()
        finally:
            lib.espeak_Terminate()
            _ctypes.dlclose(lib._handle)
    return b"".join(chunks), native_rate


# --------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------


def _check_text(text: str, where: str) -> None:
    """Refuse empty text up front: espeak-ng would return silence, and a silent query is a data bug."""
    if not text or not text.strip():
        raise DataError(
            where,
            "the text to speak is empty or whitespace only",
            "drop queries without words before synthesis, or give the sentence to speak",
        )


def _finish(pcm: bytes, native_rate: int, text: str, where: str) -> torch.Tensor:
    """int16 PCM at the native rate -> float32 at 16 kHz in [-1, 1], silence trimmed to KEEP_SILENCE_S."""
    wave = torch.frombuffer(bytearray(pcm), dtype=torch.int16).to(torch.float32) / 32768.0
    peak = wave.abs().max() if wave.numel() else torch.tensor(0.0)
    if peak <= 0:
        raise DataError(
            where,
            f"espeak-ng produced no audible speech for {text!r}",
            "give text with at least one pronounceable word (punctuation alone is not spoken)",
        )
    loud = torch.nonzero(wave.abs() >= peak * 10 ** (SILENCE_DB / 20)).squeeze(1)
    keep = round(KEEP_SILENCE_S * native_rate)
    start, end = max(int(loud[0]) - keep, 0), min(int(loud[-1]) + 1 + keep, wave.numel())
    return _resample(wave[start:end], native_rate).clamp_(-1.0, 1.0).contiguous()


def _resample(wave: torch.Tensor, native_rate: int) -> torch.Tensor:
    """torchaudio's sinc resampler, run on the wave zero-padded to whole seconds and cut back to length.

    On the CPU, conv1d (oneDNN) builds a new primitive for every new input length, which costs several times
    the convolution itself (tens of ms against a few for a 2 s utterance); with whole seconds a handful of shapes
    serve every utterance. The resampler pads with zeros on its own, so the kept samples are the same up to
    float rounding (at most 1 ulp, from oneDNN's shape-dependent blocking); the result is deterministic.
    """
    n = wave.numel()
    padded = torch.nn.functional.pad(wave, (0, -n % native_rate))
    out = torchaudio.functional.resample(padded, native_rate, SAMPLE_RATE)
    return out[: -(-n * SAMPLE_RATE // native_rate)]


def synthesize(text: str, speaker: Speaker) -> torch.Tensor:
    """Speak ``text`` as ``speaker``: float32 mono waveform at 16 kHz in [-1, 1], shape ``(samples,)``.

    Deterministic (bit-identical for the same text and speaker, whatever was spoken before); leading and
    trailing silence is trimmed to at most ``KEEP_SILENCE_S``. Empty text raises :class:`DataError`.
    """
    where = f"tts text for speaker {speaker.id}"
    _check_text(text, where)
    pcm, rate = _synthesize_native(text, speaker)
    return _finish(pcm, rate, text, where)


def _native_job(item: tuple[str, Speaker]) -> tuple[bytes, int]:
    """Pool worker: espeak-ng only; the float conversion and resampling stay in the parent (see below)."""
    return _synthesize_native(*item)


def synthesize_many(items: list[tuple[str, Speaker]], workers: int = 1) -> list[torch.Tensor]:
    """:func:`synthesize` over ``(text, speaker)`` pairs, in order, optionally in ``workers`` processes.

    The pool uses the ``spawn`` start method (forking a process that runs torch's thread pools is unsafe), and
    each worker loads espeak-ng on its own. Workers return raw PCM and the parent finishes every utterance as
    :func:`synthesize` does while the workers speak the next ones, so the result is bit-identical to the loop
    whatever the workers' torch settings. Starting a pool costs about two seconds (each worker imports torch),
    so it pays off for hundreds of utterances, not for a handful. With as many workers as cores, call
    ``torch.set_num_threads(1)`` first: the parent's resampling threads otherwise compete with the workers
    (on 2 cores, 2 workers gave 170 utterances/s with one torch thread and 105 with two).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    wheres = [f"tts item {i} (speaker {speaker.id})" for i, (_, speaker) in enumerate(items)]
    for (text, _), where in zip(items, wheres, strict=True):
        _check_text(text, where)
    if workers == 1 or len(items) < 2:
        return [_finish(*_synthesize_native(*item), item[0], where) for item, where in zip(items, wheres, strict=True)]
    processes = min(workers, len(items))
    chunksize = max(1, min(16, len(items) // (processes * 8)))
    pool = multiprocessing.get_context("spawn").Pool(processes)
    try:
        native = pool.imap(_native_job, items, chunksize=chunksize)  # in order, as the workers finish them
        out = [
            _finish(pcm, rate, item[0], where) for (pcm, rate), item, where in zip(native, items, wheres, strict=True)
        ]
        pool.close()  # a clean exit runs the workers' atexit hooks, which delete their library copies
    except BaseException:
        pool.terminate()
        raise
    pool.join()
    return out
