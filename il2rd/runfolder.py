"""What a run may do with the output folder it is given: never lose or replace finished work.

`open_output` takes the folder's lock (io/folder_lock.py) before anything in it is read or
written, then looks at the il2rd.h5 already there:

* none, or one of this very config (config_key) that holds nothing to continue: a new file;
* this config, finished: reused, not recomputed;
* this config, interrupted with a checkpoint (transient and coupled runs): continued from its last
  committed snapshot, as `resume=` would;
* anything else (another config's run, a foreign or unreadable file): refused, naming what is there
  and how to resume it or replace it, unless output.overwrite=true.

`open_resume` is `resume=<file>`: the run continues with the config stored in the file; a later
`time.end` extends it, any other override is refused by name.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import h5py
from omegaconf import DictConfig, OmegaConf

from . import config
from .config import host, schema, validate
from .solvers import kinds, steppers
from .io.failures import OutputError, lock_output
from .io.hdf5 import Hdf5Writer
from .solvers.integrate import SimulationError
from .io.folder_lock import FolderLock

log = logging.getLogger("il2rd")

FILE_NAME = "il2rd.h5"
# overrides that resume= accepts: where it continues from, the end it runs to, and a progress bar
RESUME_OVERRIDES = ("resume", "time.end", "output.progress")


def stored_config(path: Path) -> DictConfig:
    """The resolved config a run stored in its file, merged onto the schema."""
    with h5py.File(path, "r") as f:
        text = f["meta/config"][()]
    text = text.decode() if isinstance(text, bytes) else text
    return OmegaConf.merge(OmegaConf.structured(schema.Il2rdConfig), OmegaConf.create(text))


def config_key(cfg: DictConfig) -> str:
    """What identifies a run's result: the SHA-256 of its resolved config without the keys
    that do not change the numbers (where it is written, progress bars, resume)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("resume", None)
    container.pop("output", None)
    container.get("devices", {}).pop("compilation_cache", None)  # where kernels come from, not what they compute
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Found:
    """What an il2rd.h5 holds, read without trusting it (None fields: not an il2rd run file)."""

    key: str | None
    complete: bool
    n_snapshots: int
    last_time_s: float | None
    solver: str | None
    problem: str = ""  # why it could not be read, if it could not

    def describe(self) -> str:
        if self.problem:
            return f"a file il2rd cannot read as a run ({self.problem})"
        state = "finished" if self.complete else "unfinished"
        until = f" up to t = {self.last_time_s:g} s" if self.last_time_s is not None and kinds.steps_in_time(self.solver) else ""
        return f"the {state} {self.solver} run of another config ({self.n_snapshots} snapshot(s){until})"


def inspect(path: Path) -> Found | None:
    """What `path` holds (None: nothing there)."""
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as f:
            n = int(f.attrs.get("n_snapshots", 0))
            times = f["time"][:n] if "time" in f else []
            return Found(_text(f.attrs.get("config_sha256")), bool(f.attrs.get("complete", False)), n,
                         float(times[-1]) if len(times) else None, _text(f.attrs.get("solver")))
    except Exception as err:  # noqa: BLE001 (a damaged or foreign file of any kind is a finding, not a crash)
        return Found(None, False, 0, None, None, problem=str(err).splitlines()[0] if str(err) else type(err).__name__)


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def completed_file(path: Path, key: str) -> bool:
    """Whether `path` holds a finished run of the config with this key (a re-run can skip it)."""
    found = inspect(path)
    return found is not None and found.complete and found.key == key


def default_output_dir() -> Path:
    """outputs/<date>/<time>, Hydra's own default run folder, for runs composed in Python."""
    now = datetime.now()
    return Path("outputs") / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")


def output_path(settings, output_dir: Path | None) -> Path:
    out = Path(output_dir) if output_dir is not None else (settings.output.output_dir or default_output_dir())
    return out / FILE_NAME


@dataclass
class Output:
    """An output folder held for one run: `reuse` (its finished file), or `writer` to write into,
    with `start` (t_s, field, saved: the rest of the checkpointed state by name) when it continues
    an interrupted run."""

    path: Path
    lock: FolderLock
    writer: Hdf5Writer | None = None
    start: tuple | None = None

    @property
    def reuse(self) -> bool:
        return self.writer is None

    def release(self) -> None:
        if self.writer is not None:
            self.writer.close()  # drops the lock too
        else:
            self.lock.release()


def open_output(cfg: DictConfig, settings, scenario, path: Path, key: str) -> Output:
    """Take the folder of `path` and decide what to do with what is there (module docstring).
    Raises OutputError before anything is written if the folder is busy, or holds another run's
    file and output.overwrite is not set."""
    lock = lock_output(path)
    held = Output(path, lock)
    try:
        found = inspect(path)
        if found is not None and found.key == key and not found.problem:
            if found.complete:
                return held
            continued = _continue(path, scenario, lock, settings.numerics.solver_kind)
            if continued is not None:
                held.writer, held.start = continued
                return held
        elif found is not None and not settings.output.overwrite:
            raise OutputError(refusal(path, found))
        elif found is not None:
            log.warning("output.overwrite=true: replacing %s (%s)", path, found.describe())
        held.writer = Hdf5Writer.create(path, scenario.record(), OmegaConf.to_yaml(cfg, resolve=True), key, lock)
        return held
    except BaseException:
        lock.release()
        raise


def refusal(path: Path, found: Found) -> str:
    resume = "" if found.problem or found.complete or not kinds.steps_in_time(found.solver) else f"continue it with resume={path}, "
    return (f"output.dir = {str(path.parent)!r}: holds {found.describe()} in {path.name}; not replaced: {resume}"
            f"choose another output.dir, or set output.overwrite=true to replace it")


def _continue(path: Path, scenario, lock: FolderLock, kind: str):
    """(writer, start) continuing this config's interrupted run in `path`, or None if it holds
    nothing to continue from (steady, nothing committed yet): it is then simply run again."""
    if not kinds.steps_in_time(kind):
        return None
    try:
        writer, t_s, field, saved = Hdf5Writer.resume(path, scenario.record(), lock)
    except OutputError as err:
        log.info("%s: %s; running it again", path, err)
        return None
    if _missing(kind, saved, scenario.settings.problem.fate.enabled):
        writer.file.close()  # the lock stays with the caller
        return None
    log.info("%s holds this config's interrupted run: continuing it from t = %g s (snapshot %d)",
             path, t_s, writer.committed - 1)
    return writer, (t_s, field, saved)


def _missing(kind: str, saved: dict, fate_enabled: bool = False) -> list[str]:
    """What a run of this kind needs from its checkpoint (steppers.saved_names) that `saved` lacks."""
    return [name for name in steppers.saved_names(kind, fate_enabled) if name not in saved]


def given_overrides(cfg: DictConfig, overrides) -> list[str]:
    """The command line's overrides: `overrides` if given, else Hydra's task overrides when Hydra is
    running this very resume (they name its resume=), else none (a config composed in Python)."""
    if overrides is not None:
        return [str(o) for o in overrides]
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        task = [str(o) for o in HydraConfig.get().overrides.task]
        if any(_override_key(o) == "resume" and o.partition("=")[2].strip() == str(cfg.resume) for o in task):
            return task
    return []


def _override_key(override: str) -> str:
    return override.lstrip("~+").partition("=")[0].strip()


def open_resume(cfg: DictConfig, overrides=None):
    """(settings, scenario, Output) to continue the run stored in cfg.resume. `overrides`: the
    command line's (given_overrides); only those in RESUME_OVERRIDES are allowed, and time.end only
    at or beyond the stored run's end (it then extends the run). Raises ConfigError naming what is
    wrong, OutputError if the file cannot be continued; the file is left as it was."""
    from .scenario import Scenario

    path = Path(str(cfg.resume))
    if not path.is_file():
        raise config.ConfigError("resume", str(path), "no such file (an il2rd.h5 written by an interrupted transient or coupled run)")
    keys = [_override_key(o) for o in given_overrides(cfg, overrides)]
    refused = sorted({k for k in keys if k not in RESUME_OVERRIDES and not k.startswith("hydra.")})
    if refused:
        raise config.ConfigError("resume", str(path), f"continues the run with the config stored in the file; the "
                                 f"override(s) {', '.join(refused)} would change it and are refused (only a later "
                                 f"time.end, to extend the run, and output.progress may be given)")
    try:
        stored = stored_config(path)
    except Exception as err:  # noqa: BLE001 (damaged meta/config: YAML, OmegaConf or HDF5 errors alike)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise config.ConfigError("resume", str(path), f"is not a readable il2rd output file ({first})") from None
    stored.output.progress = cfg.output.progress
    old_end = stored.time.end
    if "time.end" in keys and cfg.time.end != old_end:
        new_end = validate.number("time.end", cfg.time.end, low=0, low_open=True, unit="s")
        if new_end < old_end:
            raise config.ConfigError("time.end", cfg.time.end, f"must be at least the stored run's time.end = {old_end:g} s "
                                     "(resume continues a run; it cannot shorten it)")
        stored.time.end = new_end
    settings = config.parse(stored)
    host.check(settings)
    if not settings.numerics.kind.transient:
        raise config.ConfigError("resume", str(path), "is a steady run: there is nothing to continue")
    scenario = Scenario.build(settings)
    lock = lock_output(path, key="resume")
    try:
        writer, t_s, field, saved = Hdf5Writer.resume(path, scenario.record(), lock)
    except BaseException:
        lock.release()
        raise
    missing = _missing(settings.numerics.solver_kind, saved, settings.problem.fate.enabled)
    if missing:
        writer.close()
        raise config.ConfigError("resume", str(path), f"is a {settings.numerics.solver_kind} run written without "
                                 f"{', '.join(missing)} in its checkpoint (an older il2rd); re-run it")
    if stored.time.end != old_end:
        writer.restate(OmegaConf.to_yaml(stored, resolve=True), config_key(stored))
        log.info("extending %s from time.end = %g s to %g s", path, old_end, stored.time.end)
    log.info("resuming %s from t = %g s (snapshot %d)", path, t_s, writer.committed - 1)
    return settings, scenario, Output(path, lock, writer, (t_s, field, saved))


# ---------------------------------------------------------------------------------------------
# A failed run's record, for il2rd-collect and for the sweep's count

FAILED_MARKER = "il2rd.failed"  # in a run's folder: why it failed (removed once it succeeds)


def failure_text(err: BaseException) -> str:
    """The one line a failed run records: its kind and the error's message."""
    kind = "simulation failed" if isinstance(err, SimulationError) else "error"
    return f"{kind}: " + " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def mark_failed(folder: Path, text: str) -> None:
    """Record why the run of `folder` failed (written whole under a temporary name, then renamed)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{FAILED_MARKER}.tmp"
        tmp.write_text(text.rstrip("\n") + "\n")
        tmp.replace(folder / FAILED_MARKER)
    except OSError as err:  # an unwritable folder: the message on the terminal is all there is
        log.error("cannot record the failure in %s (%s): %s", folder, err, text)


def clear_failed(folder: Path) -> None:
    """The run of `folder` succeeded: an earlier failure's record no longer holds."""
    (Path(folder) / FAILED_MARKER).unlink(missing_ok=True)


def failure_of(folder: Path) -> str | None:
    """The recorded failure of the run of `folder`, if any."""
    try:
        return (Path(folder) / FAILED_MARKER).read_text(errors="replace").strip() or "failed (no reason recorded)"
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"failed (its {FAILED_MARKER} cannot be read: {err})"
