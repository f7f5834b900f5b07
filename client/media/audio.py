"""``Audio``: wandb's ``wandb.Audio(data_or_path, sample_rate=None, caption=None)``.

Arrays: 1-D (mono) or 2-D frames × channels (1 to 8 channels); a 2-D array with at most 8
rows and more columns than rows is read as channels × frames (torchaudio's layout) and
transposed. ``sample_rate`` (Hz, an int from 1 to 768000) is required for arrays. Encoded
on the I/O thread as WAV with the standard library's ``wave`` module:

* floats: clipped to [-1, 1] and written as 16-bit PCM (x · 32767, rounded); NaN → 0;
* int16 as is (16-bit), int32 as is (32-bit), uint8 as is (8-bit, unsigned as WAV stores it);
  other integer types are refused at construction.

Paths (wav, mp3, flac, ogg, m4a, aac) are sent byte for byte; for WAV files the sample rate,
channels and duration are read from the header.

Wire: ``{"_type": "audio", "format": "wav", "sha256", "size", "bytes", "caption",
"sample_rate", "channels", "duration"}`` (seconds; the last three when known).
"""

from __future__ import annotations

import io
import os
import wave
from typing import Any

import numpy as np

from client.errors import InvalidArgumentError
from client.media._arrays import array_copy, check_numeric
from client.media._base import MAX_MEDIA_BYTES, Media, check_caption, extension, payload, read_path

FILE_FORMATS = ("wav", "mp3", "flac", "ogg", "m4a", "aac")
MAX_CHANNELS = 8


def samples_from_array(data: Any, arg: str = "data_or_path") -> np.ndarray:
    arr = array_copy(data, arg)
    check_numeric(arr, arg)
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim == 2:
        if arr.shape[1] > MAX_CHANNELS and arr.shape[0] <= MAX_CHANNELS:
            arr = arr.T  # channels × frames
    else:
        raise InvalidArgumentError(f"{arg}: audio must be 1-D (mono) or 2-D (frames × channels), got shape {arr.shape}")
    if arr.shape[1] > MAX_CHANNELS or arr.shape[1] == 0:
        raise InvalidArgumentError(f"{arg}: {arr.shape[1]} channels; audio may have 1 to {MAX_CHANNELS}")
    if arr.dtype.kind in "iu" and arr.dtype not in (np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.uint8)):
        raise InvalidArgumentError(
            f"{arg}: integer audio must be int16, int32 or uint8 PCM (or float in [-1, 1]), got {arr.dtype}"
        )
    if arr.dtype.kind == "b":
        raise InvalidArgumentError(f"{arg}: boolean arrays are not audio")
    if arr.nbytes > 4 * MAX_MEDIA_BYTES:
        raise InvalidArgumentError(f"{arg}: {arr.nbytes} bytes of samples is more than the limit of one media item")
    return np.ascontiguousarray(arr)


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """frames × channels samples → WAV file bytes (PCM, little-endian, interleaved)."""
    if samples.dtype.kind == "f":
        x = np.nan_to_num(samples.astype(np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
        pcm = np.rint(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")
    else:
        pcm = samples.astype(samples.dtype.newbyteorder("<"), copy=False)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(pcm.dtype.itemsize)
        w.setframerate(sample_rate)
        w.writeframes(np.ascontiguousarray(pcm).tobytes())
    return buf.getvalue()


def wav_info(data: bytes) -> tuple[int, int, float] | None:
    """(sample_rate, channels, duration in s) of WAV bytes, or None if not a readable WAV."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            rate, channels, frames = w.getframerate(), w.getnchannels(), w.getnframes()
    except (wave.Error, EOFError, ValueError):
        return None
    return rate, channels, frames / rate if rate else 0.0


class Audio(Media):
    """Audio from a sample array (WAV, encoded on the I/O thread) or a file."""

    _type = "audio"

    def __init__(self, data_or_path: Any, sample_rate: int | None = None, caption: str | None = None) -> None:
        self.caption = check_caption(caption)
        self._samples: np.ndarray | None = None
        self._file: bytes | None = None
        if sample_rate is not None:
            if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
                raise InvalidArgumentError(f"sample_rate must be an int (Hz), got {sample_rate!r}")
            if not 1 <= int(sample_rate) <= 768_000:
                raise InvalidArgumentError(f"sample_rate={sample_rate} must be from 1 to 768000 Hz")
            sample_rate = int(sample_rate)
        self.sample_rate = sample_rate
        if isinstance(data_or_path, (str, os.PathLike)):
            fmt = extension(data_or_path)
            if fmt not in FILE_FORMATS:
                raise InvalidArgumentError(f"data_or_path={data_or_path!r}: audio files must be one of {FILE_FORMATS}")
            self._file = read_path(data_or_path, "data_or_path")
            self.format = fmt
            return
        if sample_rate is None:
            raise InvalidArgumentError("sample_rate is required when data_or_path is an array of samples")
        self.format = "wav"
        self._samples = samples_from_array(data_or_path)

    def _nbytes_hint(self) -> int:
        if self._file is not None:
            return len(self._file) + 256
        if self._samples is not None:
            n = self._samples.size * (2 if self._samples.dtype.kind == "f" else self._samples.dtype.itemsize)
            return min(n, MAX_MEDIA_BYTES) + 256
        return 256

    def _encode(self) -> dict:
        if self._file is not None:
            data = self._file
            info = wav_info(data) if self.format == "wav" else None
        else:
            assert self._samples is not None and self.sample_rate is not None
            data = encode_wav(self._samples, self.sample_rate)
            info = (self.sample_rate, self._samples.shape[1], self._samples.shape[0] / self.sample_rate)
        rate, channels, duration = info if info else (self.sample_rate, None, None)
        return payload("audio", self.format, data, self.caption, sample_rate=rate, channels=channels, duration=duration)

    def _release(self) -> None:
        self._samples = self._file = None
