"""What every command line shares: quiet TensorFlow start-up, and one message (no traceback) for a user's error.

:func:`run_command` calls a command's body and maps what a user's input can
cause to one line on standard error and an exit status:

====  ==========================================================================
0     success
1     a bug (the traceback is printed, with a line saying so) or, for predict, a file that failed
2     a configuration value or command-line argument (:class:`~keras_dssdn.errors.ConfigError`), a missing path
3     data: audio files, metadata, labels (:class:`~keras_dssdn.errors.DataError`)
4     a run folder, checkpoint or model file (:class:`~keras_dssdn.errors.RunFolderError`)
5     an impossible complexity budget (:class:`~keras_dssdn.errors.BudgetError`)
6     export: conversion or verification (:class:`~keras_dssdn.errors.ExportError`)
130   interrupted (Ctrl-C); what was written so far is kept (training resumes with ``--resume``)
====  ==========================================================================
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, Optional


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up lines (CUDA probing, oneDNN notices) off the terminal; a user's own
    ``TF_CPP_MIN_LOG_LEVEL`` wins. Effective only before TensorFlow is first imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def user_error_code(error: BaseException) -> Optional[int]:
    """The exit status for an error a user's input caused, or None for a bug."""
    from keras_dssdn.errors import DSSDNError

    if isinstance(error, DSSDNError):
        return error.exit_code
    if isinstance(error, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)):
        return 2
    return None


def format_error(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{error.filename}: {text}"
    return f"error: {text}"


def run_command(body: Callable[[], int]) -> int:
    """``body()``'s exit status; a user's error becomes one ``error: ...`` line and its status (see above)."""
    try:
        return int(body() or 0)
    except KeyboardInterrupt:
        print("interrupted; files written so far are kept.", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - sorted into user errors and bugs below
        code = user_error_code(e)
        if code is None:
            traceback.print_exc()
            print("This is a bug in keras_dssdn, not in your input: please report it with the traceback above.",
                  file=sys.stderr)
            return 1
        print(format_error(e), file=sys.stderr)
        return code
