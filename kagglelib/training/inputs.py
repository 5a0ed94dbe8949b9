"""What training reads: the train files and folds, the teacher's out-of-fold probabilities, encoded rows, batches."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data.folds import leakage_report, load_training, make_folds, split_paths
from ..data.frame import WINNER_COLUMNS, content_fingerprint, is_soft, swap_ab, swap_probs, targets
from ..data.load import load_arena
from ..data.text import INSTRUCTION, encode_pairs
from ..models.forward import pad_batch
from ..run.folder import Run
from ..run.info import provenance
from ..run.layout import read_predictions
from ..run.store import file_sha256, files_sha256
from .config import TrainConfig


@dataclass
class Splits:
    """Encoded training rows and validation rows (validation in its original order)."""

    train: list[dict[str, Any]]
    valid: list[dict[str, Any]]
    valid_df: pd.DataFrame
    train_labels: np.ndarray
    layout: str = "kaggle"                 # the train file's label layout: kaggle 3-class | wsdm A/B
    source: dict[str, Any] = field(default_factory=dict)   # provenance of the train file (never read back)
    report: dict[str, Any] = field(default_factory=dict)   # train files, duplicates, leakage


@functools.lru_cache(maxsize=2)
def _arena_with_folds(paths: str, content: tuple, n_folds: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Loaded train file(s) and folds (grouped by prompt across files), cached per (files' sha256, folds)."""
    df = load_training(paths)
    return df, make_folds(df, n_folds, seed)


def data_warnings(cfg: TrainConfig) -> list[str]:
    """The train files' load-report warnings (e.g. no ties at all), for the run's metrics."""
    return arena_with_folds(cfg)[0].attrs["load_report"].warnings


def arena_with_folds(cfg: TrainConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """The run's training rows (all train files, de-duplicated) and their fold numbers."""
    files = split_paths(cfg.train_path)
    # Keyed by content, not modification time: cp -p, rsync -t or unzip give a new file the old one's mtime.
    content = tuple(files_sha256(",".join(files)))
    return _arena_with_folds(",".join(files), content, cfg.n_folds, cfg.fold_seed)


def data_report(cfg: TrainConfig, df: pd.DataFrame, folds: np.ndarray) -> dict[str, Any]:
    """Rows per train file, duplicates dropped, and training prompts shared with the test file or other folds."""
    test = load_arena(cfg.test_path) if cfg.test_path and Path(cfg.test_path).exists() else None
    return {**df.attrs.get("train_report", {}), **leakage_report(df, folds, test)}


def teacher_identity(cfg: TrainConfig) -> str:
    """The teacher by content: its file's sha256, or its run's manifest hash ("" without a teacher).

    Recorded in the resume state, so a finished fold or checkpoint trained on another teacher is never reused.
    """
    if not cfg.teacher:
        return ""
    source = Path(cfg.teacher).expanduser()
    if source.is_file():
        return f"file:{file_sha256(source)}"
    return f"run:{Run.open(cfg.teacher, cfg.output_dir).identity}"


def load_teacher(cfg: TrainConfig, df: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Teacher probabilities for ``df.iloc[rows]``, refused unless out-of-fold for every one of those rows.

    A teacher run's held-out file (oof.csv, valid_preds.csv) holds only predictions made by models that did
    not train on that row, with its ``fold`` record; a run trained on other train files, or a bare CSV (no
    fold record), is accepted only with ``teacher_other_data=True``.
    """

    source = Path(cfg.teacher).expanduser()
    if source.is_file():
        table, record, what = read_predictions(str(source)), None, f"teacher file {source}"
    else:
        run = Run.open(cfg.teacher, cfg.output_dir)
        path = run.heldout_file
        if path is None:
            raise FileNotFoundError(f"teacher run {run.path} has no oof.csv or valid_preds.csv")
        table, record, what = read_predictions(str(path)), run.config, f"teacher run {run.path} ({path.name})"
    if table.index.duplicated().any():
        raise ValueError(f"{what}: duplicate ids, e.g. {table.index[table.index.duplicated()][0]!r}")
    ids = df["id"].astype(str).to_numpy()[rows]
    missing = ~pd.Index(ids).isin(table.index)
    if not cfg.teacher_other_data:
        if record is None:
            raise ValueError(f"{what} has no fold record, so its probabilities cannot be checked to be out-of-fold; "
                             "use a teacher run, or set teacher_other_data=True if the teacher never trained on "
                             "these rows")
        # Same training rows: by content when the run recorded it (runs travel between machines), else by path.
        recorded = run.provenance.get("content_fingerprint")
        same = recorded == content_fingerprint(df) if recorded else \
            [Path(p).resolve() for p in split_paths(record.get("train_path", ""))] == \
            [Path(p).resolve() for p in split_paths(cfg.train_path)]
        if not same:
            raise ValueError(f"{what} trained on {record.get('train_path')!r}, not on {cfg.train_path!r}: its fold "
                             "record cannot vouch for these rows; set teacher_other_data=True if it never saw them")
        if "fold" not in table.columns:
            raise ValueError(f"{what}: no 'fold' column, so the predictions are not a fold record")
        if missing.any():
            raise ValueError(f"{what} has no out-of-fold prediction for {int(missing.sum())} of the {len(ids)} "
                             f"training rows (first id {ids[missing][0]!r}): its models trained on them or never "
                             "saw them. Train the teacher on every fold (folds='all') or use 02's oof.csv")
        if "label" in table.columns:   # same ids, other labels: not the same rows
            differ = table.loc[ids, "label"].to_numpy(dtype=np.int64) != df["label"].to_numpy()[rows]
            if differ.any():
                raise ValueError(f"{what}: labels differ from the train file's for {int(differ.sum())} rows "
                                 f"(first id {ids[differ][0]!r}); it was not trained on these rows")
    elif missing.any():
        raise ValueError(f"{what} has no prediction for {int(missing.sum())} of the {len(ids)} training rows "
                         f"(first id {ids[missing][0]!r})")
    probs = table.loc[ids, list(WINNER_COLUMNS)].to_numpy(dtype=np.float64)
    if not np.isfinite(probs).all() or (probs < 0).any() or np.abs(probs.sum(axis=1) - 1).max() > 1e-3:
        raise ValueError(f"{what}: teacher probabilities must be finite, >= 0 and sum to 1 per row")
    return probs / probs.sum(axis=1, keepdims=True)


def _row(x: list[int], label: int, target: np.ndarray | None, teacher: np.ndarray | None) -> dict[str, Any]:
    """One encoded row; ``targets``/``teacher`` only when the run has soft targets / a teacher."""
    r: dict[str, Any] = {"input_ids": x, "labels": int(label)}
    if target is not None:
        r["targets"] = [float(v) for v in target]
    if teacher is not None:
        r["teacher"] = [float(v) for v in teacher]
    return r


@dataclass
class Inputs:
    """What a fold trains on, read and checked before any model weight is loaded."""

    df: pd.DataFrame                       # every training row (all train files, de-duplicated)
    folds: np.ndarray                      # fold number per row
    train_idx: np.ndarray                  # rows trained on (after max_train_rows)
    valid_idx: np.ndarray                  # rows validated on (after max_valid_rows)
    teacher: np.ndarray | None             # the teacher's probabilities of the train rows, checked out-of-fold
    report: dict[str, Any]                 # train files, duplicates, leakage


def read_inputs(cfg: TrainConfig) -> Inputs:
    """Read and check the train file(s), the folds, the test file and the teacher: a bad one fails in seconds."""
    df, folds = arena_with_folds(cfg)
    rng = np.random.default_rng(cfg.model.seed)
    train_idx, valid_idx = np.flatnonzero(folds != cfg.fold), np.flatnonzero(folds == cfg.fold)
    if cfg.max_train_rows and len(train_idx) > cfg.max_train_rows:
        train_idx = np.sort(rng.choice(train_idx, cfg.max_train_rows, replace=False))
    if cfg.max_valid_rows and len(valid_idx) > cfg.max_valid_rows:
        valid_idx = np.sort(rng.choice(valid_idx, cfg.max_valid_rows, replace=False))
    teacher = load_teacher(cfg, df, train_idx) if cfg.teacher and cfg.distill_alpha > 0 else None
    return Inputs(df, folds, train_idx, valid_idx, teacher, data_report(cfg, df, folds))


def load_splits(cfg: TrainConfig, tokenizer: Any, inputs: Inputs) -> Splits:
    """Split off fold ``cfg.fold`` of the checked inputs and encode its rows (with swaps) for ``tokenizer``."""
    df, folds, train_idx, valid_idx, teacher = inputs.df, inputs.folds, inputs.train_idx, inputs.valid_idx, inputs.teacher
    suffix = INSTRUCTION if cfg.model.task == "next_token" else ""
    tcfg = cfg.text
    train_df, valid_df = df.iloc[train_idx].reset_index(drop=True), df.iloc[valid_idx].reset_index(drop=True)
    valid_df["fold"] = folds[valid_idx]
    ids = encode_pairs(tokenizer, train_df, tcfg, suffix)
    labels = train_df["label"].to_numpy()
    # One-hot data keeps integer labels only (the loss is then exactly the hard-label one).
    soft = targets(train_df) if is_soft(train_df) else None
    none = [None] * len(train_df)
    rows = [_row(x, y, t, q) for x, y, t, q in zip(ids, labels, none if soft is None else soft,
                                                   none if teacher is None else teacher)]
    if cfg.swap_aug != "none":
        swapped = swap_ab(train_df)
        sids = encode_pairs(tokenizer, swapped, tcfg, suffix)
        s_soft = none if soft is None else swap_probs(soft)
        s_teacher = none if teacher is None else swap_probs(teacher)
        s_rows = [_row(x, y, t, q) for x, y, t, q in zip(sids, swapped["label"].to_numpy(), s_soft, s_teacher)]
        if cfg.swap_aug == "pair":   # both orders of a pair land in the same batch (the collator unpacks them)
            for r, sr in zip(rows, s_rows):
                r.update({f"swap_{k}": v for k, v in sr.items()})
        else:
            rows += s_rows
    vids = encode_pairs(tokenizer, valid_df, tcfg, suffix)
    valid = [{"input_ids": x, "labels": int(y)} for x, y in zip(vids, valid_df["label"].to_numpy())]
    return Splits(rows, valid, valid_df, labels, df.attrs["load_report"].layout, provenance(df, cfg.train_path),
                  inputs.report)


@dataclass
class Collator:
    """Dynamic padding; a row carrying ``swap_input_ids`` contributes both A/B orders to the batch."""

    pad_token_id: int
    side: str = "right"

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        seqs, labels = [], []
        extra: dict[str, list[list[float]]] = {k: [] for k in ("targets", "teacher") if k in features[0]}
        for f in features:
            seqs.append(f["input_ids"])
            labels.append(f["labels"])
            for k in extra:
                extra[k].append(f[k])
            if "swap_input_ids" in f:
                seqs.append(f["swap_input_ids"])
                labels.append(f["swap_labels"])
                for k in extra:
                    extra[k].append(f[f"swap_{k}"])
        ids, mask = pad_batch(seqs, self.pad_token_id, self.side)
        out = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor(labels, dtype=torch.long)}
        out.update({k: torch.tensor(v, dtype=torch.float32) for k, v in extra.items()})
        return out
