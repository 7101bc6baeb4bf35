"""One writer per output folder: an advisory lock on the folder itself, taken before any file in
it is created, truncated or replaced.

The lock is `flock(LOCK_EX | LOCK_NB)` on the folder's own file descriptor, so it leaves no lock
file behind and dies with its process (a run killed by SIGKILL leaves nothing stale to clean).
File systems that do not support flock on folders (some network mounts) run unlocked, with HDF5's
own file locking as the only guard.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger("il2rd")

UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


class FolderBusy(OSError):
    """Another process holds the folder's lock (it is writing a run there)."""


class FolderLock:
    """Held from `acquire` until `release` (or the process ends)."""

    def __init__(self, folder: Path, fd: int | None):
        self.folder, self.fd = Path(folder), fd

    @classmethod
    def acquire(cls, folder: Path) -> "FolderLock":
        """Lock `folder` (which must exist); FolderBusy if another process holds it."""
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderBusy(err.errno, f"another il2rd process is writing a run in {folder}") from None
            if err.errno in UNSUPPORTED:
                log.debug("no folder lock on %s (%s): relying on HDF5's file lock", folder, err)
                return cls(folder, None)
            raise
        return cls(folder, fd)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None
