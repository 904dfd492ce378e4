"""Speech to text behind an interface: :class:`Transcriber`, with faster-whisper behind it.

``WhisperTranscriber`` keeps the event loop free: a bounded :class:`asyncio.Queue` feeds ONE
worker task, which hands each job to a worker PROCESS of its own — decoding (PyAV), VAD
(Silero, shipped inside faster-whisper, runs offline on onnxruntime) and the whole segment
generator of ``WhisperModel.transcribe`` run there. A thread was not enough: the decoder's
Python glue shares the GIL with the loop, which then lagged 90–120 ms whenever the machine
was busy. The worker runs at a lower priority (``nice``), so the bot gets the CPU first,
and it ignores Ctrl-C: the service closes it. The model is resolved (:mod:`speech.models`)
and loaded once in that process, on ``load()`` or the first job, and reused for every job.
A worker that dies (killed, out of memory, a crash in native code) fails only the job it
ran, as ``failed``; the next job starts a fresh one.

A full queue makes :meth:`WhisperTranscriber.transcribe` wait (back-pressure), it never drops
a job. Every failure reaches the caller as a :class:`TranscriptionError` with a ``reason``:

* ``model``   the model cannot be resolved or loaded (``detail`` says what was tried)
* ``audio``   the input cannot be decoded, or holds no samples
* ``failed``  the model raised while transcribing
* ``closed``  the transcriber was closed before the job ran
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import multiprocessing
import os
import signal
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

import numpy as np

from speech.models import ModelNotAvailable, ResolvedModel, resolve_model

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

__all__ = [
    "DEFAULT_LANGUAGE",
    "Audio",
    "Segment",
    "Transcriber",
    "Transcript",
    "TranscriptionError",
    "WhisperTranscriber",
    "format_timestamp",
    "model_loads",
]

log = logging.getLogger(__name__)

DEFAULT_LANGUAGE = "ru"
SAMPLE_RATE = 16_000
Audio: TypeAlias = bytes | Path | np.ndarray
"""Encoded bytes (Ogg/Opus, WAV, MP3, …), a path to such a file, or PCM at 16 kHz mono
(float32 in [-1, 1], or int16 as ``speech.audio.decode_pcm`` returns it)."""
TranscriptionReason: TypeAlias = Literal["model", "audio", "failed", "closed"]


class TranscriptionError(Exception):
    def __init__(self, reason: TranscriptionReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")

    def __reduce__(self) -> tuple[type[TranscriptionError], tuple[str, str]]:
        return (type(self), (self.reason, self.detail))


def format_timestamp(seconds: float) -> str:
    """``12.7`` → ``00:12``; an hour or more → ``1:02:03``."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the audio
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    language: str
    duration: float  # seconds of audio
    segments: list[Segment]
    text: str
    speech_duration: float | None = None  # seconds the VAD kept (None: no VAD)

    @property
    def is_empty(self) -> bool:
        return not self.text.strip()

    def with_timestamps(self, offset: float = 0.0) -> str:
        """One line per segment: ``[00:12] text``; ``offset`` shifts the clock (a cut's start)."""
        return "\n".join(f"[{format_timestamp(offset + s.start)}] {s.text}" for s in self.segments if s.text)


@runtime_checkable
class Transcriber(Protocol):
    async def transcribe(self, audio: Audio, language: str | None = DEFAULT_LANGUAGE) -> Transcript:
        """``language`` is a Whisper code (``"ru"``, ``"en"``) or None to detect it."""
        ...


# --- in the worker process: one model per process -------------------------------------------

_ModelKey: TypeAlias = tuple[str, str, int]  # (directory, compute type, cpu threads)
_models: dict[_ModelKey, WhisperModel] = {}
_loads: Counter[_ModelKey] = Counter()


def model_loads(path: str | None = None) -> int:
    """How many times this process constructed a ``WhisperModel`` (for one directory, or all)."""
    return sum(n for key, n in list(_loads.items()) if path is None or key[0] == path)


def _shared_model(path: str, compute_type: str, cpu_threads: int) -> WhisperModel:
    """The worker's model, loaded on first use (the worker runs one job at a time: no lock)."""
    key = (path, compute_type, cpu_threads)
    model = _models.get(key)
    if model is None:
        from faster_whisper import WhisperModel

        started = time.monotonic()
        model = WhisperModel(path, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads, num_workers=1)
        _models[key] = model
        _loads[key] += 1
        log.info(
            "whisper model %s (%s, %d threads) loaded in %.1f s", path, compute_type, cpu_threads, time.monotonic() - started
        )
    return model


@dataclass(frozen=True)
class _ModelSpec:
    """Everything the worker needs to find and load the model (pickled to it)."""

    spec: str
    cache_dir: Path
    compute_type: str
    cpu_threads: int
    vad: bool


@dataclass(frozen=True)
class _Loaded:
    resolved: ResolvedModel
    loads: int  # WhisperModel constructions in the worker so far
    pid: int


def _worker_started(nice: int) -> None:
    """The worker's initializer: background priority, and Ctrl-C is the service's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)


def _load_in_worker(spec: _ModelSpec) -> _Loaded:
    try:
        resolved = resolve_model(spec.spec, spec.cache_dir)
        _shared_model(resolved.path_or_name, spec.compute_type, spec.cpu_threads)
        if spec.vad:  # the Silero session (asset inside faster-whisper): built now, not mid-job
            from faster_whisper.vad import get_vad_model

            get_vad_model()
    except ModelNotAvailable as exc:
        raise TranscriptionError("model", str(exc)) from None
    except Exception as exc:
        raise TranscriptionError("model", f"cannot load {spec.spec!r}: {type(exc).__name__}: {exc}") from None
    return _Loaded(resolved, model_loads(resolved.path_or_name), os.getpid())


def _transcribe_in_worker(
    spec: _ModelSpec, path: str, options: dict[str, Any], audio: Audio, language: str | None
) -> Transcript:
    model = _shared_model(path, spec.compute_type, spec.cpu_threads)
    pcm = _decode(audio)
    started = time.monotonic()
    try:
        segments, info = model.transcribe(pcm, language=language, vad_filter=spec.vad, **options)
        segs = [Segment(float(s.start), float(s.end), s.text.strip()) for s in segments]  # the generator does the work
    except Exception as exc:
        raise TranscriptionError("failed", f"{type(exc).__name__}: {exc}") from None
    elapsed = time.monotonic() - started
    log.debug("transcribed %.1f s of audio in %.1f s (RTF %.2f)", info.duration, elapsed, elapsed / max(info.duration, 1e-9))
    return Transcript(
        language=info.language,
        duration=float(info.duration),
        segments=segs,
        text=" ".join(s.text for s in segs if s.text),
        speech_duration=float(info.duration_after_vad) if spec.vad else None,
    )


def _decode_file(source: Any) -> np.ndarray:
    """Any audio PyAV reads → int16 PCM at 16 kHz mono, one frame at a time.

    Not ``faster_whisper.decode_audio``: that one ends with ``gc.collect()`` and resamples in
    500 000-sample groups, holding the GIL for 20–40 ms at a time. Harmless in the worker
    process now, but frame by frame also keeps its memory flat on long calls.
    """
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    with av.open(source, mode="r", metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise TranscriptionError("audio", "no audio stream")
        frames = container.decode(audio=0)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.InvalidDataError:  # a damaged packet: skip it, keep the rest
                continue
            frame.pts = None
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def _decode(audio: Audio) -> np.ndarray:
    """Float32 PCM at 16 kHz mono; blocks (PyAV)."""
    if isinstance(audio, np.ndarray):
        pcm = audio
        if pcm.ndim != 1 or pcm.dtype not in (np.int16, np.float32, np.float64):
            raise TranscriptionError("audio", f"PCM must be 1-D int16 or float mono, got {pcm.dtype} {pcm.shape}")
    else:
        if isinstance(audio, bytes) and not audio:
            raise TranscriptionError("audio", "no bytes")
        try:
            pcm = _decode_file(str(audio) if isinstance(audio, Path) else io.BytesIO(audio))
        except TranscriptionError:
            raise
        except Exception as exc:
            raise TranscriptionError("audio", f"cannot decode: {type(exc).__name__}: {exc}") from None
    if pcm.size == 0:
        raise TranscriptionError("audio", "no samples")
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    return pcm.astype(np.float32, copy=False)


# --- in the service: the queue, the worker task and the worker process ------------------------


@dataclass
class _Job:
    audio: Audio
    language: str | None
    future: asyncio.Future[Transcript]


class WhisperTranscriber:
    """faster-whisper on the CPU, one job at a time, in a worker process.

    ``start()`` (or the first ``transcribe``) starts the worker task; ``load()`` starts the
    process and loads the model now instead of on the first job; ``aclose()`` lets the running
    job finish, fails the queued ones with ``reason="closed"`` and stops the process.
    """

    def __init__(
        self,
        model_spec: str,
        cache_dir: Path,
        cpu_threads: int = 2,
        compute_type: str = "int8",
        vad: bool = True,
        queue_size: int = 16,
        *,
        beam_size: int = 2,
        vad_parameters: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        nice: int = 10,
    ) -> None:
        self.model_spec = model_spec
        self.cache_dir = Path(cache_dir)
        self.cpu_threads = cpu_threads
        self.compute_type = compute_type
        self.vad = vad
        self.queue_size = queue_size
        self.beam_size = beam_size
        self.vad_parameters = dict(vad_parameters) if vad_parameters else None
        self.options = dict(options) if options else {}  # more WhisperModel.transcribe keywords
        self.nice = nice  # added to the worker's niceness: transcripts wait, the bot does not
        self.resolved: ResolvedModel | None = None
        self._loaded: _Loaded | None = None
        self._process: ProcessPoolExecutor | None = None
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    # lifecycle

    async def start(self) -> None:
        if self._closed:
            raise TranscriptionError("closed", "the transcriber is closed")
        if self._worker is not None:
            return
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._worker = asyncio.create_task(self._work(), name="whisper-worker")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._queue is not None:
            self._fail_queued()
            # wake an idle worker; a full queue means it is busy and sees _closed after its job
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)
        if self._worker is not None:
            try:
                await self._worker
            except asyncio.CancelledError:
                if not self._worker.cancelled():
                    raise
            except Exception:  # pragma: no cover — the worker handles its own errors
                log.exception("whisper worker ended with an error")
        await self._stop_process()

    async def __aenter__(self) -> WhisperTranscriber:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def pending(self) -> int:
        """Jobs waiting in the queue (not counting the running one)."""
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def model_loads(self) -> int:
        """Loads of the model in the current worker process (0 before the first)."""
        return self._loaded.loads if self._loaded else 0

    @property
    def worker_pid(self) -> int | None:
        """The worker process that holds the model, once it is loaded."""
        return self._loaded.pid if self._loaded else None

    # the API

    async def load(self) -> ResolvedModel:
        """Start the worker process and load the model in it now; raises ``TranscriptionError``."""
        await self.start()
        await self._ensure_model()
        assert self.resolved is not None
        return self.resolved

    async def transcribe(self, audio: Audio, language: str | None = DEFAULT_LANGUAGE) -> Transcript:
        await self.start()
        assert self._queue is not None
        future: asyncio.Future[Transcript] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(audio, language, future))
        if self._closed and not future.done():  # aclose ran while we waited for room
            future.set_exception(TranscriptionError("closed", "the transcriber is closed"))
        return await future

    # the worker

    def _spec(self) -> _ModelSpec:
        return _ModelSpec(self.model_spec, self.cache_dir, self.compute_type, self.cpu_threads, self.vad)

    def _options(self) -> dict[str, Any]:
        return {
            "beam_size": self.beam_size,
            "vad_parameters": self.vad_parameters,
            "condition_on_previous_text": False,  # a misheard phrase does not seed a loop
            # No fallback to sampling at higher temperatures: on desk audio a window that
            # fails the thresholds is noise or far-off speech, and each retry costs a full
            # decode again (measured: RTF 0.29 with the fallback, 0.07 without, same words).
            "temperature": 0.0,
            **self.options,
        }

    async def _in_process(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` in the worker process (started on first use); a dead worker is replaced next time."""
        if self._process is None:
            # spawn, not fork: the service has threads (aiomqtt, the database driver) a fork would copy mid-lock
            self._process = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_started, initargs=(self.nice,),
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(self._process, fn, *args)
        except BrokenProcessPool as exc:
            log.error("the whisper worker process stopped: %s", exc)
            await self._stop_process()
            raise TranscriptionError("failed", f"the transcription process stopped ({exc})") from exc

    async def _stop_process(self) -> None:
        process, self._process, self._loaded = self._process, None, None
        if process is not None:  # joins the process: on a thread, not on the loop
            await asyncio.to_thread(process.shutdown, wait=True, cancel_futures=True)

    async def _ensure_model(self) -> _Loaded:
        if self._loaded is None:
            loaded: _Loaded = await self._in_process(_load_in_worker, self._spec())
            self.resolved, self._loaded = loaded.resolved, loaded
        return self._loaded

    def _fail_queued(self) -> None:
        assert self._queue is not None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if job is not None and not job.future.done():
                job.future.set_exception(TranscriptionError("closed", "the transcriber was closed before this job ran"))

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            if job is None or self._closed:
                if job is not None and not job.future.done():
                    job.future.set_exception(TranscriptionError("closed", "the transcriber was closed before this job ran"))
                self._fail_queued()
                return
            if job.future.done():  # the caller gave up (cancelled) while it waited
                continue
            try:
                loaded = await self._ensure_model()
                result = await self._in_process(
                    _transcribe_in_worker, self._spec(), loaded.resolved.path_or_name, self._options(), job.audio, job.language
                )
            except TranscriptionError as exc:
                outcome: Transcript | BaseException = exc
            except Exception as exc:
                log.exception("whisper job failed")
                outcome = TranscriptionError("failed", f"{type(exc).__name__}: {exc}")
            else:
                outcome = result
            if job.future.done():
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
