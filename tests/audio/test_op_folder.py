"""The FLAC op is built into and loaded from a private folder only, and only when its hash matches."""

import os

import pytest

from keras_dssdn.audio import native_flac


def test_folder_writable_by_others_or_symlinked_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(native_flac.UnsafeOpFolderError, match="writable by group or others"):
        native_flac._check_private(str(shared))
    link = tmp_path / "link"
    link.symlink_to(shared)
    with pytest.raises(native_flac.UnsafeOpFolderError, match="symbolic link"):
        native_flac._check_private(str(link))
    private = tmp_path / "private"
    native_flac._private_dir(str(private))
    assert (os.stat(private).st_mode & 0o777) == 0o700


def test_a_planted_or_altered_library_is_not_loaded(tmp_path):
    folder = tmp_path / "ops"
    native_flac._private_dir(str(folder))
    lib = folder / native_flac.LIBRARY_NAME
    lib.write_bytes(b"planted code")
    os.chmod(lib, 0o700)
    assert native_flac._verified_library(str(folder)) is None  # no recorded hash: never loaded
    (folder / (native_flac.LIBRARY_NAME + ".sha256")).write_text(native_flac._digest(str(lib)) + "\n")
    assert native_flac._verified_library(str(folder)) == str(lib)
    lib.write_bytes(b"altered after the build")
    assert native_flac._verified_library(str(folder)) is None  # hash differs: rebuilt, not loaded
    os.chmod(lib, 0o766)
    with pytest.raises(native_flac.UnsafeOpFolderError):
        native_flac._verified_library(str(folder))
