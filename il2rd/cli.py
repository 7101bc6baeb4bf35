"""Console entry point `il2rd` (a Hydra app). `il2rd.simulate.run(cfg)` is the same without Hydra.

`il2rd --describe [KEY]` prints each config key's value, unit and meaning (describe.py) instead.

Every way a run can end is one line on stderr and an exit status, never a traceback: 0 finished,
1 the numerics failed (no convergence, NaN, out of memory), 2 bad input or an output that cannot
be written, 130 Ctrl-C (however often, whenever it comes). A multirun goes on past failed runs,
records each one's reason in its folder (il2rd.failed), ends with the count of finished and failed
runs, and exits 1 only if some failed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _as_command() -> bool:
    """Whether this process is the `il2rd` console command (not Python code calling main())."""
    return Path(getattr(sys.modules.get("__main__"), "__file__", None) or "").name == "il2rd"


if _as_command():  # Ctrl-C from start-up on ends the command cleanly
    import signal

    def _interrupted_at_start_up(signum, frame):
        os.write(2, b"il2rd: interrupted before any output was written\n")
        os._exit(130)

    signal.signal(signal.SIGINT, _interrupted_at_start_up)

import logging  # noqa: E402  (after the handler: importing JAX and Hydra takes seconds)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from .config import overrides  # noqa: E402
from .cells.placement import PlacementError  # noqa: E402
from .config import ConfigError  # noqa: E402
from .config.schema import config_dir, register_configs  # noqa: E402,F401  (config_dir: here before schema.py)
from .io.failures import OutputError  # noqa: E402
from .runfolder import FAILED_MARKER, failure_text, mark_failed  # noqa: E402,F401  (FAILED_MARKER: collect's)

log = logging.getLogger("il2rd")


register_configs()


def job_output_dir(cfg: DictConfig, hydra_cfg) -> Path | None:
    """Where a job writes il2rd.h5: output.dir if set (in a multirun, output.dir/<job's subdir>, so
    that jobs never share a file), else Hydra's job folder (None: run() then uses Hydra's own)."""
    from hydra.types import RunMode

    if cfg.output.dir is None:
        return None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return Path(str(cfg.output.dir)) / str(hydra_cfg.sweep.subdir)
    return Path(str(cfg.output.dir))


def report_failure(folder: Path, text: str, job_num=None) -> str:
    """A multirun job that failed: its reason in its folder and on stderr; the job's return value."""
    mark_failed(folder, text)
    print(f"il2rd: job {job_num if job_num is not None else folder}: {text}", file=sys.stderr, flush=True)
    return f"failed: {text}"


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _main(cfg: DictConfig):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .simulate import RunInterrupted, SimulationError, run

    logging.getLogger("jax").setLevel(logging.WARNING)  # hide JAX's backend probing
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    out = job_output_dir(cfg, hydra_cfg)
    folder = out if out is not None else Path(hydra_cfg.runtime.output_dir)
    if multirun:  # jobs may share one GPU: none may take all its memory up front
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        result = run(cfg, folder)
    except (ConfigError, PlacementError, OutputError, SimulationError) as err:
        if multirun:  # record it and let the other jobs go on
            return report_failure(folder, failure_text(err), hydra_cfg.job.num)
        kind = "simulation failed" if isinstance(err, SimulationError) else "error"
        if isinstance(err, (ConfigError, PlacementError)) and (out is None or folder.resolve() in _MADE_OUTPUT_DIR):
            _discard_refused(folder)  # Hydra's folder, or the output.dir this command made: nothing of the user's
        print(f"il2rd: {kind}: {err}", file=sys.stderr)
        sys.exit(1 if isinstance(err, SimulationError) else 2)
    except RunInterrupted as err:
        _ignore_further_interrupts()
        print(f"il2rd: {err}", file=sys.stderr)
        sys.exit(130)
    log.info("\n%s", result.summary.format())
    log.info(result.accuracy())
    if result.attribution is not None:
        log.info("\n%s", result.attribution.format())
    log.info("wrote %s (%.1f s)", result.path, result.wall_time_s)
    return "finished"


_MADE_OUTPUT_DIR: list[Path] = []  # output.dir of this single run, if the command creates it (nothing was there)


def _log_beside_the_file(argv: list[str]) -> None:
    """A single run given output.dir keeps Hydra's .hydra/ and il2rd.log there, beside its file,
    instead of in an outputs/<date>/<time> folder of their own (hydra.run.dir, unless given)."""
    args = argv[1:]
    if "-m" in args or "--multirun" in args or any(a.startswith(("hydra.run.dir=", "--")) for a in args):
        return
    given = [a.partition("=")[2] for a in args if a.startswith("output.dir=")]
    if not given or given[-1] in ("", "null"):
        return
    if not Path(given[-1]).exists():
        _MADE_OUTPUT_DIR.append(Path(given[-1]).resolve())
    argv.append(f"hydra.run.dir={given[-1]}")


def _discard_refused(folder: Path) -> None:
    """A run refused for bad input leaves no folder behind: Hydra made outputs/<date>/<time> for it,
    which then holds only Hydra's .hydra/ and the log (anything else in it is kept)."""
    import shutil

    try:
        if folder.is_dir() and {p.name for p in folder.iterdir()} <= {".hydra", "il2rd.log"}:
            shutil.rmtree(folder)
            date = folder.parent  # outputs/<date>, if Hydra's default layout made it and it is now empty
            if date.parent.name == "outputs" and date.is_dir() and not any(date.iterdir()):
                date.rmdir()
    except OSError:
        pass  # a folder we cannot remove is left as it is


def _ignore_further_interrupts() -> None:
    """The run has stopped and says so: another Ctrl-C must not print a second, different line."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and _as_command():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class ConsoleFormatter(logging.Formatter):
    """The terminal's log lines: a message as it is, a warning or error as `il2rd: warning: ...` (the
    run's il2rd.log keeps Hydra's timestamped format)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"il2rd: {record.levelname.lower()}: {text.lstrip()}"
        return text


def main() -> None:
    """`il2rd ...`: the Hydra app, with Ctrl-C and a multirun's failures turned into exit statuses."""
    from .simulate import interrupt
    from .sweep import last_sweep

    if _as_command():
        interrupt.for_command()  # from here on a Ctrl-C that cannot wait ends the process at once (exit 130)
    last_sweep.__init__()
    if any(a == "--describe" or a.startswith("--describe=") for a in sys.argv[1:]):  # before Hydra, which owns --help
        from .config.describe import main as describe

        _end(describe(sys.argv[1:]))
        return
    groups = [p for p in config_dir().iterdir() if p.is_dir()]
    options = {p.name: [f.stem for f in p.glob("*.yaml")] for p in groups if p.name != "hydra"}
    problem = overrides.check(sys.argv[1:], tuple(p.name for p in groups), options)
    if problem:  # before Hydra, whose advice for a typo is to append the key
        print(f"il2rd: error: {problem}", file=sys.stderr)
        _end(2)
    _log_beside_the_file(sys.argv)
    try:
        _main()
    except KeyboardInterrupt:  # outside a run (the command's handler ends such a Ctrl-C itself)
        _ignore_further_interrupts()
        print(f"il2rd: {interrupt.kept()}", file=sys.stderr)
        _end(130)
    except SystemExit as exit_:
        _end(exit_.code)
    _end(1 if last_sweep.failed else 0)


def _end(code) -> None:
    """Exit with `code`; at once (os._exit) if a file could not be closed (a full disk), since
    HDF5 would try to flush it again at interpreter exit and can crash there (a segfault)."""
    from .io.hdf5 import UNCLOSED

    if UNCLOSED and _as_command():
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code if isinstance(code, int) else 1)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
