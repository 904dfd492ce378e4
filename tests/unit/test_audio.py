"""Audio bytes: Ogg/Opus round trip, WAV and MP3 input, and every way a payload can be bad."""

from __future__ import annotations

import io
import pickle
from fractions import Fraction

import av
import numpy as np
import pytest

from speech.audio import AudioError, decode_pcm, duration_of, encode_ogg_opus, encode_wav, probe

RATE = 16_000


def tone(freq: float, seconds: float, rate: int = RATE) -> np.ndarray:
    n = round(seconds * rate)
    return (np.sin(2 * np.pi * freq * np.arange(n) / rate) * 8000).astype(np.int16)


def encode_with(fmt: str, codec: str, pcm: np.ndarray, rate: int = RATE) -> bytes:
    """A file made by FFmpeg's own muxer and encoder, as a recorder would."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buf.getvalue()


def has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def speechlike() -> np.ndarray:
    """3 s of a tone sweep with pauses: something Opus must actually code."""
    t = np.arange(3 * RATE) / RATE
    signal = np.sin(2 * np.pi * (300 + 200 * t) * t) * (np.sin(2 * np.pi * 1.5 * t) > -0.3)
    return (signal * 9000).astype(np.int16)


@pytest.fixture(scope="module")
def ogg(speechlike: np.ndarray) -> bytes:
    return encode_ogg_opus(speechlike)


# --- Ogg/Opus out, and back in -------------------------------------------------------------


def test_ogg_opus_is_a_telegram_voice_note(ogg: bytes) -> None:
    info = probe(ogg)
    assert ogg[:4] == b"OggS" and b"OpusHead" in ogg[:100]
    assert (info.container, info.codec, info.sample_rate, info.channels) == ("ogg", "opus", 48_000, 1)


def test_ogg_opus_duration_is_within_20_ms(ogg: bytes) -> None:
    assert abs(probe(ogg).duration_s - 3.0) <= 0.020
    assert abs(duration_of(ogg) - 3.0) <= 0.020


def test_ogg_opus_decodes_to_the_same_number_of_samples(ogg: bytes, speechlike: np.ndarray) -> None:
    pcm = decode_pcm(ogg)
    assert (pcm.dtype, pcm.ndim, pcm.size) == (np.dtype(np.int16), 1, speechlike.size)


def test_ogg_opus_keeps_the_sound(ogg: bytes, speechlike: np.ndarray) -> None:
    pcm = decode_pcm(ogg).astype(np.float64)
    ref = speechlike.astype(np.float64)
    correlation = float(np.dot(pcm, ref) / np.sqrt(np.dot(pcm, pcm) * np.dot(ref, ref)))
    assert correlation > 0.9


def test_ogg_opus_decodes_at_any_rate(ogg: bytes) -> None:
    assert decode_pcm(ogg, rate=8000).size == 3 * 8000
    assert decode_pcm(ogg, rate=48_000).size == 3 * 48_000


def test_ogg_opus_bitrate_is_roughly_the_asked_one(speechlike: np.ndarray) -> None:
    low, high = encode_ogg_opus(speechlike, bitrate=12_000), encode_ogg_opus(speechlike, bitrate=48_000)
    assert len(low) * 8 / 3 < 20_000 < len(high) * 8 / 3


def test_ogg_cut_from_a_longer_stream_starts_at_its_first_sample() -> None:
    # a recorder that splits one continuous stream into files: granules do not restart at 0
    pcm = tone(440, 3.0)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, 60 * RATE, Fraction(1, RATE)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    assert abs(probe(buf.getvalue()).duration_s - 3.0) <= 0.020
    assert decode_pcm(buf.getvalue()).size == pcm.size


def test_odd_lengths_and_rates_round_trip_to_the_sample() -> None:
    pcm = tone(500, 1.2345, rate=8000)
    assert decode_pcm(encode_ogg_opus(pcm, rate=8000), rate=8000).size == pcm.size


def test_float_pcm_is_accepted() -> None:
    pcm = tone(500, 0.5).astype(np.float32) / 32768
    assert decode_pcm(encode_ogg_opus(pcm)).size == pcm.size


def test_encoding_nothing_is_empty() -> None:
    with pytest.raises(AudioError) as err:
        encode_ogg_opus(np.zeros(0, dtype=np.int16))
    assert err.value.reason == "empty"


def test_stereo_pcm_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_ogg_opus(np.zeros((2, 100), dtype=np.int16))


# --- other inputs ----------------------------------------------------------------------------


def test_wav_round_trip_is_lossless() -> None:
    pcm = tone(440, 1.0)
    wav = encode_wav(pcm, RATE)
    info = probe(wav)
    assert (info.container, info.codec, info.sample_rate, info.channels, info.duration_s) == (
        "wav", "pcm_s16le", RATE, 1, 1.0
    )
    assert np.array_equal(decode_pcm(wav), pcm)


def test_stereo_44k_wav_is_mixed_to_mono_16k() -> None:
    left = tone(440, 1.0, rate=44_100)
    buf = io.BytesIO()
    import wave

    with wave.open(buf, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44_100)
        out.writeframes(np.stack([left, left], axis=1).tobytes())
    info = probe(buf.getvalue())
    pcm = decode_pcm(buf.getvalue())
    assert (info.channels, info.sample_rate) == (2, 44_100)
    assert abs(pcm.size - RATE) <= 1


@pytest.mark.skipif(not has_encoder("libmp3lame"), reason="this FFmpeg build has no MP3 encoder")
def test_mp3_decodes_to_the_right_length() -> None:
    mp3 = encode_with("mp3", "libmp3lame", tone(440, 2.0))
    info = probe(mp3)
    assert (info.container, info.codec) == ("mp3", "mp3")
    assert abs(info.duration_s - 2.0) <= 0.05
    assert abs(decode_pcm(mp3).size - 2 * RATE) <= 0.03 * RATE  # the MP3 frame grid: ±30 ms


def test_flac_in_ogg_states_its_duration() -> None:
    assert probe(encode_with("ogg", "flac", tone(440, 1.5))).duration_s == 1.5


def test_webm_opus_from_a_browser_recorder_decodes() -> None:
    webm = encode_with("webm", "libopus", tone(440, 1.0, rate=48_000), rate=48_000)
    assert abs(decode_pcm(webm).size - RATE) <= 0.02 * RATE


# --- bad payloads ----------------------------------------------------------------------------


def reason_of(data: bytes) -> str:
    with pytest.raises(AudioError) as err:
        decode_pcm(data)
    with pytest.raises(AudioError) as err_probe:
        probe(data)
    assert err_probe.value.reason == err.value.reason  # probe and decode agree on bad input
    return err.value.reason


def test_random_bytes_are_corrupt() -> None:
    assert reason_of(np.random.default_rng(7).bytes(5000)) == "corrupt"


def test_an_ogg_header_with_garbage_after_it_is_corrupt(ogg: bytes) -> None:
    assert reason_of(ogg[:60] + np.random.default_rng(8).bytes(4000)) == "corrupt"


def test_no_bytes_are_empty() -> None:
    assert reason_of(b"") == "empty"


def test_a_wav_header_without_samples_is_empty() -> None:
    assert reason_of(encode_wav(np.zeros(0, dtype=np.int16), RATE)) == "empty"


def test_a_json_payload_is_unsupported_and_says_it_is_text() -> None:
    with pytest.raises(AudioError) as err:
        decode_pcm(b'{"id": "r-1", "ts": 1741597199000, "value": "bad"}')
    assert err.value.reason == "unsupported_codec"
    assert "text" in err.value.detail


def test_a_video_only_file_is_unsupported_and_says_so() -> None:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(AudioError) as err:
        decode_pcm(buf.getvalue())
    assert err.value.reason == "unsupported_codec"
    assert "no audio stream" in err.value.detail and "video" in err.value.detail


def test_a_container_off_the_whitelist_is_unsupported() -> None:
    au = encode_with("au", "pcm_s16be", tone(440, 0.5))  # Sun .au: FFmpeg reads it, we do not
    assert reason_of(au) == "unsupported_codec"


def test_a_script_naming_other_files_is_never_followed() -> None:
    # FFmpeg recognises an ffconcat script by its content; the whitelist refuses the demuxer
    with pytest.raises(AudioError) as err:
        decode_pcm(b"ffconcat version 1.0\nfile /etc/passwd\n")
    assert (err.value.reason, "not accepted" in err.value.detail) == ("unsupported_codec", True)


def test_truncated_ogg_decodes_its_prefix(speechlike: np.ndarray) -> None:
    long = np.tile(speechlike, 3)  # 9 s
    data = encode_ogg_opus(long)
    pcm = decode_pcm(data[: len(data) // 2 + 37])  # cut mid-page
    assert 3 * RATE < pcm.size < 6 * RATE
    assert probe(data[: len(data) // 2 + 37]).codec == "opus"


def test_a_damaged_ogg_page_becomes_silence_and_later_audio_keeps_its_time(speechlike: np.ndarray) -> None:
    data = bytearray(encode_ogg_opus(speechlike))
    data[len(data) // 2 : len(data) // 2 + 300] = np.random.default_rng(9).bytes(300)  # a middle page
    clean, damaged = decode_pcm(encode_ogg_opus(speechlike)), decode_pcm(bytes(data))
    assert damaged.size == speechlike.size
    nonzero = np.flatnonzero(np.concatenate([[1], damaged, [1]]))
    longest_silence = (np.max(np.diff(nonzero)) - 1) / RATE
    assert longest_silence >= 0.5  # the lost page (about a second at this bitrate)
    tail_c, tail_d = clean[-RATE:].astype(float), damaged[-RATE:].astype(float)
    assert np.dot(tail_c, tail_d) / np.sqrt(np.dot(tail_c, tail_c) * np.dot(tail_d, tail_d)) > 0.9


def test_truncated_wav_decodes_its_prefix() -> None:
    pcm = tone(440, 1.0)
    wav = encode_wav(pcm, RATE)
    assert np.array_equal(decode_pcm(wav[: 44 + 2 * 4000 + 1]), pcm[:4000])


def test_too_long_is_refused_before_decoding() -> None:
    wav = encode_wav(tone(440, 2.0), RATE)
    for call in (probe, decode_pcm):
        with pytest.raises(AudioError) as err:
            call(wav, max_duration_s=1.5)
        assert err.value.reason == "too_long"


def test_audio_error_survives_a_process_pool() -> None:
    err = pickle.loads(pickle.dumps(AudioError("corrupt", "nothing decodes")))
    assert (err.reason, err.detail, str(err)) == ("corrupt", "nothing decodes", "corrupt: nothing decodes")


def test_an_unknown_reason_is_a_bug() -> None:
    with pytest.raises(ValueError):
        AudioError("bad", "x")  # type: ignore[arg-type]
