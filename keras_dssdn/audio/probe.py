"""Audio file headers read in Python: format, encoding, channels, rate, length, truncation.

:func:`probe_audio` reads only the header bytes (plus the tail of FLAC files to
detect truncation) when a dataset is built: it tells the decoder
(:mod:`keras_dssdn.audio.decode`) which branch to take and lets every empty,
corrupt, truncated, unsupported or too-short file be reported by name before
training starts.

Units: samples (per channel) and Hz.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import Optional

from keras_dssdn.errors import AudioFormatError, UnsupportedAudioError

#: Sample encodings the decoder understands; the index is the code passed to
#: :func:`decode_audio`.
ENCODINGS = (
    "wav_u8",
    "wav_s16",
    "wav_s24",
    "wav_s32",
    "wav_f32",
    "wav_f64",
    "flac_s16",
    "flac_s24",
)
ENCODING_CODE = {name: i for i, name in enumerate(ENCODINGS)}

_CONVERT_HINT = (
    "Convert it to 16- or 24-bit PCM WAV or FLAC, or 32-bit float WAV "
    "(e.g. `ffmpeg -i IN -c:a pcm_s16le OUT.wav` or `sox IN -b 16 OUT.flac`)"
)
_REPLACE_HINT = (
    "Re-download or re-extract the file, or remove its row from the metadata"
)


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What :func:`probe_audio` learns from a file's header.

    ``frames`` is the number of samples per channel (``None`` when a FLAC
    stream does not state it); ``data_offset`` / ``data_bytes`` locate the WAV
    ``data`` chunk (0 / -1 for FLAC).
    """

    path: str
    encoding: str
    sample_rate: int
    channels: int
    frames: Optional[int]
    data_offset: int = 0
    data_bytes: int = -1

    @property
    def encoding_code(self) -> int:
        return ENCODING_CODE[self.encoding]

    @property
    def duration(self) -> Optional[float]:
        """Length in seconds (``None`` if unknown)."""
        return None if self.frames is None else self.frames / self.sample_rate


def count_non_finite(info: AudioInfo) -> int:
    """NaN and infinite samples in a float WAV (0 for integer PCM and FLAC, which cannot hold them).

    Reads the ``data`` chunk of ``wav_f32`` / ``wav_f64`` files with NumPy; called before training so that a
    corrupt float file is named instead of turning the normalisation statistics and losses into NaN.
    """
    if info.encoding not in ("wav_f32", "wav_f64"):
        return 0
    import numpy as np

    dtype = "<f4" if info.encoding == "wav_f32" else "<f8"
    count = info.data_bytes // np.dtype(dtype).itemsize if info.data_bytes >= 0 else -1
    samples = np.fromfile(info.path, dtype=dtype, count=count, offset=info.data_offset)
    return int(samples.size - np.count_nonzero(np.isfinite(samples)))


# --------------------------------------------------------------------------
# Header probing (Python, header bytes only)
# --------------------------------------------------------------------------


def probe_audio(path: str, check_truncation: bool = True) -> AudioInfo:
    """Read the header of a WAV or FLAC file.

    Raises :class:`~keras_dssdn.errors.AudioFormatError` for an empty, corrupt
    or truncated file and :class:`~keras_dssdn.errors.UnsupportedAudioError`
    for other formats (MP3, Ogg, A-law WAV, 8-bit FLAC...), each naming the
    file and saying what to do. ``FileNotFoundError`` if it does not exist.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size == 0:
        raise AudioFormatError(f"{path}: the file is empty (0 bytes). {_REPLACE_HINT}.")
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
            if head[:4] != b"RIFF":
                raise UnsupportedAudioError(
                    f"{path}: {head[:4].decode()} WAV files are not supported. {_CONVERT_HINT}."
                )
            return _probe_wav(path, f, size)
        start = 0
        if head[:3] == b"ID3" and len(head) >= 10:
            b = head[6:10]
            start = 10 + ((b[0] << 21) | (b[1] << 14) | (b[2] << 7) | b[3])
            f.seek(start)
            head = f.read(4)
        if head[:4] == b"fLaC":
            return _probe_flac(path, f, size, start + 4, check_truncation)
    kind = _guess_format(head)
    if kind:
        raise UnsupportedAudioError(f"{path}: {kind} files are not supported. {_CONVERT_HINT}.")
    raise AudioFormatError(
        f"{path}: not a WAV or FLAC file (it starts with bytes {head[:12]!r}); it is corrupt "
        f"or in an unknown format. {_REPLACE_HINT}, or {_CONVERT_HINT[0].lower()}{_CONVERT_HINT[1:]}."
    )


def _guess_format(head: bytes) -> Optional[str]:
    if head[:4] == b"OggS":
        return "Ogg (Vorbis/Opus)"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    if head[:4] == b"FORM":
        return "AIFF"
    if head[4:8] == b"ftyp":
        return "MP4/M4A"
    if head[:4] == b".snd":
        return "Sun AU"
    return None


def _probe_wav(path, f, size) -> AudioInfo:
    fmt = None
    pos = 12
    while pos + 8 <= size:
        f.seek(pos)
        chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
        body = pos + 8
        if chunk_id == b"fmt ":
            if chunk_size < 16:
                raise AudioFormatError(f"{path}: corrupt WAV 'fmt ' chunk. {_REPLACE_HINT}.")
            fmt = f.read(min(chunk_size, 40))
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioFormatError(
                    f"{path}: WAV 'data' chunk before any 'fmt ' chunk; the file is corrupt. "
                    f"{_REPLACE_HINT}."
                )
            return _wav_info(path, fmt, body, chunk_size, size)
        pos = body + chunk_size + (chunk_size & 1)
    if fmt is None:
        raise AudioFormatError(f"{path}: WAV file without a 'fmt ' chunk; it is corrupt or truncated. {_REPLACE_HINT}.")
    raise AudioFormatError(f"{path}: WAV file without a 'data' chunk; it is corrupt or truncated. {_REPLACE_HINT}.")


_WAV_TAGS = {1: "PCM", 3: "IEEE float", 2: "MS ADPCM", 6: "A-law", 7: "mu-law", 0x11: "IMA ADPCM", 0x55: "MP3"}


def _wav_info(path, fmt, data_offset, data_bytes, size) -> AudioInfo:
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: sub-format GUID
        tag = struct.unpack("<H", fmt[24:26])[0]
    if channels == 0 or rate == 0:
        raise AudioFormatError(f"{path}: WAV header says {channels} channels at {rate} Hz; the file is corrupt. {_REPLACE_HINT}.")
    encoding = None
    if tag == 1:
        encoding = {8: "wav_u8", 16: "wav_s16", 24: "wav_s24", 32: "wav_s32"}.get(bits)
    elif tag == 3:
        encoding = {32: "wav_f32", 64: "wav_f64"}.get(bits)
    if encoding is None:
        name = _WAV_TAGS.get(tag, f"format tag 0x{tag:04x}")
        raise UnsupportedAudioError(f"{path}: {bits}-bit {name} WAV is not supported. {_CONVERT_HINT}.")
    if block_align != channels * bits // 8:
        raise AudioFormatError(
            f"{path}: WAV header is inconsistent (block align {block_align} for {channels} x {bits}-bit); "
            f"the file is corrupt. {_REPLACE_HINT}."
        )
    available = size - data_offset
    if data_bytes in (0, 0xFFFFFFFF):  # streamed WAV whose writer never filled in the size
        data_bytes = available
    if available // block_align < data_bytes // block_align:
        raise AudioFormatError(
            f"{path}: WAV file is truncated: its header announces {data_bytes // block_align} samples "
            f"but only {available // block_align} are present. {_REPLACE_HINT}."
        )
    frames = data_bytes // block_align
    if frames == 0:
        raise AudioFormatError(f"{path}: WAV file contains no audio samples. {_REPLACE_HINT}.")
    return AudioInfo(path, encoding, rate, channels, frames, data_offset, frames * block_align)


def _probe_flac(path, f, size, pos, check_truncation) -> AudioInfo:
    streaminfo = None
    last = False
    while not last:
        f.seek(pos)
        hdr = f.read(4)
        if len(hdr) < 4:
            raise AudioFormatError(f"{path}: FLAC metadata is truncated. {_REPLACE_HINT}.")
        last = bool(hdr[0] & 0x80)
        block_type = hdr[0] & 0x7F
        length = int.from_bytes(hdr[1:4], "big")
        if block_type == 0:
            streaminfo = f.read(34)
            if length != 34 or len(streaminfo) < 34:
                raise AudioFormatError(f"{path}: corrupt FLAC STREAMINFO block. {_REPLACE_HINT}.")
        elif streaminfo is None or block_type == 127:
            raise AudioFormatError(f"{path}: corrupt FLAC header (no STREAMINFO first). {_REPLACE_HINT}.")
        pos += 4 + length
        if pos > size:
            raise AudioFormatError(f"{path}: FLAC metadata runs past the end of the file; it is truncated. {_REPLACE_HINT}.")
    min_bs, max_bs = struct.unpack(">HH", streaminfo[:4])
    max_frame = int.from_bytes(streaminfo[7:10], "big")
    packed = int.from_bytes(streaminfo[10:18], "big")
    rate = packed >> 44
    channels = ((packed >> 41) & 0x7) + 1
    bits = ((packed >> 36) & 0x1F) + 1
    total = packed & ((1 << 36) - 1)
    if rate == 0:
        raise AudioFormatError(f"{path}: FLAC STREAMINFO has a sample rate of 0; the file is corrupt. {_REPLACE_HINT}.")
    encoding = {16: "flac_s16", 24: "flac_s24"}.get(bits)
    if encoding is None:
        raise UnsupportedAudioError(f"{path}: {bits}-bit FLAC is not supported. {_CONVERT_HINT}.")
    if pos >= size:
        raise AudioFormatError(f"{path}: FLAC file has no audio frames (truncated). {_REPLACE_HINT}.")
    if check_truncation and total > 0:
        _check_flac_tail(path, f, size, pos, total, min_bs, max_bs, max_frame)
    return AudioInfo(path, encoding, rate, channels, total if total > 0 else None)


def _crc_table(poly: int, width: int):
    top, mask = 1 << (width - 1), (1 << width) - 1
    table = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) if crc & top else (crc << 1)
        table.append(crc & mask)
    return table


_CRC8 = _crc_table(0x07, 8)
_CRC16 = _crc_table(0x8005, 16)


def _crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = _CRC8[crc ^ b]
    return crc


def _crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ b]
    return crc


def _parse_flac_frame_header(buf: bytes, i: int):
    """(first_sample_or_frame_number, block_size, variable, header_len) or None."""
    if i + 6 > len(buf):
        return None
    b1, b2, b3 = buf[i + 1], buf[i + 2], buf[i + 3]
    variable = b1 & 1
    bs_code, sr_code = b2 >> 4, b2 & 0xF
    if bs_code == 0 or sr_code == 15 or (b3 >> 4) > 10 or (b3 >> 1) & 7 == 3 or b3 & 1:
        return None
    j = i + 4
    first = buf[j]
    for extra, prefix_mask, prefix in ((0, 0x80, 0x00), (1, 0xE0, 0xC0), (2, 0xF0, 0xE0), (3, 0xF8, 0xF0),
                                       (4, 0xFC, 0xF8), (5, 0xFE, 0xFC), (6, 0xFF, 0xFE)):
        if first & prefix_mask == prefix:
            n = first & (~prefix_mask & 0xFF)
            break
    else:
        return None
    if j + 1 + extra > len(buf):
        return None
    for k in range(1, extra + 1):
        c = buf[j + k]
        if c & 0xC0 != 0x80:
            return None
        n = (n << 6) | (c & 0x3F)
    j += 1 + extra
    if bs_code == 1:
        bs = 192
    elif bs_code <= 5:
        bs = 576 << (bs_code - 2)
    elif bs_code == 6:
        if j + 1 > len(buf):
            return None
        bs = buf[j] + 1
        j += 1
    elif bs_code == 7:
        if j + 2 > len(buf):
            return None
        bs = int.from_bytes(buf[j:j + 2], "big") + 1
        j += 2
    else:
        bs = 256 << (bs_code - 8)
    if sr_code == 12:
        j += 1
    elif sr_code in (13, 14):
        j += 2
    if j + 1 > len(buf) or _crc8(buf[i:j]) != buf[j]:
        return None
    return n, bs, variable, j + 1 - i


def _check_flac_tail(path, f, size, audio_start, total, min_bs, max_bs, max_frame):
    """Raise AudioFormatError unless the last FLAC frame is whole and ends the stream."""
    end = size
    f.seek(max(audio_start, size - 128))
    tail128 = f.read()
    if size - audio_start > 128 and tail128[:3] == b"TAG":  # ID3v1 tag at the end
        end = size - 128
    span = max(2 * max_frame + 1024, 1 << 14) if max_frame else 1 << 20
    start = max(audio_start, end - span)
    f.seek(start)
    buf = f.read(end - start)
    i = len(buf) - 2
    while i >= 0:
        i = buf.rfind(b"\xff", 0, i + 1)
        if i < 0:
            break
        if buf[i + 1] in (0xF8, 0xF9):
            parsed = _parse_flac_frame_header(buf, i)
            if parsed is not None:
                n, bs, variable, _ = parsed
                if len(buf) - i >= 2 and _crc16(buf[i:-2]) == int.from_bytes(buf[-2:], "big"):
                    first_sample = n if variable else n * max_bs
                    if first_sample + bs >= total:
                        return
                    raise AudioFormatError(
                        f"{path}: FLAC file is truncated: its audio ends at sample {first_sample + bs} "
                        f"of the {total} announced in its header. {_REPLACE_HINT}."
                    )
        i -= 1
    raise AudioFormatError(
        f"{path}: FLAC file is truncated or corrupt (its last frame is incomplete or fails its "
        f"checksum). {_REPLACE_HINT}."
    )
