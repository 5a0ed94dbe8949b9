"""Library versions a run was made with, recorded in ``run_info.json`` and compared when the run is loaded.

A run trained with another major/minor release of these libraries than the loading machine's (Kaggle's image
lags behind: its transformers/peft are older than a fresh Colab install) may load with different defaults or
fail in a way that does not name the cause, so loading warns, naming each library and both versions.
"""
from __future__ import annotations

import re
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "tokenizers")


def library_versions() -> dict[str, str | None]:
    """Installed version of each library in :data:`LIBRARIES` (None when not installed), read without importing."""
    found: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def major_minor(version: str) -> tuple[int, ...]:
    """(major, minor) of a version string: ``2.13.0+cpu`` -> (2, 13)."""
    return tuple(int(x) for x in re.findall(r"\d+", version)[:2])


def version_mismatches(recorded: dict[str, Any], installed: dict[str, str | None] | None = None) -> list[str]:
    """One line per library whose major or minor version differs between a run's record and this machine."""
    installed = library_versions() if installed is None else installed
    lines = []
    for name in LIBRARIES:
        then, now = recorded.get(name), installed.get(name)
        if then and now and major_minor(then) != major_minor(now):
            lines.append(f"{name} {then} (run) vs {now} (here)")
    return lines


def warn_on_mismatch(run_dir: str | Path, info: dict[str, Any] | None) -> list[str]:
    """Warn when a run's recorded library versions differ (major/minor) from the installed ones; returns the lines."""
    recorded = (info or {}).get("libraries") or {}
    lines = version_mismatches(recorded)
    if lines:
        warnings.warn(f"{Path(run_dir).name}: made with other library versions than this machine's: "
                      f"{'; '.join(lines)}. Its predictions may differ or loading may fail; install the run's "
                      "versions (pip install NAME==VERSION) if they do.", stacklevel=2)
    return lines
