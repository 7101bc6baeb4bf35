"""`il2rd --describe [KEY ...] [OVERRIDE ...]`: each config key's value, unit and meaning.

The meaning and the unit come from the schema (schema.py, written once there with `described`);
the value shown is the one in the config `il2rd` composes (configs/config.yaml with the default
scenario, or with the overrides given, e.g. `il2rd --describe scenario=treg_source node`), which
may differ from the schema's own default (shown beside it for one key). Cell types are an open
mapping: their keys are listed once, as cell_types.<name>.<key>, with the defaults a type added
on the command line gets; `il2rd --describe cell_types.treg` shows one type's values. KEY may be
a key, a section (physics, node.follicles) or a config group (scenario); an unknown one is
answered with the nearest names and exit status 2.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from . import overrides
from .schema import CellTypeConfig, Il2rdConfig
from ..tables import wrap

TYPE = "<name>"  # stands for a cell type's name in cell_types.<name>.<key>
INDENT = "      "  # a listed key's meaning, under the key
# the config groups (configs/<group>/), chosen as GROUP=NAME; files starting with '_' are parts the
# presets share (scenario/_node.yaml), not choices, and are not listed
GROUPS = {
    "scenario": ("scenario=NAME", "the cell population, and what a preset changes (configs/scenario/)"),
    "cell_type": ("+cell_type@cell_types.<name>=TYPE", "a cell type from the library, added as cell_types.<name> "
                  "(configs/cell_type/)"),
    "sweep": ("+sweep=NAME", "a multirun preset: the swept keys and where the runs go (configs/sweep/)"),
    "hydra/launcher": ("hydra/launcher=NAME", "how a multirun's jobs run (basic: Hydra's, one after another; "
                       "il2rd_batched: as vmapped batches, hydra_plugins/; others: configs/hydra/launcher/)"),
}


class UnknownKey(LookupError):
    """A KEY that is neither a config key, a section nor a config group (the message names the nearest)."""


@dataclass(frozen=True)
class Key:
    name: str  # dotted: physics.diffusion, node.follicles.count, cell_types.<name>.secretion
    section: str  # the dotted section it is in ('' for a top-level key)
    help: str
    unit: str
    schema_default: Any
    free_form: bool = False  # its value may be a mapping (grid.boundary: {x_lo: fixed}), its parts not keys


@dataclass(frozen=True)
class Section:
    name: str
    help: str


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _free_form(hint) -> bool:
    """Whether a field's type lets its value be a mapping or anything (Any, Dict, Optional of those)."""
    if hint is Any:
        return True
    if typing.get_origin(hint) is typing.Union:
        return any(_free_form(a) for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) is dict


def _sentence(text: str) -> str:
    """A docstring's first paragraph on one line, starting lower-case after 'section:' (unless an
    abbreviation: EC50, B-cell), without its full stop."""
    text = " ".join(text.strip().split("\n\n")[0].split())
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    return text[:-1] if text.endswith(".") else text


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def schema(cls=Il2rdConfig, prefix: str = "") -> tuple[list[Section], list[Key]]:
    """Every section and key of the schema, in its order; cell_types.<name>.* from CellTypeConfig."""
    sections, keys = [], []
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        hint = _hints(cls)[f.name]
        nested = hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None
        if name == "cell_types":
            nested, name = CellTypeConfig, f"cell_types.{TYPE}"
        if nested is not None:
            sections.append(Section(name, _sentence(f.metadata.get("help", ""))))
            inner_sections, inner_keys = schema(nested, f"{name}.")
            sections += inner_sections
            keys += inner_keys
        else:
            keys.append(Key(name, prefix[:-1], f.metadata.get("help", ""), f.metadata.get("unit", ""), _default(f),
                            _free_form(hint)))
    return sections, keys


def show(value: Any) -> str:
    """A value as it is written in a config or on the command line."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def compose(extra: list[str] = ()) -> DictConfig:
    """The config `il2rd <extra>` would run with, its Hydra node included (hydra.runtime.choices)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from .schema import config_dir, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose("config", overrides=list(extra), return_hydra_config=True)


def _entry(key: Key, value: Any, schema_default: bool = False, indent: str = "  ") -> list[str]:
    """`key = value  (unit)`, then its meaning below it, indented; schema_default: and the schema's
    own default where it differs from the value (a key that configs/config.yaml or a preset sets)."""
    unit = f"  ({key.unit})" if key.unit else ""
    lines = wrap(f"{key.name} = {show(value)}{unit}", initial=indent, indent=indent + "    ")
    lines += wrap(key.help, initial=indent + "    ", indent=indent + "    ")
    if schema_default and show(value) != show(key.schema_default):
        lines += wrap(f"(the schema's default, for a config that does not set it: {show(key.schema_default)})",
                      initial=indent + "    ", indent=indent + "    ")
    return lines


def _value(cfg: DictConfig, key: Key, type_name: str | None = None) -> Any:
    if key.section == f"cell_types.{TYPE}":
        field = key.name.rsplit(".", 1)[1]
        if type_name is None:
            return key.schema_default  # what a type added on the command line gets
        return OmegaConf.select(cfg, f"cell_types.{type_name}.{field}", default=key.schema_default)
    return OmegaConf.select(cfg, key.name, default=None)


def _types(cfg: DictConfig) -> list[str]:
    return list(cfg.get("cell_types") or {})


def _options(group: str) -> list[str]:
    from .schema import config_dir

    folder = config_dir() / group
    names = sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_")) if folder.is_dir() else []
    return (["basic", "il2rd_batched"] + names) if group == "hydra/launcher" else names


def _section_lines(section: Section, keys: list[Key], cfg: DictConfig) -> list[str]:
    lines = wrap(f"{section.name}: {section.help}" if section.help else f"{section.name}:", indent="  ")
    if section.name == f"cell_types.{TYPE}":
        lines += wrap(f"this config's types: {', '.join(_types(cfg)) or 'none'} (their values: il2rd --describe "
                      f"cell_types.<type>); below, the defaults a type added with + gets", initial="  ", indent="  ")
    for key in keys:
        if key.section == section.name:
            lines += _entry(key, _value(cfg, key))
    return lines


def _group_lines(group: str, cfg: DictConfig) -> list[str]:
    usage, help_ = GROUPS[group]
    chosen = OmegaConf.select(cfg, f"hydra.runtime.choices.{group}", default=None)
    head = f"  {usage}" + (f"  (here: {chosen})" if chosen else "")
    return [head, *wrap(f"{help_}: {', '.join(_options(group))}", initial=INDENT, indent=INDENT)]


def listing(cfg: DictConfig | None = None) -> str:
    """Every key, grouped by section, then the config groups: the text of `il2rd --describe`."""
    cfg = cfg if cfg is not None else compose()
    sections, keys = schema()
    scenario = OmegaConf.select(cfg, "hydra.runtime.choices.scenario", default=None)
    lines = [*wrap("il2rd configuration keys, by section: KEY = its value in this config (unit), then its meaning."),
             *wrap(f"This config: configs/config.yaml{f' with scenario={scenario}' if scenario else ''} and the overrides "
                   "given; il2rd --describe OVERRIDE ... shows another (e.g. scenario=treg_source), il2rd --describe KEY "
                   "one key, section or group.")]
    top = [k for k in keys if not k.section]
    for section in sections:
        lines += ["", *_section_lines(section, keys, cfg)]
    lines += ["", "top-level keys:"]
    for key in top:
        lines += _entry(key, _value(cfg, key))
    lines += ["", "config groups, chosen with GROUP=NAME (files starting with _ are shared parts, not choices):"]
    for group in GROUPS:
        lines += _group_lines(group, cfg)
    return "\n".join(lines)


def one(name: str, cfg: DictConfig | None = None) -> str:
    """The text of `il2rd --describe NAME`: one key, one section or one config group (raises UnknownKey)."""
    cfg = cfg if cfg is not None else compose()
    sections, keys = schema()
    by_name = {k.name: k for k in keys}
    if name in GROUPS:
        return "\n".join(["config group:", *_group_lines(name, cfg)])
    if name in by_name:
        return "\n".join(_entry(by_name[name], _value(cfg, by_name[name]), True, indent=""))
    for section in sections:
        if name == section.name or (section.name == f"cell_types.{TYPE}" and name == "cell_types"):
            return "\n".join(_section_lines(section, keys, cfg))
    parts = name.split(".")
    per_type = by_name.get(f"cell_types.{TYPE}.{parts[-1]}")
    if parts[0] == "cell_types" and len(parts) == 2 and per_type is not None and parts[1] not in _types(cfg):
        return "\n".join(_entry(per_type, per_type.schema_default, True, indent=""))  # cell_types.speed: every type's key
    if parts[0] == "cell_types" and len(parts) in (2, 3) and parts[1] != TYPE:
        type_name = parts[1]
        known = type_name in _types(cfg)
        if len(parts) == 2 and known:
            lines = [f"cell_types.{type_name}: the cell type {type_name} of this config"]
            for key in keys:
                if key.section == f"cell_types.{TYPE}":
                    field = key.name.rsplit(".", 1)[1]
                    lines += _entry(dataclasses.replace(key, name=f"cell_types.{type_name}.{field}"),
                                    _value(cfg, key, type_name))
            return "\n".join(lines)
        generic = by_name.get(f"cell_types.{TYPE}.{parts[2]}") if len(parts) == 3 else None
        if generic is not None:
            entry = dataclasses.replace(generic, name=name)
            if known:
                return "\n".join(_entry(entry, _value(cfg, generic, type_name), True, indent=""))
            return "\n".join([*_entry(entry, generic.schema_default, indent=""),
                              *wrap(f"({type_name} is not a type of this config, which has {', '.join(_types(cfg))}; "
                                    f"the value shown is what +{name}=... would start from)", initial="    ",
                                    indent="    ")])
    for i in range(len(parts) - 1, 0, -1):  # grid.boundary.x_lo: a part of a free-form value (a mapping)
        key = by_name.get(".".join(parts[:i]))
        if key is not None and key.free_form:
            return "\n".join(_entry(key, _value(cfg, key), True, indent=""))
    raise UnknownKey(_unknown(name, [k.name for k in keys], [s.name for s in sections], cfg))


def _unknown(name: str, keys: list[str], sections: list[str], cfg: DictConfig) -> str:
    """Why `name` is not a key, with the nearest names: keys ending the same (diffusion:
    physics.diffusion), else the closest spellings of the whole name and of its last part."""
    names = [*keys, *sections, *GROUPS]
    if name.startswith("cell_types.") and name.count(".") >= 1:  # cell_types.treg.recptors: the type's own names
        type_name = name.split(".")[1]
        names += [k.replace(TYPE, type_name) for k in keys if k.startswith(f"cell_types.{TYPE}.")]
    last = name.rsplit(".", 1)[-1]
    close = [n for n in names if n.rsplit(".", 1)[-1] == last and n != name and TYPE not in n]
    close = close or overrides.nearest(name, names, n=3)
    if not close:
        by_last = {}
        for n in names:
            by_last.setdefault(n.rsplit(".", 1)[-1], []).append(n)
        close = [n for part in overrides.nearest(last, list(by_last), n=3) for n in by_last[part]][:4]
    guess = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"{name} is not a config key, section or group{guess} (il2rd --describe lists them all)"


def main(argv: list[str]) -> int:
    """`il2rd --describe [KEY ...] [OVERRIDE ...]` (argv: the command's arguments); the exit status."""
    import os
    import sys

    from hydra.errors import HydraException

    rest = [a for a in argv if a != "--describe"]
    rest += [a.split("=", 1)[1] for a in argv if a.startswith("--describe=")]
    rest = [a for a in rest if not a.startswith("--describe=")]
    extra = [a for a in rest if "=" in a or a.startswith(("~", "+"))]
    names = [a for a in rest if a not in extra]
    try:
        cfg = compose(extra)
    except HydraException as err:  # a bad override: Hydra's message on one line, without its search path
        lines = [line.strip() for line in str(err).split("Config search path")[0].splitlines() if line.strip()]
        print(f"il2rd: error: {lines[0]}" + (f"; {' '.join(lines[1:])}" if lines[1:] else ""), file=sys.stderr)
        return 2
    try:
        print("\n\n".join(one(n, cfg) for n in names) if names else listing(cfg), flush=True)
    except UnknownKey as err:
        print(f"il2rd: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `il2rd --describe | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
    return 0

