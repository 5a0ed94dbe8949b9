"""Checks of settings where they are set: each config dataclass lists its fields' ranges, one function applies them.

A rule is a short string naming the kind and range of one field::

    "int>=1"  "int>=0"  "int>=2"  "num>0"  "num>=0"  "[0,1]"  "[0,1)"  "(0,1]"

``int`` fields take Python ints only (``True`` and ``"8"`` are refused: papermill's ``-r`` passes text, and a bool
is an int to Python); ``num`` and interval fields take ints or floats, never bools or NaN. ``None`` is left to the
caller (the profile fills it, or the field means "off"). Errors name the class, the field and the value.
"""
from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

_BOUNDS = {"num>0": "> 0", "num>=0": ">= 0"}
_INTERVALS = {"[0,1]": (False, False), "[0,1)": (False, True), "(0,1]": (True, False), "(0,1)": (True, True)}


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_num(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and not math.isnan(value)


def check_value(owner: str, name: str, value: Any, rule: str) -> None:
    """Raise ValueError when ``value`` breaks ``rule`` (see the module docstring); None passes."""
    if value is None:
        return
    if rule.startswith("int>="):
        low = int(rule[5:])
        if not _is_int(value) or value < low:
            raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")
    elif rule in _BOUNDS:
        ok = _is_num(value) and (value > 0 if rule == "num>0" else value >= 0) and value != math.inf
        if not ok:
            raise ValueError(f"{owner}: {name} must be a number {_BOUNDS[rule]}, got {value!r}")
    elif rule in _INTERVALS:
        open_low, open_high = _INTERVALS[rule]
        ok = _is_num(value) and (value > 0 if open_low else value >= 0) and (value < 1 if open_high else value <= 1)
        if not ok:
            raise ValueError(f"{owner}: {name} must be a number in {rule.replace(',', ', ')}, got {value!r}")
    else:   # a typo in a rule table is the developer's error, found by any test that builds the config
        raise KeyError(f"unknown setting rule {rule!r} for {owner}.{name}")


def check_settings(cfg: Any, rules: dict[str, str]) -> None:
    """Apply ``rules`` (field -> rule) to the fields of ``cfg``."""
    owner = type(cfg).__name__
    for name, rule in rules.items():
        check_value(owner, name, getattr(cfg, name), rule)


OUTPUT_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def table_format(path: str | Path, what: str = "output") -> str:
    """'csv' or 'parquet' from a table file's name; a ValueError for any other name (the format is never guessed)."""
    name = Path(path).name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    raise ValueError(f"{what} {path}: the name must end in .csv, .csv.gz or .parquet (the file is written in the "
                     "format its name says)")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same resolved path, or the same inode (hard and symbolic links)."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_input(out: str | Path, inputs: Any, what: str = "output") -> None:
    """ValueError when ``out`` is one of ``inputs`` (paths, or comma-separated lists of paths)."""
    from .io import comma_list

    for item in inputs or ():
        for inp in (comma_list(item) if isinstance(item, str) else [item]):
            if inp and same_file(out, inp):
                raise ValueError(f"{what} {out} is an input of this step ({inp}); writing it would destroy that "
                                 "input: choose another file name")


def check_run_name(run_name: Any) -> None:
    """A run name is one plain folder name under ``runs/`` (no path, not hidden: hidden names are the suite's own)."""
    if not isinstance(run_name, str) or not run_name or "/" in run_name or "\\" in run_name \
            or run_name in (".", "..") or run_name.startswith("."):
        raise ValueError(f"run_name must be a plain folder name, got {run_name!r}")
