"""Audio bytes in, facts or PCM out; PCM in, Ogg/Opus (or WAV) bytes out. Pure and CPU-bound.

Everything here blocks: callers on the event loop run it in an executor. Nothing here knows
MQTT, Telegram or the database; bytes are what a desk recorder published on
``{root}/{site}/{point}/audio/{start_epoch_ms}`` or what :func:`encode_ogg_opus` made.

PCM is always a 1-D ``numpy.ndarray`` of ``int16`` (mono), at a rate the caller names
(16 kHz by default: what the snippets and faster-whisper use).

Bad input is never a ``ValueError`` or an FFmpeg exception: it is an :class:`AudioError` with
a short machine ``reason`` the caller can store and count, like ``PayloadError`` for events:

* ``empty``             no bytes, or a valid file with no samples in it
* ``corrupt``           not a file we can read at all, or nothing in it decodes
* ``unsupported_codec`` readable, but not audio we take: a text payload, a container outside
                        :data:`ACCEPTED_FORMATS`, a file with no audio stream (video only), an
                        audio codec this FFmpeg build cannot decode
* ``too_long``          longer than ``max_duration_s`` (one hour by default)

Input containers are limited to :data:`ACCEPTED_FORMATS` (FFmpeg's ``format_whitelist``), so a
payload that FFmpeg would read as a playlist or a concat script can never make it open other
files or URLs. Ogg/Opus, WAV and MP3 are the contract; FLAC, Matroska/WebM, MP4/M4A and ADTS
AAC are accepted too because off-the-shelf recorders write them.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal, TypeAlias, get_args

import av
import av.error
import numpy as np

AudioReason: TypeAlias = Literal["corrupt", "unsupported_codec", "empty", "too_long"]
AUDIO_REASONS: Final[frozenset[str]] = frozenset(get_args(AudioReason))

ACCEPTED_FORMATS: Final = "ogg,wav,mp3,flac,matroska,webm,mov,mp4,m4a,aac"
"""FFmpeg demuxer names a payload may be read with (a ``format_whitelist``)."""
MAX_DURATION_S: Final = 3600.0
"""Default cap on one input file: one hour of 16 kHz PCM is 115 MB of ``int16``."""
OPUS_RATE: Final = 48_000  # libopus codes at 48 kHz; Telegram voice notes are 48 kHz mono Opus
DEFAULT_RATE: Final = 16_000
DEFAULT_BITRATE: Final = 24_000
_MAX_BAD_PACKETS: Final = 50  # consecutive undecodable packets after which the rest is noise
_ENCODE_CHUNK_S: Final = 1  # encode in 1 s frames: bounded intermediates for a 10 min snippet
_MIN_FILL: Final = Fraction(20, 1000)  # timestamp jumps below this are codec rounding, not loss
_MAX_FILL: Final = Fraction(60)  # jumps above this are broken timestamps, not lost audio


class AudioError(Exception):
    """Bytes that cannot become PCM (or PCM that cannot become a file); ``reason`` is for machines."""

    def __init__(self, reason: AudioReason, detail: str) -> None:
        if reason not in AUDIO_REASONS:
            raise ValueError(f"unknown AudioError reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason: AudioReason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[AudioError], tuple[str, str]]:
        # survives a ProcessPoolExecutor: rebuilt from (reason, detail), not from the message
        return (type(self), (self.reason, self.detail))


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What :func:`probe` learns without decoding: the first audio stream of the file."""

    codec: str  # FFmpeg's codec name: "opus", "pcm_s16le", "mp3", "aac", ...
    duration_s: float
    sample_rate: int  # as stored (Opus always reports 48000)
    channels: int
    container: str  # FFmpeg's demuxer name: "ogg", "wav", "mp3", "matroska,webm", ...


# --------------------------------------------------------------------------- reading


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # a multi-byte character cut by the slice is still text
            return False
        text = head[: exc.start].decode("utf-8")
    return bool(text) and all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def _open(data: bytes) -> av.container.InputContainer:
    if not data:
        raise AudioError("empty", "no bytes")
    try:
        return av.open(io.BytesIO(data), mode="r", options={"format_whitelist": ACCEPTED_FORMATS})
    except av.error.ArgumentError:
        # FFmpeg recognised the container, and it is not on the whitelist
        raise AudioError(
            "unsupported_codec", "container format not accepted: send Ogg/Opus, WAV or MP3"
        ) from None
    except (av.error.FFmpegError, OSError) as exc:
        if _looks_like_text(data):
            preview = data[:40].decode("utf-8", "replace")
            raise AudioError("unsupported_codec", f"payload is text, not audio: {preview!r}") from None
        raise AudioError("corrupt", f"not a readable audio file ({exc.__class__.__name__})") from None


def _audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream:
    if not container.streams.audio:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        raise AudioError("unsupported_codec", f"no audio stream in {container.format.name} ({kinds})")
    stream = container.streams.audio[0]
    if stream.codec_context is None or stream.codec_context.codec is None:
        raise AudioError("unsupported_codec", f"no decoder for the audio in {container.format.name}")
    return stream


def _codec_name(stream: av.audio.stream.AudioStream) -> str:
    codec = stream.codec_context.codec
    return codec.canonical_name or codec.name


def _opus_preskip(stream: av.audio.stream.AudioStream) -> int:
    head = stream.codec_context.extradata or b""  # the OpusHead packet
    return int.from_bytes(head[10:12], "little") if head[:8] == b"OpusHead" and len(head) >= 12 else 0


def _stated_duration(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    if container.format.name == "ogg" and stream.duration and stream.time_base is not None:
        # FFmpeg gives the last granule position, which counts the Opus pre-skip, and the first
        # packet's, which is not 0 in a file cut from a longer stream (granules continue)
        preskip = _opus_preskip(stream) if _codec_name(stream) == "opus" else 0
        first = stream.start_time or 0
        return float((stream.duration - first) * stream.time_base) - preskip / OPUS_RATE
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    if stream.duration is not None and stream.duration > 0 and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def _counted_duration(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float:
    """Sum of packet durations (no decoding), for files whose header states none."""
    total = Fraction(0)
    try:
        for packet in container.demux(stream):
            if packet.duration and packet.time_base is not None:
                total += packet.duration * packet.time_base
    except av.error.FFmpegError:
        pass  # a truncated tail: what was demuxed counts
    return float(total)


def probe(data: bytes, *, max_duration_s: float = MAX_DURATION_S) -> AudioInfo:
    """Codec, duration, rate and channels of the first audio stream; cheap (reads headers).

    The duration is what the container states (for Ogg, granule positions less the Opus
    pre-skip: exact for :func:`encode_ogg_opus` output); a file that states none is measured
    by its packets. A truncated file may state more than :func:`decode_pcm` then finds (an MP3
    header's frame count). Raises :class:`AudioError`.
    """
    with _open(data) as container:
        stream = _audio_stream(container)
        duration = _stated_duration(container, stream)
        if duration is None:
            duration = _counted_duration(container, stream)
        info = AudioInfo(
            codec=_codec_name(stream),
            duration_s=duration,
            sample_rate=int(stream.codec_context.sample_rate or stream.sample_rate or 0),
            channels=int(stream.codec_context.channels or 0),
            container=container.format.name,
        )
    if info.duration_s <= 0:
        raise AudioError("empty", f"{info.codec} in {info.container} with no duration")
    if info.duration_s > max_duration_s:
        raise AudioError("too_long", f"{info.duration_s:.1f} s, the limit is {max_duration_s:.0f} s")
    return info


def duration_of(data: bytes) -> float:
    """Seconds of audio in ``data`` as :func:`probe` states them (e.g. for ``sendVoice``'s duration)."""
    return probe(data).duration_s


def decode_pcm(data: bytes, rate: int = DEFAULT_RATE, *, max_duration_s: float = MAX_DURATION_S) -> np.ndarray:
    """All of the first audio stream as mono ``int16`` at ``rate`` (resampled, channels mixed down).

    A truncated or partly damaged file yields what decodes: undecodable packets are skipped and
    a demuxer error ends the read. ``corrupt`` only when not one sample decodes; ``empty`` when
    the file decodes cleanly to nothing. Audio lost inside the file (a damaged page, skipped
    packets) becomes silence of the length the timestamps say (20 ms to 60 s), so what follows
    stays at its true offset from the segment's start; a loss before the first decodable frame
    cannot be told from a file that starts there, and is not filled. Raises :class:`AudioError`.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    limit = int(max_duration_s * rate)
    with _open(data) as container:
        stream = _audio_stream(container)
        stated = _stated_duration(container, stream)
        if stated is not None and stated > max_duration_s:
            raise AudioError("too_long", f"{stated:.1f} s, the limit is {max_duration_s:.0f} s")
        out = _Collector(rate, limit)
        errors, bad_run, last_error = 0, 0, ""
        flushed = False
        try:
            for packet in container.demux(stream):
                flushed = packet.size == 0 and packet.pts is None  # PyAV's final flush packet
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as exc:
                    errors, bad_run, last_error = errors + 1, bad_run + 1, str(exc)
                    if bad_run >= _MAX_BAD_PACKETS:
                        break
                    continue
                bad_run = 0
                for frame in frames:
                    out.add(frame)
        except av.error.FFmpegError as exc:  # the demuxer gave up: a cut-off or damaged tail
            errors, last_error = errors + 1, str(exc)
        if not flushed:
            try:
                for frame in stream.codec_context.decode(None):
                    out.add(frame)
            except av.error.FFmpegError:
                pass
        pcm = out.finish()
    if pcm.size == 0:
        if errors:
            raise AudioError("corrupt", f"nothing decodes ({errors} errors; last: {last_error})")
        raise AudioError("empty", "the file holds no samples")
    return pcm


class _Collector:
    """Resamples decoded frames to mono ``int16`` at one rate; rebuilds itself if the input changes.

    Keeps the decoded audio on the file's own clock: ``_origin + _consumed`` is where the next
    frame should start; a frame that starts later follows lost audio, which becomes silence.
    """

    def __init__(self, rate: int, limit: int) -> None:
        self.rate, self.limit = rate, limit
        self.parts: list[np.ndarray] = []
        self.total = 0
        self._resampler: av.AudioResampler | None = None
        self._shape: tuple[str, str, int] | None = None
        self._origin: Fraction | None = None  # seconds: the first frame's timestamp
        self._consumed = Fraction(0)  # seconds of input (decoded or filled) so far

    def _append(self, samples: np.ndarray) -> None:
        self.total += samples.size
        if self.total > self.limit:
            raise AudioError("too_long", f"more than {self.limit / self.rate:.0f} s of audio")
        self.parts.append(samples)

    def _take(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            self._append(frame.to_ndarray().reshape(-1).astype(np.int16, copy=True))

    def _fill_loss(self, frame: av.AudioFrame) -> None:
        if frame.pts is None or frame.time_base is None:
            return
        at = frame.pts * frame.time_base
        if self._origin is None:
            self._origin = at - self._consumed
            return
        lost = at - (self._origin + self._consumed)
        if _MIN_FILL < lost <= _MAX_FILL:
            self._flush()  # the resampler's buffered tail belongs before the silence
            self._shape = None
            self._append(np.zeros(round(lost * self.rate), dtype=np.int16))
            self._consumed += lost

    def _flush(self) -> None:
        if self._resampler is not None:
            self._take(self._resampler.resample(None))
            self._resampler = None

    def add(self, frame: av.AudioFrame) -> None:
        self._fill_loss(frame)
        self._consumed += Fraction(frame.samples, frame.sample_rate)
        shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        if shape != self._shape:  # first frame, or the stream changed mid-file
            self._flush()
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
            self._shape = shape
        frame.pts = None  # resample by sample count; timestamps in damaged files may jump
        assert self._resampler is not None
        self._take(self._resampler.resample(frame))

    def finish(self) -> np.ndarray:
        self._flush()
        if not self.parts:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self.parts)


# --------------------------------------------------------------------------- writing


def _as_mono_int16(pcm: np.ndarray) -> np.ndarray:
    array = np.asarray(pcm)
    if array.ndim != 1:
        raise ValueError(f"PCM must be 1-D mono, got shape {array.shape}")
    if array.dtype == np.int16:
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.floating):  # floats in [-1, 1]
        return (np.clip(array, -1.0, 1.0) * 32767).astype(np.int16)
    raise ValueError(f"PCM must be int16 (or float in [-1, 1]), got {array.dtype}")


def encode_ogg_opus(pcm: np.ndarray, rate: int = DEFAULT_RATE, bitrate: int = DEFAULT_BITRATE) -> bytes:
    """Ogg/Opus as Telegram wants for a voice note: libopus, 48 kHz, mono, speech tuning.

    ``pcm`` is mono ``int16`` at ``rate``; it is resampled to 48 kHz. Decoding the result
    gives back exactly ``len(pcm)`` samples at ``rate`` (pre-skip and end trimming are set).
    Raises :class:`AudioError` ``empty`` for no samples.
    """
    samples = _as_mono_int16(pcm)
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if samples.size == 0:
        raise AudioError("empty", "no samples to encode")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=OPUS_RATE, layout="mono", options={"application": "voip"})
        stream.bit_rate = bitrate
        chunk = rate * _ENCODE_CHUNK_S
        for offset in range(0, samples.size, chunk):
            part = samples[offset : offset + chunk].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(part, format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = offset
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def encode_wav(pcm: np.ndarray, rate: int = DEFAULT_RATE) -> bytes:
    """16-bit mono WAV (for tests and tools)."""
    samples = _as_mono_int16(pcm)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2", copy=False).tobytes())
    return buf.getvalue()
