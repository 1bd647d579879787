"""Every exception a user's input can cause, in one place.

Each class derives from :class:`DSSDNError`, so a command line can turn any of
them into one message and an exit status (:mod:`keras_dssdn.cli.common`)
while a bug still shows its traceback. Messages name the file, key or value at
fault and say what to do. ``docs/errors.md`` lists when each is raised.

Families (exit status of the commands in brackets):

* :class:`DataError` (``ValueError``) [3]: audio files, metadata, labels.
* :class:`ConfigError` (``ValueError``) [2]: a configuration key or value,
  a command-line argument, settings that do not fit together.
* :class:`RunFolderError` [4]: a run folder, checkpoint or saved model that
  cannot be read or resumed.
* :class:`BudgetError` (``ValueError``) [5]: a complexity budget no
  configuration can meet.
* :class:`ExportError` [6]: conversion, verification or bundle writing.
"""

from __future__ import annotations


class DSSDNError(Exception):
    """Base class of every error the package raises for a user's input."""

    exit_code = 1


# ---------------------------------------------------------------------------- data


class DataError(DSSDNError, ValueError):
    """Base class: something in the user's data or metadata is wrong."""

    exit_code = 3


class MetadataError(DataError):
    """A metadata / fold CSV is malformed (missing column, wrong field count...)."""


class TeacherLogitsError(DataError):
    """Teacher logits that do not fit the student's data: clips missing from the file, other classes or class
    order, another segment layout, another dataset; a teacher model with other labels; a malformed logits file."""


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


class ImpulseResponseError(DataError):
    """An impulse-response folder or file that cannot be used (empty folder, too long, silent, non-finite)."""


# ---------------------------------------------------------------------------- configuration


class ConfigError(DSSDNError, ValueError):
    """A configuration key or value that does not exist or does not fit."""

    exit_code = 2


class SearchSettingsError(ConfigError):
    """A search folder that holds a search with other settings, or settings that do not fit together."""


class DistributeError(DSSDNError, RuntimeError):
    """A strategy that cannot be set up here (devices already initialised, bad TF_CONFIG, a failed peer)."""

    exit_code = 2


# ---------------------------------------------------------------------------- run folders and models


class RunFolderError(DSSDNError, RuntimeError):
    """A run folder, checkpoint or model file that is missing, corrupt or not what it should be."""

    exit_code = 4


class ResumeError(RunFolderError):
    """A run folder that cannot be resumed (corrupt checkpoint, other labels, ...)."""


class ModelFileError(RunFolderError, ValueError):
    """A model file that does not exist, is not a Keras / TFLite model, or cannot be loaded."""


class DamagedFileError(RunFolderError, ValueError):
    """A file the package reads (JSON, NPZ, a TFLite flatbuffer) that is truncated, bit-flipped or of another kind
    (raised by :func:`keras_dssdn.fileio.reading`, naming the file and what to do)."""


class BundleIntegrityError(ModelFileError):
    """An export bundle whose files differ from its ``manifest.json`` (edited, damaged, missing) or that has no
    manifest (:func:`keras_dssdn.manifest.verify_bundle`)."""


class OutputPathError(ConfigError):
    """An output path that would overwrite one of the command's own inputs, replace a file of another kind, or
    replace a folder the package did not write."""


# ---------------------------------------------------------------------------- budgets


class BudgetError(DSSDNError, ValueError):
    """No configuration of the search space fits the budget (raised before any data is decoded)."""

    exit_code = 5


# ---------------------------------------------------------------------------- export


class ExportError(DSSDNError, RuntimeError):
    """Base class of everything that makes an export fail."""

    exit_code = 6


class UnsupportedOperatorError(ExportError):
    """The model uses an operator the TensorFlow Lite Micro interpreter does not have."""


class FrontEndError(ExportError, ValueError):
    """The model's front end cannot be generated as C (FFT size not a power of two, a segment shorter than the
    reflect padding, ...): raised before anything is converted or written."""


class VerificationError(ExportError):
    """A check that every export runs (bit-exactness, float parity, accuracy bound) failed."""


class RepresentativeDataError(ExportError, ValueError):
    """The representative (calibration) data is empty or does not fit the model input."""


class BundleExistsError(ExportError, FileExistsError):
    """The bundle folder exists and ``force`` was not given."""


class QATError(ExportError):
    """Quantisation-aware training could not be set up or failed."""
