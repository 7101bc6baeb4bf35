"""Plain-text tables for the terminal: at most WIDTH characters a line, '-' where there is no value.

:func:`table` lays out labelled rows under column headers; columns that do not fit the width
continue in a further block below, with the row labels repeated, so that a run with many cell
types or sources still prints lines a terminal does not wrap. :func:`wrap` folds the prose lines
(a table's footnote, the balance) to the same width.
"""

from __future__ import annotations

import math
import textwrap

WIDTH = 120  # characters a printed line may take
GAP = 3  # spaces at least between two columns


def value(x, spec: str = ".4g") -> str:
    """`x` formatted with `spec`; '-' for None or NaN (no value: a mean over no cells)."""
    if _missing(x):
        return "-"
    return format(x, spec)


def percent(x) -> str:
    """A share as a percentage with one decimal: '-' for NaN, '0' for exactly none, '<0.05%' for a
    share that is not zero but would print as 0.0%."""
    if _missing(x):
        return "-"
    if x == 0:
        return "0"
    if 0 < x < 0.0005:
        return "<0.05%"
    return f"{x:.1%}"


def _missing(x) -> bool:
    try:
        return x is None or math.isnan(x)
    except TypeError:  # not a number (a string): a value
        return False


def table(corner: str, headers: list[str], rows: list[tuple[str, list[str] | None]], units: list[str] | None = None,
          width: int = WIDTH) -> list[str]:
    """The lines of a table: a header line (`corner` above the labels, then `headers`), a line of
    `units` if given, then each (label, cells) row; a row whose cells are None is a label on its
    own (a sub-heading). Labels are left-aligned, cells right-aligned. Columns beyond `width`
    continue in another block (after an empty line) with the labels again."""
    units = units or [""] * len(headers)
    label_width = max(len(corner), *(len(label) for label, _ in rows)) if rows else len(corner)
    widths = [GAP + max(len(h), len(u), *(len(cells[j]) for _, cells in rows if cells is not None))
              for j, (h, u) in enumerate(zip(headers, units))]
    blocks, start = [], 0
    while start < len(headers):  # as many columns as fit, at least one
        end, used = start + 1, label_width + widths[start]
        while end < len(headers) and used + widths[end] <= width:
            used += widths[end]
            end += 1
        blocks.append(range(start, end))
        start = end
    lines = []
    for b, block in enumerate(blocks or [range(0)]):
        if b:
            lines.append("")
        lines.append(f"{corner:<{label_width}}" + "".join(f"{headers[j]:>{widths[j]}}" for j in block))
        if any(units[j] for j in block):
            lines.append(" " * label_width + "".join(f"{units[j]:>{widths[j]}}" for j in block))
        for label, cells in rows:
            if cells is None:
                lines.append(label)
            else:
                lines.append(f"{label:<{label_width}}" + "".join(f"{cells[j]:>{widths[j]}}" for j in block))
    return [line.rstrip() for line in lines]


def wrap(text: str, width: int = WIDTH, indent: str = " ", initial: str = "") -> list[str]:
    """`text` folded into lines of at most `width` characters: the first line starts with `initial`,
    the others with `indent`."""
    return textwrap.wrap(text, width, initial_indent=initial, subsequent_indent=indent, break_on_hyphens=False,
                         break_long_words=False)
