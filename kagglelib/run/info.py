"""What a run records about itself in ``run_info.json``: kind, label layout, inference needs, provenance."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.io import read_json, write_json
from ..data.folds import split_paths
from ..data.frame import content_fingerprint, rule_masks
from .layout import RULE_FLAGS, RUN_INFO, SUBMISSION_COLUMNS


def rule_flags(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """0/1 columns saying which post-processing rule applies to each row (identical / one side empty)."""

    return {k: v.astype(np.int8) for k, v in rule_masks(df).items()}


def provenance(train: pd.DataFrame, train_path: str | Path) -> dict[str, Any]:
    """Where a run's training rows came from: file name(s), rows, content fingerprint (never read back)."""

    return {"train_file": ",".join(Path(p).name for p in split_paths(train_path)), "n_rows": int(len(train)),
            "content_fingerprint": content_fingerprint(train)}


def write_run_info(run_dir: str | Path, kind: str, layout: str, source: dict[str, Any], **extra: Any) -> Path:
    """Write ``run_info.json``: kind, label layout + submission columns, provenance and inference needs."""
    info = {"format": 1, "kind": kind, "layout": layout, "submission_columns": SUBMISSION_COLUMNS[layout],
            "heldout_rule_flags": list(RULE_FLAGS), "provenance": source, **extra}
    return write_json(info, Path(run_dir) / RUN_INFO)


def read_run_info(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's ``run_info.json``, or None for a run made before runs recorded it."""
    path = Path(run_dir) / RUN_INFO
    return read_json(path) if path.exists() else None
