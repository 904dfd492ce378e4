"""Real speech for tests, made by the espeak-ng binary (``apt-get install espeak-ng``).

``make_speech`` speaks one text; ``desk_clip`` joins speech and pauses into what a desk
recorder publishes: WAV or Ogg/Opus bytes, 16 kHz mono. Tests that need them use
``requires_espeak``, so a machine without espeak-ng skips them with the reason instead of
failing. espeak-ng's Russian is robotic: Whisper base hears some words of it well (спасибо,
телефон, скидка, хорошо, сегодня) and mangles others (здравствуйте, добрый день), so tests
pick their words from the first kind and assert on a share of them, not on a whole sentence.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

RATE = 16_000
ESPEAK = shutil.which("espeak-ng")
requires_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")

Lang = Literal["ru", "en"]
Format = Literal["wav", "ogg", "mp3"]


@functools.lru_cache(maxsize=64)
def _spoken(text: str, lang: str, rate: int, voice: str | None) -> bytes:
    """espeak-ng's WAV (22.05 kHz int16 mono) for ``text``; the text goes in by file, not argv."""
    if ESPEAK is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
        src, out = Path(tmp, "text.txt"), Path(tmp, "out.wav")
        src.write_text(text, encoding="utf-8")
        subprocess.run(
            [ESPEAK, "-v", voice or lang, "-s", str(rate), "-f", str(src), "-w", str(out)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return out.read_bytes()


def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"espeak-ng wrote {8 * w.getsampwidth()}-bit audio, expected 16-bit")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        if w.getnchannels() > 1:
            pcm = pcm.reshape(-1, w.getnchannels()).mean(axis=1)
        return pcm, w.getframerate()


def _resample(pcm: np.ndarray, rate: int, to: int = RATE) -> np.ndarray:
    """Linear interpolation: fine for speech going down from 22.05 kHz to 16 kHz in tests."""
    if rate == to or pcm.size == 0:
        return pcm.astype(np.float32)
    n = round(pcm.size * to / rate)
    x = np.arange(n, dtype=np.float64) * (rate / to)
    return np.interp(x, np.arange(pcm.size), pcm).astype(np.float32)


def make_speech(text: str, lang: Lang = "ru", rate: int = 140, voice: str | None = None) -> np.ndarray:
    """``text`` spoken by espeak-ng: float32 PCM in [-1, 1], 16 kHz mono.

    ``rate`` is espeak-ng's words per minute (its default is 175; 120–150 is clearer for
    Whisper); ``voice`` overrides the voice (e.g. ``"ru+m3"``), default the language's own.
    """
    pcm, sr = _read_wav(_spoken(text, lang, rate, voice))
    return _resample(pcm, sr)


def to_int16(pcm: np.ndarray) -> np.ndarray:
    return (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16)


def encode_wav(pcm: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_int16(pcm).tobytes())
    return buf.getvalue()


def _encode(pcm: np.ndarray, rate: int, container: str, codec: str, codec_rate: int, sample_fmt: str, bitrate: int) -> bytes:
    import av
    import av.audio.stream

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=codec_rate, layout="mono")
        assert isinstance(stream, av.audio.stream.AudioStream)
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(to_int16(pcm).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame_size = stream.codec_context.frame_size or None
        resampler = av.AudioResampler(format=sample_fmt, layout="mono", rate=codec_rate, frame_size=frame_size)
        for part in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(part):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def encode_ogg(pcm: np.ndarray, rate: int = RATE, bitrate: int = 24_000) -> bytes:
    """Ogg/Opus (libopus via PyAV), as a recorder or a Telegram voice note has it."""
    return _encode(pcm, rate, "ogg", "libopus", 48_000, "s16", bitrate)


def encode_mp3(pcm: np.ndarray, rate: int = RATE, bitrate: int = 32_000) -> bytes:
    """MP3 (LAME via PyAV) at 16 kHz."""
    return _encode(pcm, rate, "mp3", "libmp3lame", RATE, "s16p", bitrate)


def desk_pcm(
    parts: Sequence[str | float],
    lang: Lang = "ru",
    *,
    rate: int = 140,
    noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Speech and pauses joined: a str is spoken, a float is that many seconds of silence.

    ``noise`` adds white noise of that RMS (e.g. 0.003, a quiet room) to the whole clip.
    """
    chunks = [
        np.zeros(round(part * RATE), dtype=np.float32) if isinstance(part, int | float) else make_speech(part, lang, rate)
        for part in parts
    ]
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if noise:
        pcm = pcm + np.random.default_rng(seed).normal(0.0, noise, pcm.size).astype(np.float32)
    return pcm.astype(np.float32)


def desk_clip(
    parts: Sequence[str | float],
    lang: Lang = "ru",
    *,
    fmt: Format = "wav",
    rate: int = 140,
    noise: float = 0.0,
    seed: int = 0,
) -> bytes:
    """:func:`desk_pcm` encoded as WAV, Ogg/Opus or MP3 bytes (mono)."""
    pcm = desk_pcm(parts, lang, rate=rate, noise=noise, seed=seed)
    return {"wav": encode_wav, "ogg": encode_ogg, "mp3": encode_mp3}[fmt](pcm)
