"""Writing whole files: plainly (nobody reads them yet) or atomically (readers are about).

A short run creates a couple of dozen small files, so the few system calls per file
matter: ``os.open``/``os.write`` skip what ``open()`` adds (buffer set-up, a terminal
check, a seek). A file replaced atomically goes through a temporary name in the same
directory and ``os.replace``, so a reader or a kill sees the old or the new file,
never half of one. No fsync: the guarantee is against a killed process, not a power
cut (the operating system still writes what a dead process handed it).
"""

from __future__ import annotations

import itertools
import os

_TMP_NAMES = itertools.count()


def write_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Create (or truncate) ``path`` holding ``data``; for files nobody reads yet."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` through a temporary name and a rename.

    The temporary name holds the pid and a per-process counter, so writers in
    different processes (or threads) never share one.
    """
    path = os.fspath(path)
    head, tail = os.path.split(path)
    tmp = os.path.join(head, f".{tail}.{os.getpid()}-{next(_TMP_NAMES)}.partial")
    try:
        write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
