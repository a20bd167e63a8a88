"""Atomic files and folders: write under a temporary name next to the destination, then rename.

See :mod:`svseg.io` for the guarantees (atomic replace, no temporary left behind, permissions).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["PathLike", "atomic_write", "atomic_path", "AtomicDirectory"]

PathLike = str | os.PathLike

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def _fsync_dir(directory: Path) -> None:
    """Flush a directory entry (a rename) to disk where the platform allows it."""
    if os.name != "posix":
        return
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _destination(path: PathLike) -> Path:
    """The destination as a :class:`Path`, checked to name a file; its folder is created."""
    path = Path(path)
    if str(path) == "" or path.name == "":
        raise ValueError(f"path must name a file, got {str(path)!r}.")
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is an existing directory, expected a file path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _create_temp(path: Path, suffix: str) -> tuple[int, Path]:
    """Create ``.<name>.<random>.tmp<suffix>`` next to ``path``; return ``(fd, temp path)``.

    ``os.open`` with mode 0o666 lets the kernel apply the umask, so the file gets the permissions
    any new file would get (``tempfile.mkstemp`` would give 0600).
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")
        try:
            return os.open(str(tmp), _CREATE_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}.")


def _commit(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def _removed_on_error(tmp: Path) -> Iterator[None]:
    """Delete ``tmp`` if the block raises (anything, ``KeyboardInterrupt`` included), then re-raise."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    For writers that insist on opening the file themselves (nibabel, h5py). The temporary name
    keeps the destination's suffixes (``suffix`` overrides them) so that writers which pick the
    format from the extension (``.nii.gz``) still work. The file exists (empty) when the body
    starts; the body may truncate or replace it.

    Args:
        path: destination file; its parent folder is created if needed.
        suffix: suffix of the temporary file, default the destination's full suffix.

    Raises:
        ValueError: if ``path`` is empty or an existing directory.
        FileNotFoundError: if the body removed the temporary file without writing it again.
    """
    path = _destination(path)
    if suffix is None:
        suffix = "".join(path.suffixes)
    fd, tmp = _create_temp(path, suffix)
    os.close(fd)
    with _removed_on_error(tmp):
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"the writer did not create the temporary file {tmp} for {path}.")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _commit(tmp, path)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", encoding: str | None = None, newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing; rename it over ``path`` on success.

    The data are flushed and ``fsync``-ed before the rename, and the folder entry is synced after
    it. If the body of the ``with`` block raises, the temporary file is deleted and ``path`` is
    left untouched.

    Args:
        path: destination file; its parent folder is created if needed.
        mode: ``"w"``/``"wt"`` (text) or ``"wb"`` (binary).
        encoding: text encoding (text mode only), default UTF-8.
        newline: passed to :func:`open` in text mode (use ``""`` for the csv module).

    Raises:
        ValueError: if ``mode`` is not a write mode or ``path`` is not a file path.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"mode must be 'w', 'wt' or 'wb', got {mode!r}.")
    path = _destination(path)
    fd, tmp = _create_temp(path, "")
    with _removed_on_error(tmp):
        try:
            f = os.fdopen(fd, "wb") if "b" in mode else os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        except BaseException:
            os.close(fd)
            raise
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _commit(tmp, path)


class AtomicDirectory:
    """Build a folder tree under a temporary sibling name and move it into place on success.

    Use as a context manager; the value of the ``with`` is the temporary folder to write into.
    On a clean exit the folder is renamed to ``final``; an existing non-empty ``final`` is
    replaced only when ``overwrite`` is True (the old tree is moved aside first, then deleted;
    an empty placeholder folder is simply replaced). On an exception the temporary folder is
    deleted and ``final`` is left untouched. The temporary folder gets the permissions of any
    new folder (umask honoured).

    Args:
        final: the destination folder.
        overwrite: replace an existing ``final``.
        keep_existing: optional callable; when it returns True at the end (e.g. another process
            finished the same output meanwhile), the new tree is discarded and ``final`` kept.

    Raises:
        FileExistsError: on exit, when ``final`` exists, is not empty and ``overwrite`` is False.
    """

    def __init__(self, final: PathLike, overwrite: bool = False, keep_existing: Callable[[], bool] | None = None) -> None:
        self.final = Path(final).expanduser().absolute()
        self.overwrite = overwrite
        self.keep_existing = keep_existing
        self.path: Path | None = None

    def _sibling(self, kind: str) -> Path:
        return self.final.with_name(f".{self.final.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            tmp = self._sibling("tmp")
            try:
                os.mkdir(tmp, 0o777)
            except FileExistsError:
                continue
            self.path = tmp
            return tmp
        raise FileExistsError(f"could not create a temporary folder next to {self.final}.")

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self.path is not None, "AtomicDirectory.__exit__ without __enter__"
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return False
        if self.keep_existing is not None and self.final.exists() and self.keep_existing():
            shutil.rmtree(self.path, ignore_errors=True)
            return False
        old = None
        try:
            if self.final.is_dir() and not any(self.final.iterdir()):
                self.final.rmdir()
            if self.final.exists():
                if not self.overwrite:
                    raise FileExistsError(f"output folder {self.final} already exists; pass overwrite/force to replace it.")
                old = self._sibling("old")
                os.replace(self.final, old)
            os.replace(self.path, self.final)
            _fsync_dir(self.final.parent)
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            if old is not None and not self.final.exists():
                os.replace(old, self.final)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return False
