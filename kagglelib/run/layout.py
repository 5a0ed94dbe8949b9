"""What the notebooks leave on disk, and finding and listing finished runs.

A run folder ``<output_dir>/runs/<run_name>/`` holds ``CONFIG`` and ``METRICS`` (the names: :mod:`.names`); a model
run also holds its held-out predictions (``HELDOUT_FILES``: 02's OOF, 03/04's validation fold). Notebook 01 adds the
``EDA_FIGURES``; notebook 06 writes the ablation files into ``<output_dir>/ABLATION_DIR/``, which
``report.py`` reads back for the README.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import comma_list, read_csv_table
from ..core.paths import KAGGLE_INPUT
from ..data.frame import WINNER_COLUMNS
# The run folder's file names live in .names; re-exported here for the notebooks and tests that import them.
from .names import (CONFIG, HELDOUT_FILES, LOSS_CURVE, METRICS, MODEL_DIR, OOF, PREDICTOR, RUN_INFO,  # noqa: F401
                    SUBMISSION, TEST_PREDS, VALID_PREDS, RunPaths)
from .store import RunError, manifest_hash, verify_run


# Notebook 01 (eda.run_eda): one figure per section.
EDA_FIGURES = {"label_balance": "label_balance.png", "lengths": "lengths.png", "verbosity_bias": "verbosity_bias.png",
               "tie_vs_similarity": "tie_vs_similarity.png", "model_win_rates": "model_win_rates.png"}
# Notebook 06 (ablation.run_ablation), all under <output_dir>/ABLATION_DIR/.
ABLATION_DIR = "ablation"
ABLATION_TABLE_CSV = "ablation_table.csv"
ABLATION_TABLE_MD = "ablation_table.md"
CALIBRATION_CSV = "calibration.csv"
BIAS_REPORT = "bias_report.json"
ABLATION_FIGURES = {"ablation": "ablation_log_loss.png", "reliability": "reliability.png", "bias": "bias_probes.png",
                    "factors": "factor_effects.png"}


def heldout_file(run_dir: str | Path) -> Path | None:
    """The run's held-out predictions file (``oof.csv`` or ``valid_preds.csv``), or None."""
    return RunPaths(Path(run_dir)).heldout_file


def heldout_predictions(run_dir: Path) -> pd.DataFrame | None:
    """A run's labelled held-out predictions (oof.csv or valid_preds.csv), or None."""
    path = heldout_file(run_dir)
    df = read_csv_table(path) if path is not None else None
    return df if df is not None and "label" in df.columns else None


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions CSV (id + the 3 winner columns, maybe label/fold), indexed by id as str (read as text:
    a zero-padded id such as ``007`` stays ``007``)."""
    df = read_csv_table(path)
    missing = [c for c in ["id", *WINNER_COLUMNS] if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    df["id"] = df["id"].astype(str)
    return df.set_index("id")


def labels_and_probs(preds: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(labels, (n, 3) probabilities) of a held-out predictions table."""
    return preds["label"].to_numpy(dtype=np.int64), preds[list(WINNER_COLUMNS)].to_numpy(dtype=np.float64)


def list_runs(output_dir: str | Path, include: str = "", exclude: str = "") -> list[Path]:
    """Model runs (config, metrics, held-out predictions) under ``output_dir/runs``, filtered by name.

    Each must match its manifest (:func:`kagglelib.runs.verify_run`), else ``RunError`` names the run and file.
    """
    runs = sorted(p.parent for p in Path(output_dir).glob(f"runs/*/{METRICS}")
                  if (p.parent / CONFIG).exists() and heldout_predictions(p.parent) is not None)
    keep, drop = set(comma_list(include)), set(comma_list(exclude))
    runs = [r for r in runs if (not keep or r.name in keep) and r.name not in drop]
    for r in runs:   # a run from mixed generations or without a manifest is refused, not tabulated
        try:
            verify_run(r)
        except RunError as err:
            raise RunError(f"{err} (or leave it out of the table: exclude={r.name!r})") from None
    return runs


RULE_FLAGS = ("identical", "empty_a", "empty_b")   # ensemble.rule_masks, stored per held-out row
SUBMISSION_COLUMNS = {"kaggle": ["id", "winner_model_a", "winner_model_b", "winner_tie"], "wsdm": ["id", "winner"]}


def run_dir(output_dir: str | Path, run_name: str) -> Path:
    """``<output_dir>/runs/<run_name>``, created if needed."""
    if not run_name or "/" in run_name or run_name in (".", ".."):
        raise ValueError(f"run_name must be a plain folder name, got {run_name!r}")
    path = Path(output_dir) / "runs" / run_name
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_run(name_or_path: str | Path, output_dir: str | Path | None = None) -> Path:
    """Locate a run folder (with config.json) by path, by name under output_dir/runs, or under /kaggle/input.

    The run must match its manifest (:func:`kagglelib.runs.verify_run`), else ``RunError`` names the file.
    """
    candidates = [Path(name_or_path)]
    if output_dir is not None:
        candidates.append(Path(output_dir) / "runs" / str(name_or_path))
    for c in candidates:
        if (c / CONFIG).exists():
            verify_run(c)   # refuses an unfinished run, one from mixed generations, or one without a manifest
            return c
    attached = [c for c in [*KAGGLE_INPUT.glob(f"*/runs/{name_or_path}"), *KAGGLE_INPUT.glob(f"*/{name_or_path}")]
                if (c / CONFIG).exists()]
    candidates += attached
    for c in attached:
        verify_run(c)
    generations = {manifest_hash(c) for c in attached}
    if len(generations) > 1:   # two attached datasets, two generations: never pick one
        raise RunError(f"{len(generations)} different runs named {str(name_or_path)!r} are attached: "
                       f"{[str(c) for c in attached]}; remove the stale dataset or pass the run's folder")
    if attached:
        return attached[0]
    raise FileNotFoundError(f"run {name_or_path!r} not found (a folder with config.json); tried "
                            f"{[str(c) for c in candidates]}")
