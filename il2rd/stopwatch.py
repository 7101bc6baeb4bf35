"""Where a run's wall time goes: seconds per stage, and how much of it JAX spent compiling.

Stages nest (the snapshot observer's readouts and writing run inside the solve); each stage is
charged only the time not spent in a stage inside it, so the stages add up to the time measured.
Compilation (tracing, lowering, XLA compilation or reading it from the persistent cache) happens
inside the stages, the first time each kernel runs; it is reported as its own total from JAX's
monitoring events.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

from jax import monitoring

_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_jax_seconds: dict[str, float] = defaultdict(float)


def _listen(event: str, seconds: float, **_):
    _jax_seconds[event] += seconds


monitoring.register_event_duration_secs_listener(_listen)  # once per process; read as differences


def compile_seconds() -> float:
    """Seconds this process has spent tracing, lowering and compiling JAX programs so far."""
    return sum(_jax_seconds[e] for e in _COMPILE_EVENTS)


class Stopwatch:
    """Exclusive wall seconds per named stage (`with watch.stage("solve"): ...`)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._open: list[list] = []  # [name, started, seconds inside nested stages]
        self._started = time.perf_counter()
        self._compile_at_start = compile_seconds()

    @contextmanager
    def stage(self, name: str):
        self.seconds.setdefault(name, 0.0)  # stages listed in the order they first start
        self._open.append([name, time.perf_counter(), 0.0])
        try:
            yield
        finally:
            name, started, nested = self._open.pop()
            spent = time.perf_counter() - started
            self.seconds[name] += spent - nested
            if self._open:
                self._open[-1][2] += spent

    @property
    def total_s(self) -> float:
        return time.perf_counter() - self._started

    @property
    def compile_s(self) -> float:
        return compile_seconds() - self._compile_at_start

    def attrs(self) -> dict[str, float]:
        """time_<stage>_s for each stage and time_compile_s, for the run's HDF5 attributes."""
        out = {f"time_{name.replace('-', '_')}_s": s for name, s in self.seconds.items()}
        out["time_compile_s"] = self.compile_s
        return out

    def format(self) -> str:
        stages = ", ".join(f"{name} {s:.2f}" for name, s in self.seconds.items())
        return f"time (s): {stages}; run {self.total_s:.2f}, of which JAX tracing and compiling {self.compile_s:.2f}"
