"""Training rows: several train files de-duplicated into one frame, prompt-grouped folds, leakage counts."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .frame import TARGET_COLUMNS, one_hot, pair_keys, soft_rows, targets
from .load import load_arena

log = logging.getLogger(__name__)


def prompt_groups(df: pd.DataFrame) -> np.ndarray:
    """Group key per row: the whole prompt text, so battles on the same prompt share a fold."""
    return pd.factorize(df["prompt"].map(lambda turns: "\x1f".join(turns)))[0]


def make_folds(df: pd.DataFrame, n_splits: int = 5, seed: int = 42) -> np.ndarray:
    """Fold number per row from StratifiedGroupKFold on the label, grouped by prompt; deterministic by seed."""
    from sklearn.model_selection import StratifiedGroupKFold

    if "label" not in df.columns:
        raise ValueError("make_folds needs a 'label' column (a train file with winner columns)")
    check_trainable(df, n_splits)
    folds = np.full(len(df), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, valid_idx) in enumerate(splitter.split(np.zeros(len(df)), df["label"], prompt_groups(df))):
        folds[valid_idx] = k
    return folds


def check_trainable(df: pd.DataFrame, n_splits: int) -> None:
    """Error (with the counts) when the rows cannot make ``n_splits`` folds or hold a single class."""
    where = df.attrs.get("load_report").path if df.attrs.get("load_report") else "train data"
    labels = np.asarray(df["label"])
    hard = labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer)
    counts = np.bincount(labels, minlength=3).tolist() if hard and len(labels) else []
    if hard and len(labels) and sum(c > 0 for c in counts) < 2:
        raise ValueError(f"{where}: every one of the {len(df)} rows has the same label (counts A/B/tie {counts}); "
                         "a model needs at least two classes")
    n_groups = len(np.unique(prompt_groups(df))) if len(df) else 0
    if n_groups < n_splits:
        raise ValueError(f"{where}: {len(df)} rows with {n_groups} distinct prompts cannot make {n_splits} folds "
                         f"(folds are grouped by prompt); use more rows or n_folds <= {max(n_groups, 1)}")


def split_paths(paths: str | Path | list) -> list[str]:
    """A list of train files from a list or a comma-separated string ("a.csv,b.csv")."""
    if isinstance(paths, (list, tuple)):
        return [str(p) for p in paths]
    return [t.strip() for t in str(paths).split(",") if t.strip()]


def load_training(paths: str | Path | list) -> pd.DataFrame:
    """One labelled frame from one or several train files, de-duplicated across files (documented drop).

    A single file is exactly :func:`load_arena`. With several files, a row of a later file whose
    :func:`pair_keys` hash (A/B-swap aware) already appeared in an earlier file is dropped and counted;
    duplicates inside one file are kept (as with one file) and counted. ``source`` holds the file index;
    ``df.attrs["train_report"]`` has rows per file, duplicates dropped and ids. Ids must be unique across files.
    """
    files = split_paths(paths)
    if not files:
        raise ValueError("train_path is empty")
    frames = [load_arena(f) for f in files]
    for f, df in zip(files, frames):
        if "label" not in df.columns:
            raise ValueError(f"{f}: training needs winner columns (winner_model_a/b/tie or winner)")
    if len(frames) == 1:
        out = frames[0]
        out.attrs["train_report"] = {"files": [{"path": files[0], "rows": len(out), "kept": len(out),
                                                "duplicates_dropped": 0}], "rows": len(out), "duplicates_dropped": 0}
        return out
    seen: set[str] = set()
    kept, report = [], []
    for i, (f, df) in enumerate(zip(files, frames)):
        keys = pair_keys(df)
        new = np.array([k not in seen for k in keys], dtype=bool)
        seen.update(keys.tolist())
        part = df[new].assign(source=i)
        within = int(pd.Series(keys[new]).duplicated().sum())
        report.append({"path": f, "rows": len(df), "kept": int(new.sum()), "duplicates_dropped": int((~new).sum()),
                       "duplicates_within_file_kept": within, "soft_rows": int(soft_rows(targets(part)).sum())})
        if (~new).any():
            log.warning("%s: %d rows already in an earlier train file (A/B swap included) were dropped",
                        f, int((~new).sum()))
        kept.append(part)
    for col in TARGET_COLUMNS:   # files without soft targets: one-hot ones, so the columns are complete
        for part in kept:
            if col not in part.columns:
                part[col] = one_hot(part["label"].to_numpy())[:, TARGET_COLUMNS.index(col)]
    if len({str(p["id"].dtype) for p in kept}) > 1:
        for p in kept:   # int ids in one file, text in another: all as text, so ids compare one way
            p["id"] = p["id"].astype(str)
    out = pd.concat(kept, ignore_index=True)
    clash = out["id"].astype(str).duplicated(keep=False) & (out.groupby(out["id"].astype(str))["source"]
                                                            .transform("nunique") > 1)
    if clash.any():
        row = int(np.flatnonzero(clash.to_numpy())[0])
        raise ValueError(f"id {out['id'].iloc[row]!r} occurs in several train files "
                         f"({sorted(set(out.loc[clash.to_numpy(), 'source'].map(lambda k: files[k])))}); "
                         "give one file's ids a prefix")
    out.attrs["load_report"] = frames[0].attrs["load_report"]
    out.attrs["train_report"] = {"files": report, "rows": len(out),
                                 "duplicates_dropped": int(sum(r["duplicates_dropped"] for r in report))}
    return out


def leakage_report(train: pd.DataFrame, folds: np.ndarray | None = None, test: pd.DataFrame | None = None) -> dict:
    """How many training rows share their prompt with the test file, and with another fold (should be 0)."""
    prompts = train["prompt"].map(lambda t: "\x1f".join(t))
    out: dict = {}
    if test is not None:
        test_prompts = set(test["prompt"].map(lambda t: "\x1f".join(t)))
        in_test = prompts.isin(test_prompts).to_numpy()
        out["train_rows_prompt_in_test"] = int(in_test.sum())
        if "source" in train.columns:
            by_file = pd.Series(in_test).groupby(train["source"].to_numpy()).sum()
            out["train_rows_prompt_in_test_by_file"] = {int(k): int(v) for k, v in by_file.items()}
    if folds is not None:
        n_folds_per_prompt = pd.Series(folds).groupby(prompts.to_numpy()).nunique()
        shared = prompts.map(n_folds_per_prompt).to_numpy() > 1
        out["train_rows_prompt_in_other_fold"] = int(shared.sum())
    return out
