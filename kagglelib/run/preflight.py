"""Checks a long run makes before its expensive part: what would otherwise fail (or mislead) after hours of training.

Each function raises ValueError naming the file, row and setting; none loads a model.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data.frame import soft_rows, targets


def repeated_ids(df: pd.DataFrame) -> tuple[str, list[int]] | None:
    """The first id (as text) that occurs on several rows, with those row numbers; None when ids are unique."""
    ids = df["id"].astype(str)
    dup = ids.duplicated(keep=False).to_numpy()
    if not dup.any():
        return None
    first = ids.iloc[int(np.flatnonzero(dup)[0])]
    return first, np.flatnonzero((ids == first).to_numpy()).tolist()


def check_unique_ids(df: pd.DataFrame, where: str, why: str) -> None:
    """ValueError when an id repeats: ``why`` says which table is built by id."""
    found = repeated_ids(df)
    if found is not None:
        first, at = found
        n = int(df["id"].astype(str).duplicated().sum())
        raise ValueError(f"{where}: id {first!r} occurs on rows {' and '.join(map(str, at[:3]))} ({n} repeated ids "
                         f"in all); {why}, so ids must be unique (found before any model is loaded; give the rows distinct ids)")


def check_training_rows(cfg: Any, df: pd.DataFrame, folds: np.ndarray, fold_ids: list[int]) -> None:
    """Before any fold trains: ids unique where a table is built by id, one-hot rows in every validation fold."""
    if cfg.folds:
        check_unique_ids(df, cfg.train_path, f"folds={cfg.folds!r} builds the out-of-fold table by id")
    if cfg.teacher:
        check_unique_ids(df, cfg.train_path, "the teacher's predictions are matched to the rows by id")
    check_one_hot_folds(df, folds, fold_ids, cfg.train_path)


def check_one_hot_folds(df: pd.DataFrame, folds: np.ndarray, fold_ids: Any, where: str) -> None:
    """ValueError when a validation fold has no rows with one-hot labels (metrics and calibration need them)."""
    hard = ~soft_rows(targets(df))
    for k in fold_ids:
        if not hard[folds == k].any():
            raise ValueError(f"{where}: the validation rows of fold {k} ({int((folds == k).sum())} rows) have no "
                             "rows with one-hot labels (all pseudo-labels): metrics would score the model against "
                             "guesses. Add a real train file to train_path")
