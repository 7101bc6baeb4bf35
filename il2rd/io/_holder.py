"""A context manager around an open h5py.File, shared by the writer and the reader."""

from __future__ import annotations


class HoldsFile:
    """Owns `self.file` (an h5py.File): close() and `with` close it once."""

    def close(self):
        if self.file.id.valid:
            self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
