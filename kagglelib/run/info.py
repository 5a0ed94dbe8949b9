"""What a run records about itself in ``run_info.json``: kind, label layout, inference needs, provenance."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.io import write_csv, write_json
from ..core.versions import library_versions
from ..data.folds import split_paths
from ..data.frame import content_fingerprint, is_soft, prob_frame, rule_masks, soft_rows, targets
from .layout import RULE_FLAGS, RUN_INFO, SUBMISSION_COLUMNS


def rule_flags(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """0/1 columns saying which post-processing rule applies to each row (identical / one side empty)."""

    return {k: v.astype(np.int8) for k, v in rule_masks(df).items()}


def write_heldout(path: str | Path, rows: pd.DataFrame, probs: np.ndarray, folds: np.ndarray) -> pd.DataFrame:
    """The one held-out predictions file of every producer (02's OOF, 03/04's fold, all folds' OOF).

    Columns: id, fold, label, ``soft`` when some row's targets are not one-hot (a pseudo-label or teacher output,
    not a human label: 05 fits nothing on it), the three probabilities, the rule flags. Returns the table written.
    """
    extra: dict[str, Any] = {"fold": np.asarray(folds), "label": rows["label"].to_numpy()}
    if is_soft(rows):
        extra["soft"] = soft_rows(targets(rows))
    table = prob_frame(rows["id"], probs, **extra).assign(**rule_flags(rows))
    write_csv(table, path)
    return table


def provenance(train: pd.DataFrame, train_path: str | Path) -> dict[str, Any]:
    """Where a run's training rows came from: file name(s), rows, content fingerprint (never read back)."""

    return {"train_file": ",".join(Path(p).name for p in split_paths(train_path)), "n_rows": int(len(train)),
            "content_fingerprint": content_fingerprint(train)}


def write_run_info(run_dir: str | Path, kind: str, layout: str, source: dict[str, Any], **extra: Any) -> Path:
    """Write ``run_info.json``: kind, label layout + submission columns, provenance, library versions, needs."""
    info = {"format": 1, "kind": kind, "layout": layout, "submission_columns": SUBMISSION_COLUMNS[layout],
            "heldout_rule_flags": list(RULE_FLAGS), "provenance": source, "libraries": library_versions(), **extra}
    return write_json(info, Path(run_dir) / RUN_INFO)
