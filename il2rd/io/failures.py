"""What a failed write becomes: one OutputError that names the key, the file and what it keeps.

h5py reports a full disk or a failed write as OSError or as RuntimeError (HDF5's own error stack);
`writing` turns either into an OutputError that says how many snapshots the file keeps and, on a
full disk, how to continue the run. `lock_output` takes an output folder's lock (folder_lock.py)
before anything in it is read or written.
"""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path

from .folder_lock import FolderBusy, FolderLock


class OutputError(OSError):
    """The output file cannot be written (raised before any computing), or writing it failed."""


@contextlib.contextmanager
def writing(path: Path, committed: int):
    """The block's OSError or RuntimeError as one OutputError naming `path` and the `committed`
    snapshots it keeps."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        if isinstance(err, OutputError):
            raise
        space = " (the disk is full: free some space, then continue it with resume=" + str(path) + ")" \
            if is_out_of_space(err) else ""
        raise OutputError(f"output.dir = {str(path.parent)!r}: writing {path} failed ({first_line(err)}){space}; "
                          f"it keeps the {committed} snapshot(s) completed before") from None


def is_out_of_space(err: BaseException) -> bool:
    text = str(err).lower()
    return getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "no space" in text or "quota" in text


def first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def lock_output(path: Path, key: str = "output.dir") -> FolderLock:
    """Create the folder of `path` and take its lock, before anything in it is read or written:
    OutputError if it cannot be created or another run is writing there."""
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return FolderLock.acquire(folder)
    except FolderBusy:
        raise OutputError(f"{key} = {str(folder)!r}: another il2rd run is writing {Path(path).name} there right now; "
                          f"wait for it to end, or choose another {key}") from None
    except OSError as err:
        raise OutputError(f"{key} = {str(folder)!r}: cannot write {Path(path).name} there ({err})") from err
