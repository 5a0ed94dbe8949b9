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


def check_run_name(run_name: Any) -> None:
    """A run name is one plain folder name under ``runs/`` (no path, not hidden: hidden names are the suite's own)."""
    if not isinstance(run_name, str) or not run_name or "/" in run_name or "\\" in run_name \
            or run_name in (".", "..") or run_name.startswith("."):
        raise ValueError(f"run_name must be a plain folder name, got {run_name!r}")
