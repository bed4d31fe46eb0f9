"""Atomic file writing: the one writer behind every file bionn writes.

A file is written to a temporary file in the same folder, flushed and fsynced,
then moved over the target with :func:`os.replace`, so a reader (or a crash)
never sees a half-written file and a failed write leaves the old file intact.

One permission policy: the file ends up with the mode an ordinary
``open(path, "w")`` would give it, i.e. ``0o666 & ~umask`` for a new file
(the temporary file is created with mode ``0o666`` and the process umask, so
folder ACLs apply too), and its current mode when an existing file is replaced.

Example:
    >>> import pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> p = atomic_write_text(d / "sub" / "notes.txt", "hello\\n")
    >>> p.read_text()
    'hello\\n'
    >>> _ = atomic_write(d / "data.bin", lambda tmp: tmp.write_bytes(b"\\x00\\x01"))
    >>> (d / "data.bin").read_bytes()
    b'\\x00\\x01'
    >>> sorted(f.name for f in d.iterdir())   # no temporary files left behind
    ['data.bin', 'sub']
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def _open_temp(path: Path) -> tuple[Path, int, int]:
    """Create an empty temporary file beside ``path``: ``(tmp, fd, mode)``, ``mode``
    being the permission bits the finished file must have.

    The name keeps ``path``'s suffix last (``.name.<random>.tmp.png``) so that
    writers that pick a format from the suffix (or append one) write the right file.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            fd = os.open(tmp, _FLAGS, 0o666)  # the umask applies, as for open(path, "w")
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - 100 collisions of 32 random bits
        raise FileExistsError(f"could not create a temporary file beside {str(path)!r}")
    try:
        try:  # replacing a file keeps its permissions, as open(path, "w") does
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return tmp, fd, mode


def _set_mode(tmp: Path, mode: int) -> None:
    """Give the finished temporary file its permission bits (set last, so that a
    read-only target can still be replaced)."""
    if stat.S_IMODE(os.stat(tmp).st_mode) != mode:
        os.chmod(tmp, mode)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write_fn: Callable[[Path], Any]) -> Path:
    """Write ``path`` atomically through ``write_fn(tmp_path)`` and return ``path``.

    ``write_fn`` writes the whole file to ``tmp_path`` (a new, empty file in the same
    folder, ending in ``path``'s suffix), e.g. ``lambda tmp: torch.save(obj, tmp)`` or
    ``lambda tmp: fig.savefig(tmp)``. The file is then fsynced, given the permission
    bits of the policy above and moved onto ``path``. Parent folders are created. If
    ``write_fn`` (or anything after it) fails, the temporary file is removed and an
    existing ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd, mode = _open_temp(path)
    try:
        os.close(fd)
        write_fn(tmp)
        _fsync_file(tmp)
        _set_mode(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename); returns ``path``."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (encoded as ``encoding``); returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))
