"""Exceptions for bad input data.

Every error raised by the data side of the package (readers, audio probing,
the pipeline) derives from :class:`DataError` (a ``ValueError``) and carries a
message that names the file, the row or the value at fault and says what to do.
They are raised while a dataset is being *built*, before training starts,
whenever the problem can be seen then.
"""

from __future__ import annotations


class DataError(ValueError):
    """Base class: something in the user's data or metadata is wrong."""


class MetadataError(DataError):
    """A metadata / fold CSV is malformed (missing column, wrong field count...)."""


class UnknownLabelError(DataError):
    """A label is not in the label vocabulary the dataset is encoded with."""


class MissingAudioError(DataError, FileNotFoundError):
    """Files listed in the metadata do not exist."""


class AudioFormatError(DataError):
    """An audio file is empty, corrupt or truncated."""


class UnsupportedAudioError(AudioFormatError):
    """An audio file is valid but in a format the TF decoders do not read."""


class ShortClipError(DataError):
    """A clip is shorter than the fixed length the pipeline crops / pads to."""
