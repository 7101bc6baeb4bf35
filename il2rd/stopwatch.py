"""Where a run's wall time goes: seconds per stage, and how much of it JAX spent compiling.

Stages nest (the snapshot observer's readouts and writing run inside the solve); each stage is
charged only the time not spent in a stage inside it, so the stages add up to the time measured.
Compilation (tracing, lowering, XLA compilation or reading it from the persistent cache) happens
inside the stages, the first time each kernel runs; it is reported as its own total from JAX's
monitoring events.

A run's stopwatch (:meth:`Stopwatch.for_run`) also says on stderr when a slow stage starts, while
output.progress is on (:class:`RunStatus`): one line the first time the solve and the attribution
begin, so that the seconds of a steady solve or of the attribution are not silent. Stages entered
inside another (each snapshot's readouts and writing, inside the solve) are never announced.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable

from jax import monitoring
from omegaconf import OmegaConf

from .solvers import kinds

_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_jax_seconds: dict[str, float] = defaultdict(float)


def _listen(event: str, seconds: float, **_):
    _jax_seconds[event] += seconds


monitoring.register_event_duration_secs_listener(_listen)  # once per process; read as differences


def compile_seconds() -> float:
    """Seconds this process has spent tracing, lowering and compiling JAX programs so far."""
    return sum(_jax_seconds[e] for e in _COMPILE_EVENTS)


class RunStatus:
    """The status lines of a run (`il2rd: solving the steady field (128x128x128 voxels, float32) ...`),
    one per slow stage, on stderr through tqdm (which keeps a progress bar on screen intact).
    Called with a stage's name; stages not in :meth:`message` print nothing."""

    def __init__(self, cfg):
        self.cfg = cfg

    def message(self, stage: str) -> str | None:
        cfg = self.cfg
        if stage == "attribution":
            return "attributing each cell's uptake to the IL-2 sources"
        if stage != "solve":
            return None
        if OmegaConf.select(cfg, "resume") is not None:
            return f"continuing the run in {OmegaConf.select(cfg, 'resume')} (from its last snapshot)"
        shape = "x".join(str(n) for n in OmegaConf.select(cfg, "grid.shape", default=[]))
        what = f"{shape} voxels, {OmegaConf.select(cfg, 'precision', default='')}"
        kind = kinds.KINDS.get(OmegaConf.select(cfg, "solver.kind", default="steady"), kinds.STEADY)
        if not kind.transient:
            return f"solving the steady field ({what})"
        end = OmegaConf.select(cfg, "time.end", default=0.0)
        return f"integrating to t = {end:g} s ({kind}{', field and receptors' if kind.cells else ''}, {what})"

    def __call__(self, stage: str) -> None:
        from tqdm.auto import tqdm

        text = self.message(stage)
        if text:
            tqdm.write(f"il2rd: {text} ...", file=sys.stderr)
            sys.stderr.flush()


class Stopwatch:
    """Exclusive wall seconds per named stage (`with watch.stage("solve"): ...`).

    announce: called with a stage's name the first time it starts outside any other stage (the
    run's status lines, :class:`RunStatus`); None: silent."""

    def __init__(self, announce: Callable[[str], None] | None = None):
        self.seconds: dict[str, float] = {}
        self._open: list[list] = []  # [name, started, seconds inside nested stages]
        self._started = time.perf_counter()
        self._compile_at_start = compile_seconds()
        self._announce = announce
        self._announced: set[str] = set()

    @classmethod
    def for_run(cls, cfg) -> Stopwatch:
        """The stopwatch of a run of `cfg`: with its status lines while output.progress is on."""
        return cls(RunStatus(cfg) if OmegaConf.select(cfg, "output.progress", default=True) is True else None)

    @contextmanager
    def stage(self, name: str):
        if self._announce is not None and not self._open and name not in self._announced:
            self._announced.add(name)
            self._announce(name)
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
