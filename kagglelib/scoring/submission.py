"""Write and validate submission files.

Kaggle LMSYS / LLM Classification Finetuning (log loss): ``id,winner_model_a,winner_model_b,winner_tie``.
WSDM Cup (accuracy, A/B only): ``id,winner`` with ``model_a`` or ``model_b``, the side with the higher probability.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import write_csv
from ..data.load import load_arena


SUBMISSION_COLUMNS = ["id", "winner_model_a", "winner_model_b", "winner_tie"]
WSDM_COLUMNS = ["id", "winner"]
LAYOUTS = ("kaggle", "wsdm")


def write_submission(ids: np.ndarray | list, probs: np.ndarray, path: str | Path, layout: str = "kaggle") -> Path:
    """Write one row per id in the given order (``layout``: kaggle probabilities or WSDM winners). Atomic."""
    if layout not in LAYOUTS:
        raise ValueError(f"write_submission: layout must be one of {LAYOUTS}, got {layout!r}")
    probs = np.asarray(probs, dtype=np.float64)
    ids = list(ids)
    if probs.shape != (len(ids), 3):
        raise ValueError(f"write_submission: probs shape {probs.shape}, expected ({len(ids)}, 3)")
    if not np.isfinite(probs).all() or (probs < 0).any():
        row = int(np.flatnonzero(~np.isfinite(probs).all(axis=1) | (probs < 0).any(axis=1))[0])
        raise ValueError(f"write_submission: row {row} (id {ids[row]}) has invalid probabilities {probs[row]}")
    totals = probs.sum(axis=1, keepdims=True)
    if (totals <= 0).any():
        row = int(np.flatnonzero(totals[:, 0] <= 0)[0])
        raise ValueError(f"write_submission: row {row} (id {ids[row]}) probabilities sum to 0")
    probs = probs / totals
    if layout == "wsdm":   # ties do not exist there: the likelier of A and B (A on an exact tie)
        winner = np.where(probs[:, 0] >= probs[:, 1], "model_a", "model_b")
        return write_csv(pd.DataFrame({"id": ids, "winner": winner}), path)
    df = pd.DataFrame({"id": ids, "winner_model_a": probs[:, 0], "winner_model_b": probs[:, 1],
                       "winner_tie": probs[:, 2]})
    return write_csv(df, path)


def validate_submission(path: str | Path, test_path: str | Path, tol: float = 1e-6) -> pd.DataFrame:
    """Check a submission (either layout) against its test file; raise ValueError saying what is wrong."""
    path = Path(path)
    sub = pd.read_csv(path, dtype={"id": str})
    if list(sub.columns) not in (SUBMISSION_COLUMNS, WSDM_COLUMNS):
        raise ValueError(f"{path}: columns must be {SUBMISSION_COLUMNS} (Kaggle) or {WSDM_COLUMNS} (WSDM), "
                         f"got {list(sub.columns)}")
    test_ids = load_arena(test_path)["id"].astype(str).tolist()
    if len(sub) != len(test_ids):
        raise ValueError(f"{path}: {len(sub)} rows but the test file {test_path} has {len(test_ids)}")
    sub_ids = sub["id"].astype(str).tolist()
    for row, (got, want) in enumerate(zip(sub_ids, test_ids)):
        if got != want:
            raise ValueError(f"{path}: row {row} has id {got}, the test file has {want} there "
                             "(one row per test id, in test order)")
    if list(sub.columns) == WSDM_COLUMNS:
        bad_winner = ~sub["winner"].isin(["model_a", "model_b"])
        if bad_winner.any():
            row = int(np.flatnonzero(bad_winner.to_numpy())[0])
            raise ValueError(f"{path}: row {row} (id {sub_ids[row]}) column 'winner' must be model_a or model_b, "
                             f"got {sub['winner'].iloc[row]!r}")
        return sub
    probs = sub[SUBMISSION_COLUMNS[1:]].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(probs).all(axis=1) | (probs < 0).any(axis=1) | (probs > 1).any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: row {row} (id {sub_ids[row]}) has probabilities outside [0, 1]: {probs[row]}")
    off = np.abs(probs.sum(axis=1) - 1) > tol
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(f"{path}: row {row} (id {sub_ids[row]}) probabilities sum to {probs[row].sum():.6f}, not 1")
    return sub
