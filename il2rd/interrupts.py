"""Ctrl-C during a run: honoured between jitted chunks and snapshots, never inside XLA or half-way
through writing a file (`interrupt`, one per process), and what the file keeps when it stops."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the file keeps its n_snapshots complete snapshots (or, when the Ctrl-C
    came as the run was finishing, the file is complete)."""

    def __init__(self, path: Path, n_snapshots: int, complete: bool = False):
        self.path, self.n_snapshots, self.complete = path, n_snapshots, complete
        if complete:
            super().__init__(f"interrupted as the run finished; {path} is complete ({n_snapshots} snapshot(s))")
        else:
            super().__init__(f"interrupted; {path} keeps the {n_snapshots} snapshot(s) completed before")


def _exit_now(message: str) -> None:
    """End the process at once with exit 130, as SIGKILL would but with a message: what is on disk
    is what the snapshot commits left there (hdf5.py), so nothing committed is lost."""
    try:
        os.write(2, f"il2rd: {message}\n".encode())
    finally:
        os._exit(130)


class _DeferredInterrupt:
    """Ctrl-C during a run is honoured between jitted chunks and snapshots, never inside XLA
    (compiling or computing) or half-way through writing the file: the handler only records
    it, and `check` raises KeyboardInterrupt at the next safe point.

    A Ctrl-C that cannot wait (a second one, or one outside a run) raises KeyboardInterrupt at
    once in the library; in the il2rd command (`for_command`) it ends the process at once with
    exit 130 and one line saying what the file keeps, rather than unwinding through HDF5 or XLA
    (where a KeyboardInterrupt can crash the interpreter)."""

    def __init__(self):
        self.requested = False
        self.depth = 0  # runs in progress (nested `with interrupt`)
        self.hard_exit = False
        self.writer = None  # the file being written, for the message
        self.outside = "interrupted before any output was written"
        self.previous = []

    def _handler(self, signum, frame):
        if self.depth and not self.requested:
            self.requested = True
            return
        if self.hard_exit:
            _exit_now(self.kept())
        raise KeyboardInterrupt

    def kept(self) -> str:
        w = self.writer
        if w is None:
            return self.outside
        return f"interrupted again: stopped at once; {w.path} keeps the {w.committed} snapshot(s) completed before"

    def for_command(self) -> None:
        """The il2rd command: install the handler for the whole process, from start-up on."""
        self.hard_exit = True
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._handler)

    def check(self):
        if self.requested:
            raise KeyboardInterrupt

    def __enter__(self):
        if self.depth == 0:
            self.requested = False
        self.depth += 1
        mine = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) != self._handler
        self.previous.append(signal.signal(signal.SIGINT, self._handler) if mine else None)
        return self

    def __exit__(self, *exc):
        self.depth -= 1
        previous = self.previous.pop()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if self.writer is not None:  # this run is over (a sweep's runs nest in the sweep's `with interrupt`)
            if self.depth == 0:  # a Ctrl-C from now on comes after the run
                self.outside = f"interrupted; {self.writer.path} keeps the {self.writer.committed} snapshot(s) written"
            self.writer = None


interrupt = _DeferredInterrupt()
