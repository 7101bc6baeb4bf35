"""Command-line overrides checked against the config schema before Hydra composes them.

Hydra refuses an unknown key with "Key 'spacng' not in 'GridConfig'" and a hint to append it with
`+`, which for a typo is the wrong advice. :func:`check` walks each `key=value` override down the
schema (schema.Il2rdConfig; cell_types.<name>.<field> against CellTypeConfig) and names the key,
the nearest allowed names and all of them, before any work starts; a value that is not the number
(or list of numbers) its key holds is refused naming the key, the value, the unit and the default
(OmegaConf's own message names neither the unit nor what to write). Appends (`+key=`), deletions
(`~key`), Hydra's own keys (`hydra.*`), config groups (`scenario=t_zone`) and options (`-m`) are
left to Hydra.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing

from .schema import CellTypeConfig, Il2rdConfig

_OPEN_MAPPINGS = {("cell_types",): CellTypeConfig}  # a mapping of names to one schema


def nearest(name: str, names: list[str], n: int = 3) -> list[str]:
    """Up to n of `names` spelled most like `name` (difflib's ratio >= 0.6), nearest first."""
    return difflib.get_close_matches(name, names, n=n, cutoff=0.6)


def _resolve(parts: list[str]):
    """Walk a dotted key's parts down the schema. Returns ("unknown", i, names): part i is not among
    its node's field names; ("free", None, None): it leads into a free-form value (a boundary mapping,
    a region), checked when the run is parsed; or ("field", field, type hint) of the last part (a
    dataclasses.Field; None for a cell type's name under cell_types)."""
    node, walked, found = Il2rdConfig, [], (None, None)
    for i, part in enumerate(parts):
        if tuple(walked) in _OPEN_MAPPINGS:  # any name (a cell type), then its schema
            walked.append(part)
            node, found = _OPEN_MAPPINGS[tuple(walked[:-1])], (None, None)
            continue
        if not (isinstance(node, type) and dataclasses.is_dataclass(node)):
            return "free", None, None
        fields = {f.name: f for f in dataclasses.fields(node)}
        if part not in fields:
            return "unknown", i, list(fields)
        walked.append(part)
        found = fields[part], typing.get_type_hints(node)[part]
        node = _field_type(node, part)
    return "field", *found


def unknown_key(key: str, groups: tuple[str, ...] = ()) -> str | None:
    """Why `key` (dotted, e.g. grid.spacng) is not in the schema, with the nearest names; None if it is."""
    parts = key.split(".")
    if parts[0] in groups or parts[0] == "hydra" or "@" in key or "/" in key:  # groups (also hydra/launcher,
        return None  # cell_type@cell_types.x) and Hydra's own keys are Hydra's to check
    outcome, i, names = _resolve(parts)
    if outcome != "unknown":
        return None
    where = ".".join(parts[:i]) or "the config"
    close = nearest(parts[i], names)
    guess = f"; did you mean {' or '.join('.'.join([*parts[:i], c, *parts[i + 1:]]) for c in close)}?" if close else ""
    return f"{key} is not a config key{guess} ({where} has: {', '.join(names)})"


def _field_type(cls, name):
    hint = typing.get_type_hints(cls)[name]
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


_NUMBERS = {float: "a number", int: "a whole number"}
_NULLS = ("null", "~", "none")


def _number_kind(hint):
    """(float or int, whether a list of them, whether null is allowed) of a numeric field, else None."""
    args = typing.get_args(hint)
    optional = type(None) in args
    inner = [a for a in args if a is not type(None)]
    if optional and len(inner) == 1:
        hint = inner[0]
    if hint in _NUMBERS:
        return hint, False, optional
    if typing.get_origin(hint) in (list, typing.List) and typing.get_args(hint) and typing.get_args(hint)[0] in _NUMBERS:
        return typing.get_args(hint)[0], True, optional
    return None


def _parses(text: str, kind) -> bool:
    try:
        number = float(text)
    except ValueError:
        return False
    return kind is float or number.is_integer()


def bad_value(key: str, value: str) -> str | None:
    """Why `value` cannot be the number (or list of numbers) the schema's `key` holds, naming the
    key, the value, the unit and the default; None if it can, or if it is anything but a plain
    literal (interpolations, sweeps such as range(...), which Hydra resolves)."""
    if key.split(".")[0] in {path[0] for path in _OPEN_MAPPINGS}:
        return None  # a cell type's values: config/cell_types.py names the type's own default and bounds
    outcome, field, hint = _resolve(key.split("."))
    numeric = _number_kind(hint) if outcome == "field" and field is not None else None
    if numeric is None or any(ch in value for ch in "$(){}"):
        return None
    kind, is_list, optional = numeric
    text = value.strip()
    if optional and text.lower() in _NULLS:
        return None
    if is_list:
        if not (text.startswith("[") and text.endswith("]")):
            return None  # a sweep of lists or another form: Hydra's to parse
        items = [t.strip() for t in text[1:-1].split(",") if t.strip()]
    else:
        items = [t.strip() for t in text.split(",")]  # a multirun sweep: each value
    wrong = [t for t in items if not _parses(t, kind)]
    if not wrong:
        return None
    unit = field.metadata.get("unit", "")
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    what = f"a list of {_NUMBERS[kind].split(' ', 1)[1]}s" if is_list else _NUMBERS[kind]
    allowed = f"{what}{f' ({unit})' if unit else ''}{' or null' if optional else ''}"
    example = str(default).replace(" ", "") if default is not None else "null"
    which = "" if wrong[0] == text else f": {wrong[0]!r}"
    return f"{key} = {value!r}{which} is not {_NUMBERS[kind]}; {key} takes {allowed}, e.g. {key}={example}"


def unknown_option(group: str, value: str, options: list[str]) -> str | None:
    """Why `group=value` names no config of the group (each of a multirun's comma-separated values),
    with the nearest names and the group's own ones (not those starting with _, which are shared
    parts of the others); None if it names one."""
    shown = sorted(o for o in options if not o.startswith("_"))
    for one in value.split(","):
        if one.strip() and one.strip() not in options:
            close = nearest(one.strip(), shown) or [o for o in shown if one.strip() in o][:3]
            guess = f"; did you mean {' or '.join(f'{group}={c}' for c in close)}?" if close else ""
            return (f"{group}={one.strip()}: there is no configs/{group}/{one.strip()}.yaml{guess} "
                    f"({group} has: {', '.join(shown)})")
    return None


def check(arguments: list[str], groups: tuple[str, ...] = (), options: dict[str, list[str]] | None = None) -> str | None:
    """The first unknown key among command-line `arguments` (module docstring), or unknown option
    of a config group (options: {group: its config names}), as a message."""
    for argument in arguments:
        if argument.startswith(("-", "+", "~")) or "=" not in argument:
            continue
        key, value = argument.split("=", 1)
        problem = (unknown_option(key, value, options[key]) if key in (options or {}) and "(" not in value
                   else unknown_key(key, groups) or bad_value(key, value))
        if problem:
            return problem
    return None
