"""il2rd from Python: compose a config, run it, read the file back, draw figures, sweep.

    import il2rd

    cfg = il2rd.compose("grid.shape=[24,24,12]", seed=1)    # the config the `il2rd` command would use
    result = il2rd.run(cfg, output_dir="outputs/small")     # one run; its file is result.path
    print(result.summary.format())                          # the per-type table the command prints
    with il2rd.load(result.path) as run:                    # the file, lazily (il2rd.io.load)
        run.field_xyz(-1), run.cells["il2"][-1], run.attribution.uptake()
    il2rd.make_figures(result.path, only=("slice", "attribution"))
    sweep = il2rd.run_sweep(["grid.shape=[24,24,12]"], {"cell_types.treg.receptors": [3e3, 1e4, 3e4]},
                            "outputs/treg_sweep")
    sweep.files, sweep.table()                              # each point's il2rd.h5; il2rd-collect's rows

Each function wraps what the commands use (Hydra's compose, simulate.run, io.load,
figures.make_figures, sweep.run_batched, collect.collect), so a run made here is the very run the
command makes: same file, same config hash, reused by either when it is finished. A worked example:
examples/quickstart.py.

Names: `il2rd.config`, `il2rd.sweep`, `il2rd.figures`, `il2rd.plot` and `il2rd.analysis` are modules
of the package, so the functions are called compose, run_sweep and make_figures.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from .io.reader import RunFile, load as _load

__all__ = ["Sweep", "compose", "load", "make_figures", "override_text", "run", "run_sweep"]


# ---------------------------------------------------------------------------------------------
# compose


def compose(*overrides: str, **keys: Any) -> DictConfig:
    """The shipped config with `overrides`, composed exactly as the `il2rd` command composes it.

    overrides: command-line overrides, e.g. "grid.shape=[24,24,12]", "scenario=treg_source",
    "+cell_types.dc.secretion=20" (`+` adds a key, such as a new cell type). keys: the same as
    Python values, a dotted key through a dict, `compose(**{"physics.diffusion": 5.0})`, or with
    `__` for the dots, `compose(physics__diffusion=5.0, grid__shape=[24, 24, 12], seed=2)`; lists,
    dicts (regions), None (null) and booleans are written in Hydra's override syntax (override_text).
    Keyword overrides come after the positional ones (a later override of the same key wins).

    Units are those of each key (README "Configuration"): grid.spacing and region coordinates in
    um, physics.diffusion in um^2/s, physics.decay in 1/s, secretion in molecules/s per cell,
    receptors per cell, concentrations in pM, times in s.

    The composed config is checked as a run would check it (config.parse) before it is returned.
    Raises ConfigError naming the key and the value: a key that is not in the schema (with the
    nearest names, as the command does: overrides.unknown_key), an override Hydra cannot parse or
    merge, or a value a run would refuse; a scenario or other group option that does not exist
    raises Hydra's MissingConfigException, which lists the options.
    """
    from . import config as config_module
    from .config import host

    texts = [*overrides, *(f"{_dotted(key)}={override_text(value, _dotted(key))}" for key, value in keys.items())]
    for text in texts:
        _check_override(text)
    cfg = _hydra_compose(texts)
    if cfg.get("resume") is None:  # resume= runs its file's stored config: checked when it runs
        host.check(config_module.parse(cfg))  # raises ConfigError
    return cfg


def _dotted(key: str) -> str:
    """A keyword argument's config key: `physics__diffusion` is physics.diffusion."""
    return key.replace("__", ".")


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")  # a string Hydra reads back as that same string
_HYDRA_WORDS = {"true", "false", "null", "nan", "inf", "none"}


def override_text(value: Any, key: str = "value") -> str:
    """A Python value in Hydra's override syntax: 5 -> 5, 1e-5 -> 1e-05, [24, 24, 12] -> [24,24,12],
    {"kind": "sphere", "radius": 200} -> {kind:sphere,radius:200}, None -> null, True -> true, a
    string quoted unless it is a plain word (so "1e3" stays the text 1e3). numpy scalars and arrays
    are taken as their Python values. Raises TypeError naming `key` for anything else."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalars and arrays
        value = value.tolist()
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (str, Path)):
        text = str(value)
        if _PLAIN.fullmatch(text) and text.lower() not in _HYDRA_WORDS:
            return text
        if "'" not in text:
            return f"'{text}'"
        if '"' not in text:
            return f'"{text}"'
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{override_text(v, f'{key}.{k}')}"
                              for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_text(v, key) for v in value) + "]"
    raise TypeError(f"{key} = {value!r}: a {type(value).__name__} has no config form "
                    "(give a number, string, bool, None, list or dict)")


def _config_groups() -> tuple[str, ...]:
    from .config.schema import config_dir

    return tuple(p.name for p in config_dir().iterdir() if p.is_dir())


def _check_override(text: str) -> None:
    """Refuse, naming the key and the value, an override Hydra cannot parse or whose key is not in
    the schema (the command's check, overrides.unknown_key)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from .config import ConfigError
    from .config.overrides import unknown_key

    if not isinstance(text, str):
        raise TypeError(f"override {text!r}: overrides are strings such as 'grid.shape=[24,24,12]' "
                        "(or pass Python values as keywords)")
    key, _, value = text.partition("=")
    try:
        OverridesParser.create().parse_override(text)
    except HydraException as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(key, value, f"not a Hydra override ({why}; the syntax: "
                          "https://hydra.cc/docs/advanced/override_grammar/basic)") from None
    if text.startswith(("+", "~")) or "=" not in text:
        return
    problem = unknown_key(key, _config_groups())
    if problem:
        raise ConfigError(key, value, problem.removeprefix(f"{key} is "))


def _hydra_compose(overrides: list[str]) -> DictConfig:
    """Hydra's compose of configs/config.yaml (il2rd.cli.config_dir) with `overrides`; works also
    where Hydra is already initialised (inside an @hydra.main app or a test's initialize), whose
    state is put back afterwards."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    from .config.schema import config_dir
    from .config import ConfigError
    from .config.schema import register_configs

    register_configs()
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides))
    except ConfigCompositionException as err:
        failed = re.match(r"Error merging override (.+)", str(err))
        if failed is None or err.__cause__ is None:
            raise
        key, _, value = failed.group(1).partition("=")
        raise ConfigError(key.lstrip("+~"), value, str(err.__cause__).splitlines()[0]) from err
    finally:
        restore_gh_from_backup(backup)


# ---------------------------------------------------------------------------------------------
# run, load, figures


def run(config: DictConfig | str | Sequence[str] = (), output_dir: str | Path | None = None):
    """Run one simulation; returns simulate.Result: .path (the il2rd.h5), .field_pM (the last field,
    (nx, ny, nz) pM), .summary (readouts.Summary, .format() the printed table), .attribution (who
    took up whose IL-2 in molecules/s, attribution.Attribution, .format(); None for transient
    runs or output.attribution=false), .solver (the last solve's accuracy), .wall_time_s.

    config: a composed config (compose), or override strings that compose() is given.
    output_dir: the folder of il2rd.h5 (default output.dir, else outputs/<date>/<time> under the
    current folder, as the command). A folder that already holds the finished run of the same
    config gives that run back without computing it again; an interrupted one is continued; a
    folder holding another config's run is refused (OutputError) unless output.overwrite=true.

    Raises what simulate.run raises: ConfigError or PlacementError (bad input), OutputError (the
    file cannot be written), SimulationError (no convergence, NaN; OutOfMemory), RunInterrupted
    (Ctrl-C; the snapshots written so far are kept)."""
    from .simulate import run as simulate_run

    cfg = config if isinstance(config, DictConfig) else compose(*_override_list(config))
    return simulate_run(cfg, None if output_dir is None else Path(output_dir))


def _override_list(overrides: str | Sequence[str]) -> list[str]:
    if isinstance(overrides, str):
        return [overrides]
    if isinstance(overrides, Mapping):
        raise TypeError("overrides as a dict: pass them as keywords, compose(**{...}), or as strings 'key=value'")
    return list(overrides)


def load(path: str | Path) -> RunFile:
    """Open a run's il2rd.h5 for reading (il2rd.io.load): .time (s), .field (time, z, y, x) pM and
    .field_xyz(i) (nx, ny, nz) pM, read when indexed; .cells (x, y, z in um, type; il2 pM, uptake
    molecules/s, receptors, pstat5: (time, cell)); .type_names; .readouts_by_type; .attribution
    (molecules/s; None without one); .config. Use it in `with` (or close()) to release the file."""
    return _load(path)


def make_figures(path: str | Path, out: str | Path | None = None, only: str | Sequence[str] | None = None, *,
                 time_s: float | None = None, pdf: bool = False, gif: bool = True) -> list[Path]:
    """Draw a run's figures from its file alone (as il2rd-plot does); returns the files written.

    out: their folder (default figures/ beside the file). only: the names of the figures to draw,
    e.g. ("slice", "attribution") or "slice" (default all; names: il2rd.figures.FIGURES). time_s:
    the snapshot nearest that time in s (default the last). pdf: also PDF files. gif: the mid-plane
    animation with "slice", for runs with more than one snapshot. A figure the run cannot support
    (no attribution, one snapshot) is skipped with a printed line saying why; an unknown name or a
    time outside the file's snapshots raises ValueError."""
    from .figures import make_figures as draw

    names = [only] if isinstance(only, str) else only
    return draw(path, out, time_s=time_s, pdf=pdf, gif=gif, only=names)


# ---------------------------------------------------------------------------------------------
# sweeps


@dataclass(frozen=True)
class Sweep:
    """The runs of one run_sweep: point i has the swept values parameters[i] and its file files[i]
    (output_dir/<i>/il2rd.h5; None where the point failed: failures() says why)."""

    output_dir: Path
    parameters: list[dict[str, Any]]
    files: list[Path | None]

    @property
    def folders(self) -> list[Path]:
        return [self.output_dir / str(i) for i in range(len(self.parameters))]

    def failures(self) -> dict[Path, str]:
        """{point folder: why it failed (its il2rd.failed)} of the points that failed."""
        from .runfolder import failure_of

        found = {folder: failure_of(folder) for folder in self.folders}
        return {folder: why for folder, why in found.items() if why is not None}

    def table(self) -> list[dict]:
        """il2rd-collect's rows of these points (collect.collect): one per point and cell type, with
        "run" (the point's folder name), "status", "param:<key>" for every override, "cell_type",
        "cells", "mean_il2_pM", "mean_uptake_molecules_per_s", "total_uptake_molecules_per_s",
        "mean_pstat5", "pstat5_positive_fraction", "mean_receptors", ... of the last snapshot.
        `il2rd-collect <output_dir>` writes the same table as sweep.csv and sweep.h5, with plots."""
        from .analysis.collect import collect

        mine = {str(i) for i in range(len(self.parameters))}
        return [row for row in collect(self.output_dir) if row["run"] in mine]


def run_sweep(base: str | Sequence[str] | Mapping[str, Any], parameters: Mapping[str, Sequence[Any]],
              output_dir: str | Path, batch_size: int = 16, progress: bool = True) -> Sweep:
    """Run every combination of `parameters` on top of `base` in this process, as vmapped batches
    (sweep.run_batched, what `hydra/launcher=il2rd_batched` does); returns a Sweep.

    base: overrides every point shares, strings ("grid.shape=[24,24,12]") or a {key: value}
    mapping (compose's keywords). parameters: {key: [values, ...]}, values as compose() takes them
    (in each key's unit: README "Configuration"); the points are their cartesian product, the first
    key varying slowest (Hydra's order), point i in output_dir/<i>/ with its overrides in
    <i>/.hydra/overrides.yaml as a Hydra multirun job has them, so il2rd-collect tables the folder.
    batch_size: points solved together at most (fewer where the device's memory would not hold
    them). progress: a bar over the batches.

    Every config is composed and checked before anything runs (a bad key or value raises
    ConfigError naming it). Points that differ in anything static (lattice, solver, precision, ...)
    run in separate batches. As in a multirun, a point that fails later (no convergence, a folder
    holding another run's file) gets il2rd.failed in its folder and the others finish. Running the
    same sweep into the same folder again reuses its finished points."""
    import yaml

    from .sweep import run_batched

    if not isinstance(parameters, Mapping) or not parameters:
        raise ValueError(f"parameters = {parameters!r}: give {{config key: [values, ...]}} with at least one key")
    for key, values in parameters.items():
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"parameters[{key!r}] = {values!r}: give a non-empty list of values")
    if isinstance(base, Mapping):
        shared = [f"{_dotted(k)}={override_text(v, _dotted(k))}" for k, v in base.items()]
    else:
        shared = _override_list(base)
    keys = [_dotted(k) for k in parameters]
    points = [dict(zip(keys, combination)) for combination in itertools.product(*parameters.values())]
    point_overrides = [[*shared, *(f"{k}={override_text(v, k)}" for k, v in point.items())] for point in points]
    cfgs = [compose(*texts) for texts in point_overrides]  # all checked before any runs

    output_dir = Path(output_dir)
    folders = [output_dir / str(i) for i in range(len(points))]
    for folder, texts in zip(folders, point_overrides):
        (folder / ".hydra").mkdir(parents=True, exist_ok=True)
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(texts, default_flow_style=False))
    files = run_batched(cfgs, folders, batch_size=batch_size, progress=progress)
    failed = Sweep(output_dir, points, list(files)).failures()  # a failed solve still has its path here
    return Sweep(output_dir, points, [None if folder in failed else file for folder, file in zip(folders, files)])
