"""Atomic file writing.

Outputs (images, result tables, JSON summaries) are first written to a temporary file in the
destination folder and then moved into place with :func:`os.replace`, so that a reader never sees
a half-written file and an interrupted run never leaves a truncated output behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "make_folder",
           "temporary_path"]

# Temporary files start with a dot so that folder listings (see ``list_images``) skip them.
_TMP_SUFFIX = ".tmp"


def _open_temp(folder: Path, name: str) -> tuple[int, Path]:
    # os.open with mode 0o666 honours the umask, whereas tempfile.mkstemp would always create
    # the file with mode 0o600 and the final image would end up unreadable by other users.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(4)}{_TMP_SUFFIX}"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as err:  # read-only or full: say where, not the temporary name
            raise type(err)(err.errno, f"cannot write into the folder ({err.strerror})",
                            str(folder)) from None
    raise FileExistsError(errno.EEXIST, "could not create a temporary file", str(folder))


def temporary_path(path: str | os.PathLike[str]) -> Path:
    """A new, empty, hidden file next to ``path`` (``.NAME.XXXXXXXX.tmp``, a name no other
    call gets) for a writer that needs a file name, to be moved onto ``path`` with
    ``os.replace`` when complete, or removed. Missing parent folders are created; a file in
    the way of one is named in the error."""
    path = Path(path)
    fd, tmp = _open_temp(make_folder(path.parent), path.name)
    os.close(fd)
    return tmp


def make_folder(folder: str | os.PathLike[str]) -> Path:
    """``folder``, created with its missing parents; a NotADirectoryError naming the file in
    the way where ``folder`` or one of its parents is a file."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        # mkdir names only the last part; the file in the way may be any parent.
        blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()),
                        folder)
        raise NotADirectoryError(
            errno.ENOTDIR, f"cannot create the folder {folder}: {blocking} is a file", str(folder)
        ) from None
    return folder


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    binary: bool = True,
    encoding: str = "utf-8",
) -> Iterator[IO]:
    """Open a temporary file next to ``path`` and move it onto ``path`` on success.

    Missing parent folders are created. If the ``with`` block raises, the temporary file is
    removed and ``path`` is left untouched.

    Args:
        path: Final destination.
        overwrite: If False and ``path`` already exists, raise :class:`FileExistsError` naming it
            (checked both before writing and just before the final move).
        binary: Yield a binary file object (default) or a text one.
        encoding: Text encoding when ``binary`` is False.

    Yields:
        A writable file object.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(
            errno.EEXIST, "file exists (pass overwrite=True to replace it)", str(path)
        )
    tmp = temporary_path(path)
    try:
        # Reopened by name (not os.fdopen) so that f.name is a path: tifffile needs one.
        if binary:
            f: IO = open(tmp, "wb")  # noqa: SIM115
        else:
            f = open(tmp, "w", encoding=encoding, newline="")  # noqa: SIM115
        with f:
            yield f
            f.flush()
            # fsync so that a crash right after os.replace cannot leave an empty file in place.
            os.fsync(f.fileno())
        if not overwrite and path.exists():
            raise FileExistsError(
                errno.EEXIST, "file exists (pass overwrite=True to replace it)", str(path)
            )
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False
) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, overwrite=overwrite) as f:
        f.write(data)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, overwrite: bool = False, encoding: str = "utf-8"
) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, overwrite=overwrite, binary=False, encoding=encoding) as f:
        f.write(text)
